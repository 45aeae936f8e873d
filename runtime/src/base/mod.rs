//! The leaf layer: words every kind and the runtime share, depending on nothing of theirs —
//! the trade record and its JSON, rows and schemas ([`record`]), reject reasons ([`reject`]),
//! key hashing and key groups ([`keys`]), storage ([`storage`]: local, GCS, memory, spill
//! files), Kafka names ([`kafka`]) and market time ([`calendar`]: time zones, exchange
//! calendars, windows aligned to them).

pub mod calendar;
pub mod kafka;
pub mod keys;
pub mod record;
pub mod reject;
pub mod storage;
