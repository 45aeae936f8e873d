use schemars::JsonSchema;
use serde::Deserialize;

use crate::spec::units::Duration;

/// Reads trades from a Kafka topic: each record value is one Finnhub trade object (as the
/// `kafka` sink writes them). Partitions are spread over the workers deterministically
/// (partition `p` → worker `p mod workers`); offsets are owned by the run and committed to
/// `group_id` only so that lag tools work. Each partition has its own watermark; with
/// `tickflow run --bounded` the run reads up to the end offsets seen at start and finishes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    /// Topic to read.
    pub topic: String,
    /// Consumer group whose committed offsets report progress (lag tools); tickflow does not
    /// use them to decide where to read.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Where to start reading.
    #[serde(default)]
    pub start: StartPosition,
    /// How far behind the newest event time of a partition its watermark trails.
    #[serde(default = "default_max_out_of_orderness")]
    pub max_out_of_orderness: Duration,
    /// A partition without records for this long no longer holds back the watermark.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// When every partition has been idle for `idle_timeout`: `hold` (the default) keeps the
    /// watermark at the most advanced partition's, so a window stays open until the next record;
    /// `clock` lets it follow the wall clock (minus `idle_timeout` and `max_out_of_orderness`), so
    /// the last bar of a session fires after the close without waiting for the next morning's
    /// first trade — for live topics only: a topic of old records that pauses would make every
    /// later record late.
    #[serde(default)]
    pub idle_watermark: IdleWatermark,
    /// Watermark alignment: a partition whose watermark is this far ahead of the slowest live
    /// partition (over all workers) is not read until the others catch up. This bounds what
    /// windows must buffer when partitions are read unevenly (backfills, restarts); `0s` turns
    /// it off.
    #[serde(default = "default_max_drift")]
    pub max_drift: Duration,
    /// A trade stamped more than this ahead of the wall clock is rejected with reason
    /// `future_timestamp` instead of moving the watermark (one bad clock, e.g. a year-9999
    /// trade, would otherwise make every later trade late). `0s` turns the check off (synthetic
    /// data dated in the future).
    #[serde(default = "crate::sources::default_max_future")]
    pub max_future: Duration,
}

/// What the watermark does when every partition is idle.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IdleWatermark {
    /// Stay at the most advanced partition's watermark.
    #[default]
    Hold,
    /// Follow the wall clock.
    Clock,
}

/// Where a Kafka source starts.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    /// The oldest record still in the topic.
    #[default]
    Earliest,
    /// Only records written after the start.
    Latest,
}

pub fn default_group_id() -> String {
    "tickflow".to_string()
}
pub const fn default_max_out_of_orderness() -> Duration {
    Duration::secs(2)
}
pub const fn default_idle_timeout() -> Duration {
    Duration::secs(30)
}
pub const fn default_max_drift() -> Duration {
    Duration::secs(30)
}
