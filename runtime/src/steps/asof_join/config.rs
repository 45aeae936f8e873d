use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::base::units::Duration;

/// Each record of `left` gets columns of the latest record of `right` with the same key at or
/// before its event time (kdb+'s `aj`, DuckDB's `ASOF JOIN`), within `tolerance`. A left record
/// waits until no right record at or before its time can still come (the right side's
/// watermark has passed it), so the result does not depend on how the two streams interleave.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsofJoinConfig {
    /// The stream whose records are enriched (each gives one output row).
    pub left: String,
    /// The stream looked up: its latest record per key at or before each left record's time.
    pub right: String,
    /// The key: a column both streams have (`on: symbol`), or an expression per side
    /// (`on: { left: "'OANDA:EUR_USD'", right: symbol }`). Default: each stream's key column.
    #[serde(default)]
    pub on: Option<JoinOn>,
    /// The oldest right record that still matches: `left time − tolerance` (default: any age).
    #[serde(default)]
    pub tolerance: Option<Duration>,
    /// `backward` (the default): the latest right record at or before the left record.
    #[serde(default)]
    pub direction: Direction,
    /// `left` (the default): a left record without a match gets NULLs; `inner` drops it.
    #[serde(default)]
    pub how: How,
    /// A bound on the join's state when one side's watermark stops (a Kafka source under
    /// `idle_watermark: hold` with no data, a stalled producer). Without it a left record waits
    /// for the right side as long as it takes, and right records are kept until the left side
    /// has passed them. With it, a left record the left side has passed by `state_ttl` is joined
    /// with what has arrived, and right records the right side has passed by `state_ttl` are
    /// dropped (the latest of each key kept); both counted in `tickflow_step_rows_expired_total`.
    /// Such results can differ from a run where neither side stalled. Default: no bound.
    #[serde(default)]
    pub state_ttl: Option<Duration>,
    /// New column → the right column it copies, e.g. `{ rate: price, rate_time: timestamp }`.
    pub columns: IndexMap<String, String>,
}

/// The join key of each side.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum JoinOn {
    /// One column (or expression) both sides have.
    Both(String),
    /// An expression per side.
    Sides { left: String, right: String },
}

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Backward,
    /// The nearest right record before or after (not supported yet).
    Nearest,
}

pub use crate::steps::lookup::config::How;
