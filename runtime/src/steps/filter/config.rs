use schemars::JsonSchema;
use serde::Deserialize;

/// Keeps the records for which `where` is true; NULL counts as false, as in SQL's WHERE. On
/// trades it gives trades (a window can read it), on rows it gives rows. A record whose condition
/// cannot be evaluated (an overflow, an invalid cast) is dead-lettered as `expression_error`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The stream to filter: a source or a step.
    pub input: String,
    /// A SQL condition over the input's columns, e.g.
    /// `starts_with(symbol, 'BINANCE:') AND volume > 0`.
    #[serde(rename = "where")]
    pub condition: String,
}
