use schemars::JsonSchema;
use serde::Deserialize;

/// The `n` rows of each window with the largest (or smallest) value of an expression, across
/// all keys, with their `rank` (1 = first): SQL's `row_number() OVER (PARTITION BY per ORDER BY
/// by DESC NULLS LAST, key)` kept up to `n`. Ties go by the key, so the ranking is the same for
/// any number of workers. A window is ranked once all its rows have arrived; when its input
/// revises a row (`allowed_lateness` upstream), the window is ranked again and, if the ranking
/// changed, all its rows are emitted again with `revision` + 1.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopNConfig {
    /// The rows to rank: a window's rows (bars), or a step over them.
    pub input: String,
    /// How many rows each window keeps (1 to 10000).
    pub n: u32,
    /// A SQL expression over the input's columns to rank by, e.g. `close / open - 1`.
    pub by: String,
    /// `desc` (the default: the largest first) or `asc`. NULLs come last either way.
    #[serde(default)]
    pub order: Order,
    /// The time column whose values each have their own ranking (default: the input's event
    /// time, `window_start` of bars).
    #[serde(default)]
    pub per: Option<String>,
    /// The string column naming what is ranked, one row each (default: the input's key, e.g.
    /// `symbol`): a revised row replaces the earlier row of its key.
    #[serde(default)]
    pub key: Option<String>,
}

/// The direction of a ranking.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    Desc,
    Asc,
}
