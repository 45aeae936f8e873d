use schemars::JsonSchema;
use serde::Deserialize;

pub use crate::output::rolling::RollingSpec;

/// Writes records as Parquet files (zstd, UTC timestamps) into Hive-style partition folders
/// (`date=2026-11-27/`). Files are written under a pending name and published by a rename, so a
/// reader globbing `**/*.parquet` only ever sees complete files.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// Name of the source or step whose records are written.
    pub input: String,
    /// Destination folder: a local path (`out/bars`), `file:///abs/path`, or `memory://name`
    /// (in-process, for tests).
    pub path: String,
    /// Partition folders, outermost first: `date` (`date=YYYY-MM-DD`) and `hour` (`hour=HH`) from
    /// `partition_time_field` in UTC, or the name of a string field (e.g. `symbol`). The `date`
    /// of a market-time window's `window_start` is its session's date (or its local date).
    #[serde(default = "default_partition_by")]
    pub partition_by: Vec<String>,
    /// Timestamp field that `date`/`hour` partitions use. Default: `window_start` for window
    /// output, `timestamp` for trades.
    #[serde(default)]
    pub partition_time_field: Option<String>,
    /// When to close a file and start the next one.
    #[serde(default)]
    pub rolling: RollingSpec,
    /// zstd compression level (1–22).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
}

pub fn default_partition_by() -> Vec<String> {
    vec!["date".to_string()]
}
pub const fn default_zstd_level() -> i32 {
    3
}
