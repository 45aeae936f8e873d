//! Event-time windows: config ([`config`]), accumulators ([`aggregate`]), the state machine
//! ([`state`]) and the timely operator ([`operator`]); count, volume and notional bars
//! (`sampled.rs`) read records in event-time order instead.

pub mod aggregate;
pub mod config;
pub mod differential;
pub mod input;
pub mod node;
pub mod operator;
mod sampled;
pub mod state;
mod step;

#[cfg(test)]
mod tests;
