//! Finnhub-protocol simulation: deterministic trade generation ([`generate`]).

pub mod generate;
pub mod server;
