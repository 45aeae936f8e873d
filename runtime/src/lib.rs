//! tickflow: a streaming runtime for market data, driven by YAML specs.
//!
//! `spec` (what users write) → `plan` (a checked, typed graph) → `dataflow` (timely operators
//! per worker) with `sources` feeding event-time windows and `sinks` publishing Parquet.

pub mod base;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod dataflow;
pub mod expr;
pub mod metrics;
pub mod output;
pub mod plan;
pub mod plugins;
pub mod sim;
pub mod sinks;
pub mod sources;
pub mod spec;
pub mod steps;
pub mod tables;
pub mod worker;
