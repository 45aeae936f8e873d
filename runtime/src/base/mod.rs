//! The leaf layer: words every kind and the runtime share, depending on nothing of theirs —
//! the trade record and its JSON, rows and schemas ([`record`]), reject reasons ([`reject`]),
//! key hashing and key groups ([`keys`]), storage ([`storage`]: local, GCS, memory, spill
//! files), Kafka names ([`kafka`]), market time ([`calendar`]: time zones, exchange calendars,
//! windows aligned to them), the spec's units and diagnostics ([`units`], [`diagnostic`]), the
//! registry macro every list of kinds is written with ([`kinds`]), secrets ([`secrets`]), wall
//! and dataflow time ([`time`]) and text helpers ([`text`]).

pub mod avro;
pub mod calendar;
pub mod diagnostic;
pub mod kafka;
pub mod keys;
pub mod kinds;
pub mod record;
pub mod reject;
pub mod secrets;
pub mod storage;
pub mod text;
pub mod time;
pub mod units;
