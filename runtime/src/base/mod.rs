//! The leaf layer: words every kind and the runtime share, depending on nothing of theirs.

pub mod kafka;
