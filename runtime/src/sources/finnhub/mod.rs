//! Finnhub: the websocket trade feed. [`protocol`] parses and validates its frames; the replay
//! source and the live client share it, so a recorded session replays exactly as it streamed.

pub mod fast;
pub mod protocol;
