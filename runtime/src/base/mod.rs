//! The leaf layer: words every kind and the runtime share, depending on nothing of theirs —
//! the trade record and its JSON, rows and schemas ([`record`]), reject reasons ([`reject`]),
//! key hashing and key groups ([`keys`]), storage ([`storage`]: local, GCS, memory, spill
//! files) and Kafka names ([`kafka`]).

pub mod kafka;
pub mod keys;
pub mod record;
pub mod reject;
pub mod storage;
