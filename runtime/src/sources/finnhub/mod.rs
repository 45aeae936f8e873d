//! Finnhub: the websocket trade feed. [`protocol`] (and its [`fast`] path) parses and validates
//! frames — the replay source and the live source share it, so a recorded session replays exactly
//! as it streamed; [`client`] keeps one connection alive through everything the real feed does;
//! [`source`] puts it in the dataflow; [`config`] is what users write.

pub mod client;
pub mod config;
pub mod fast;
mod metrics;
mod kind;
pub mod protocol;
pub mod source;
