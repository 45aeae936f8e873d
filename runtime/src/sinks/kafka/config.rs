use schemars::JsonSchema;
use serde::Deserialize;

use crate::base::units::Duration;

/// Writes records to a Kafka topic. Trades: key = symbol, value = one Finnhub trade object as
/// compact JSON (`{"c":[..],"p":..,"s":"..","t":..,"v":..}`). Rows (of a step): key = the
/// stream's key column (or `key`), value = one compact JSON object per row with every column
/// (timestamps as RFC 3339 UTC strings, NULL as null).
///
/// `delivery: exactly_once` (the default with `checkpoints:`): each checkpoint's records are one
/// Kafka transaction per worker, committed when the checkpoint is; consumers reading with
/// `isolation.level=read_committed` see every record once. `at_least_once` (the default
/// without checkpoints): the idempotent producer; deliveries are retried until
/// `delivery_timeout`, then dead-lettered — never silently lost; after a crash some records may
/// be written again.
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
    /// `exactly_once` (needs `checkpoints:`; the default with them) or `at_least_once` (the
    /// default without).
    #[serde(default)]
    pub delivery: Option<Delivery>,
    /// Exactly-once: how long a transaction may stay open before the broker aborts it. It spans
    /// a checkpoint interval, so it must be at least twice `checkpoints.interval`, and at most
    /// the broker's `transaction.max.timeout.ms` (15 minutes by default). Default: three
    /// checkpoint intervals, at least 1 minute, at most 15.
    #[serde(default)]
    pub transaction_timeout: Option<Duration>,
    /// Exactly-once: the prefix of the producers' `transactional.id`s (one per worker:
    /// `PREFIX-N`). Default: `tickflow-PIPELINE-SINK-` and a hash of `checkpoints.path`, so two
    /// deployments of one spec with their own checkpoints never fence each other. Keep it
    /// stable for the life of the pipeline.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// How record values are written: `json` (the default) or `avro` (the Confluent wire
    /// format; the schema, derived from the stream's columns, is registered under `TOPIC-value`
    /// in `registry`).
    #[serde(default)]
    pub format: crate::base::avro::Format,
    /// The schema registry of `format: avro`.
    #[serde(default)]
    pub registry: Option<crate::base::avro::RegistryConfig>,
}

/// The delivery guarantee of a Kafka sink.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Each checkpoint's records in one transaction per worker, committed with the checkpoint.
    ExactlyOnce,
    /// The idempotent producer; after a crash some records may be written again.
    AtLeastOnce,
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
