use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

/// Adds columns computed by SQL expressions, or replaces columns of the same name (in place).
/// Every expression reads the input's columns (as in one SQL `SELECT`): to build on a derived
/// column, derive again in a second step. Trades become rows. A record for which an
/// expression cannot be evaluated (an overflow, an invalid cast, `ln(0)`) is dead-lettered as
/// `expression_error`, naming the step and the expression.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeriveConfig {
    /// The stream to extend: a source or a step.
    pub input: String,
    /// Column name → SQL expression, e.g. `ret: "close / open - 1"`, in output order.
    pub columns: IndexMap<String, String>,
}
