//! tickflow's frame parsers, included from the runtime's sources.
#[path = "../../../../src/sources/finnhub/fast.rs"]
pub mod fast;
#[path = "../../../../src/sources/finnhub/protocol.rs"]
pub mod protocol;
