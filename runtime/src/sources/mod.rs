//! Sources: where trades come from. One folder per connector; `config.rs` is what users write.
//! Register a new connector in [`SourceSpec`] and in `dataflow::build`.

pub mod finnhub;
pub mod replay;

use schemars::JsonSchema;
use serde::Deserialize;

pub use finnhub::config::FinnhubConfig;
pub use replay::config::ReplayConfig;

/// A source of records, chosen by `type`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceSpec {
    /// Replay a JSONL file of recorded Finnhub websocket frames.
    Replay(ReplayConfig),
    /// The live Finnhub websocket trade feed (or its built-in simulator).
    Finnhub(FinnhubConfig),
}

impl SourceSpec {
    pub const TYPES: &'static [&'static str] = &["replay", "finnhub"];

    pub fn type_name(&self) -> &'static str {
        match self {
            SourceSpec::Replay(_) => "replay",
            SourceSpec::Finnhub(_) => "finnhub",
        }
    }

    /// `watermark = max event time read − this`.
    pub fn max_out_of_orderness_ms(&self) -> i64 {
        match self {
            SourceSpec::Replay(c) => c.max_out_of_orderness.as_millis(),
            SourceSpec::Finnhub(c) => c.max_out_of_orderness.as_millis(),
        }
    }
}
