use schemars::JsonSchema;
use serde::Deserialize;

use crate::base::units::Duration;

/// Writes records to a Kafka topic with the idempotent producer. Trades: key = symbol, value =
/// one Finnhub trade object as compact JSON (`{"c":[..],"p":..,"s":"..","t":..,"v":..}`). Rows
/// (of a step): key = the stream's key column (or `key`), value = one compact JSON object per
/// row with every column (timestamps as RFC 3339 UTC strings, NULL as null). Deliveries
/// are retried until `delivery_timeout`, then dead-lettered — never silently lost. Everything is
/// flushed on shutdown.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The stream to write: a source or a step.
    pub input: String,
    /// The string column whose value is the record key (default: the stream's key, e.g. the
    /// window's key column).
    #[serde(default)]
    pub key: Option<String>,
    /// Bootstrap servers, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    /// Topic to write to.
    pub topic: String,
    /// Compression of record batches.
    #[serde(default)]
    pub compression: KafkaCompression,
    /// How long a record may wait for delivery (retries included) before it is dead-lettered.
    #[serde(default = "default_delivery_timeout")]
    pub delivery_timeout: Duration,
    /// How long the producer waits to fill a batch.
    #[serde(default = "default_linger")]
    pub linger: Duration,
}

/// Compression codecs.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
    Zstd,
}

impl KafkaCompression {
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

pub const fn default_delivery_timeout() -> Duration {
    Duration::secs(30)
}
pub const fn default_linger() -> Duration {
    Duration::millis(5)
}
