use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::base::units::Duration;

/// Features over each key's latest records, one output row per input row, in event-time order:
/// SQL's `OVER (PARTITION BY key ORDER BY time ROWS n-1 PRECEDING)` (`rows: n`) or
/// `RANGE d PRECEDING` (`range: d`), plus `ema`, Wilder's `rsi` and `lag`. The input's columns
/// come first, then the features in the order written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollingConfig {
    /// The stream to read: rows of a step (bars), or trades.
    pub input: String,
    /// The string column whose values each have their own features (default: the input's key).
    #[serde(default)]
    pub key: Option<String>,
    /// The event-time column rows are ordered by (default: the input's event time, e.g.
    /// `window_start` of bars).
    #[serde(default)]
    pub time: Option<String>,
    /// The frame of `avg`, `sum`, `min`, `max`, `stddev`, `count` and `first`: the current row
    /// and the `rows - 1` before it.
    #[serde(default)]
    pub rows: Option<u32>,
    /// Or: the rows of the last `range` of event time, `(time - range, time]`.
    #[serde(default)]
    pub range: Option<Duration>,
    /// Rows seen before a key's frame is full (`rows: n`): `keep` (the default, features over
    /// the rows so far, as SQL computes them) or `skip` (not emitted).
    #[serde(default)]
    pub warmup: Warmup,
    /// Output column → feature.
    pub features: IndexMap<String, FeatureSpec>,
}

/// What to do with the first rows of a key, before its frame is full.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Warmup {
    #[default]
    Keep,
    Skip,
}

/// One feature column.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// The function.
    #[serde(rename = "fn")]
    pub func: RollingFn,
    /// The number column it reads (not used by `count` without it: rows in the frame).
    #[serde(default)]
    pub field: Option<String>,
    /// `ema`: `alpha = 2 / (span + 1)`.
    #[serde(default)]
    pub span: Option<f64>,
    /// `ema`: the smoothing factor, in (0, 1].
    #[serde(default)]
    pub alpha: Option<f64>,
    /// `rsi`: the number of changes averaged (Wilder's period, e.g. 14).
    #[serde(default)]
    pub period: Option<u32>,
    /// `lag`: how many rows back (default 1).
    #[serde(default)]
    pub offset: Option<u32>,
}

/// Rolling functions. Frame functions skip NULLs as SQL does (`count` with a `field` counts its
/// non-NULL values; NULL when the frame has no value); `stddev` is the sample deviation (NULL
/// below 2 values); `first` is the frame's first value, NULL included. `lag` is the value
/// `offset` rows back. `ema` starts at the first value (`ema = alpha·x + (1 − alpha)·ema`, NULLs
/// skipped). `rsi` is Wilder's: the first average gain and loss are the mean of the first
/// `period` changes, then `avg = (avg·(period − 1) + change) / period`; NULL until then; 100 when
/// there were no losses (50 when no change at all).
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RollingFn {
    Avg,
    Sum,
    Min,
    Max,
    Stddev,
    Count,
    First,
    Lag,
    Ema,
    Rsi,
}

impl RollingFn {
    pub fn name(self) -> &'static str {
        match self {
            RollingFn::Avg => "avg",
            RollingFn::Sum => "sum",
            RollingFn::Min => "min",
            RollingFn::Max => "max",
            RollingFn::Stddev => "stddev",
            RollingFn::Count => "count",
            RollingFn::First => "first",
            RollingFn::Lag => "lag",
            RollingFn::Ema => "ema",
            RollingFn::Rsi => "rsi",
        }
    }
    /// Whether it reads the frame (`rows:` / `range:`).
    pub fn framed(self) -> bool {
        matches!(
            self,
            RollingFn::Avg
                | RollingFn::Sum
                | RollingFn::Min
                | RollingFn::Max
                | RollingFn::Stddev
                | RollingFn::Count
                | RollingFn::First
        )
    }
}
