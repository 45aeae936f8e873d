//! Event-time windows: config ([`config`]), accumulators ([`aggregate`]), the state machine
//! ([`state`]) and the timely operator ([`operator`]).

pub mod aggregate;
pub mod config;
pub mod differential;
pub mod input;
pub mod operator;
pub mod state;
mod step;

#[cfg(test)]
mod tests;
