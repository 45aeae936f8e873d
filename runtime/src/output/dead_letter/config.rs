use schemars::JsonSchema;
use serde::Deserialize;

use crate::output::rolling::RollingSpec;

/// Where rejected input goes: malformed frames, invalid trades and late trades, each with the
/// reason, the raw input and where it came from.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSpec {
    /// Destination folder: a local path, `file:///abs/path`, or `memory://name`.
    pub path: String,
    /// File format.
    #[serde(default)]
    pub format: DeadLetterFormat,
    /// When to close a file and start the next one.
    #[serde(default)]
    pub rolling: RollingSpec,
}

/// File format of dead-letter files.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterFormat {
    /// One JSON object per line: `{"source","reason","detail","raw","line","received_at"}`.
    #[default]
    Jsonl,
    /// Parquet with the same columns.
    Parquet,
}
