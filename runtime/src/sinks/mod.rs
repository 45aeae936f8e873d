//! Sinks: where results go. One folder per connector; `config.rs` is what users write.

pub mod dead_letter;
pub mod gcs;
pub mod kafka;
pub mod parquet;
pub mod rolling;
pub mod spill;
pub mod storage;

use schemars::JsonSchema;
use serde::Deserialize;

pub use kafka::config::KafkaSinkConfig;
pub use parquet::config::ParquetSinkConfig;

/// A destination for records, chosen by `type`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkSpec {
    /// Parquet files in a local folder or an object store.
    Parquet(ParquetSinkConfig),
    /// Trades to a Kafka topic (idempotent producer).
    Kafka(KafkaSinkConfig),
}

impl SinkSpec {
    pub const TYPES: &'static [&'static str] = &["parquet", "kafka"];

    pub fn input(&self) -> &str {
        match self {
            SinkSpec::Parquet(c) => &c.input,
            SinkSpec::Kafka(c) => &c.input,
        }
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkSpec::Parquet(_) => "parquet",
            SinkSpec::Kafka(_) => "kafka",
        }
    }
}
