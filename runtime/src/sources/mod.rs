//! Sources: where trades come from. One folder per connector; `config.rs` is what users write.
//! Register a new connector in [`SourceSpec`] and in `dataflow::build`.

pub mod finnhub;
pub mod kafka;
pub mod replay;

use schemars::JsonSchema;
use serde::Deserialize;

pub use finnhub::config::FinnhubConfig;
pub use kafka::config::KafkaSourceConfig;
pub use replay::config::ReplayConfig;

/// Default `max_future` of every source: an hour ahead of the wall clock.
pub const fn default_max_future() -> crate::spec::units::Duration {
    crate::spec::units::Duration::secs(3600)
}

/// A source of records, chosen by `type`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceSpec {
    /// Replay a JSONL file of recorded Finnhub websocket frames.
    Replay(ReplayConfig),
    /// The live Finnhub websocket trade feed (or its built-in simulator).
    Finnhub(FinnhubConfig),
    /// Trades from a Kafka topic (one trade object per record).
    Kafka(KafkaSourceConfig),
}

impl SourceSpec {
    pub const TYPES: &'static [&'static str] = &["replay", "finnhub", "kafka"];

    pub fn type_name(&self) -> &'static str {
        match self {
            SourceSpec::Replay(_) => "replay",
            SourceSpec::Finnhub(_) => "finnhub",
            SourceSpec::Kafka(_) => "kafka",
        }
    }

    /// Where a record came from, for dead letters: the line (replay), the frame number (live
    /// feed) or the partition offset (Kafka).
    pub fn position_of(&self, seq: u64) -> u64 {
        match self {
            SourceSpec::Kafka(_) => seq & ((1 << kafka::OFFSET_BITS) - 1),
            _ => seq >> crate::record::Trade::SEQ_INDEX_BITS,
        }
    }

    /// Whether the source ends by itself (a file), or with `--bounded` (Kafka).
    pub fn can_end(&self) -> bool {
        !matches!(self, SourceSpec::Finnhub(_))
    }

    /// A trade stamped more than this ahead of the wall clock is rejected (0: no bound).
    pub fn max_future_ms(&self) -> i64 {
        match self {
            SourceSpec::Replay(c) => c.max_future.as_millis(),
            SourceSpec::Finnhub(c) => c.max_future.as_millis(),
            SourceSpec::Kafka(c) => c.max_future.as_millis(),
        }
    }

    /// `watermark = max event time read − this`.
    pub fn max_out_of_orderness_ms(&self) -> i64 {
        match self {
            SourceSpec::Replay(c) => c.max_out_of_orderness.as_millis(),
            SourceSpec::Finnhub(c) => c.max_out_of_orderness.as_millis(),
            SourceSpec::Kafka(c) => c.max_out_of_orderness.as_millis(),
        }
    }
}
