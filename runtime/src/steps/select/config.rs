use schemars::JsonSchema;
use serde::Deserialize;

/// Keeps the listed columns, in the order listed; `close AS last` renames. Trades become rows.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// The stream to narrow: a source or a step.
    pub input: String,
    /// Columns to keep, each `name` or `name AS new_name`, e.g. `[symbol, window_start, close]`.
    pub columns: Vec<String>,
}
