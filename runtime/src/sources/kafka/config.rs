use schemars::JsonSchema;
use serde::Deserialize;

use crate::base::units::{Duration, TimePoint};

/// Reads trades from a Kafka topic: each record value is one Finnhub trade object (as the
/// `kafka` sink writes them), as JSON or Avro. Partitions are spread over the workers deterministically
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
    /// Where to start reading: `earliest` (the default), `latest`, or `{ timestamp:
    /// 2026-12-01T14:30:00Z }` — each partition from its first record whose Kafka timestamp (the
    /// producer's create time, or the broker's append time) is at or after that point. A run
    /// restored from a checkpoint starts where the checkpoint left off instead.
    #[serde(default)]
    pub start: StartPosition,
    /// Stop reading a partition at its first record whose Kafka timestamp is at or after this
    /// point (not read): with `start: { timestamp }` a bounded backfill window. The source ends
    /// once every partition has reached such a record (or, under `--bounded`, its end offset
    /// seen at start); a partition without one yet keeps waiting for it.
    #[serde(default)]
    pub stop_at: Option<TimePoint>,
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
    /// How record values are written: `json` (the default; one trade object each) or `avro`
    /// (the Confluent wire format; each record decoded with its writer's schema from
    /// `registry`: a record with `s`, `p`, `t`, `v` and optionally `c`).
    #[serde(default)]
    pub format: crate::base::avro::Format,
    /// The schema registry of `format: avro`.
    #[serde(default)]
    pub registry: Option<crate::base::avro::RegistryConfig>,
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
#[derive(Debug, Clone, Copy, Default, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StartPosition {
    /// The oldest record still in the topic.
    #[default]
    Earliest,
    /// Only records written after the start.
    Latest,
    /// The first record of each partition whose Kafka timestamp is at or after this point (the
    /// partition's end when there is none yet), e.g. `{ timestamp: 2026-12-01T14:30:00Z }`.
    Timestamp(TimePoint),
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

// By hand, so that a bad point in time is one error at its own position (serde's derived enum
// adds a second one, "expected map with a single key", at the map).
impl<'de> Deserialize<'de> for StartPosition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        const CHOICES: &str = "valid choices: `earliest`, `latest`, `{ timestamp: 2026-12-01T14:30:00Z }`";
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StartPosition;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`earliest`, `latest` or `{ timestamp: ... }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StartPosition, E> {
                match v {
                    "earliest" => Ok(StartPosition::Earliest),
                    "latest" => Ok(StartPosition::Latest),
                    _ => Err(E::custom(format!("unknown start `{v}`; {CHOICES}"))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StartPosition, A::Error> {
                let mut at = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "timestamp" if at.is_none() => at = Some(map.next_value::<TimePoint>()?),
                        "timestamp" => return Err(de::Error::custom("`timestamp` given twice")),
                        other => return Err(de::Error::custom(format!("unknown field `{other}`; {CHOICES}"))),
                    }
                }
                at.map(StartPosition::Timestamp).ok_or_else(|| de::Error::custom(format!("missing field `timestamp`; {CHOICES}")))
            }
        }
        d.deserialize_any(V)
    }
}
