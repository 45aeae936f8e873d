use schemars::JsonSchema;
use serde::Deserialize;

/// Adds the columns of a table's row whose key equals `on` (a SQL expression over the input,
/// e.g. `symbol` or `split_part(symbol, ':', 2)`). `how: left` (the default) keeps a record
/// without a match, with NULLs (counted in `tickflow_step_rows_unmatched_total`); `inner` drops
/// it. Trades become rows; the input's key and event time stay.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The stream to enrich: a source or a step.
    pub input: String,
    /// The table (under `tables:`).
    pub table: String,
    /// The key to look up: a SQL expression over the input's columns (default: the input's key
    /// column, e.g. `symbol`).
    #[serde(default)]
    pub on: Option<String>,
    /// `left` (the default) or `inner`.
    #[serde(default)]
    pub how: How,
    /// The table's columns to add, each `name` or `name AS new_name` (default: every column
    /// but the key).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

/// Whether a record without a match is kept (with NULLs) or dropped; lookups and as-of joins.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum How {
    #[default]
    Left,
    Inner,
}
