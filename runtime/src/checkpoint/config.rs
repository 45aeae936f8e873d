use schemars::JsonSchema;
use serde::Deserialize;

use crate::base::units::Duration;

/// Periodic checkpoints for exactly-once output: source offsets and window state (in key
/// groups) are written to the object store with the manifest last, and Parquet files are
/// published only when the checkpoint that covers them is complete. A restart resumes from the
/// last complete checkpoint — also with another number of workers.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Folder for checkpoints: a local path, `file:///abs/path` or `memory://name`.
    pub path: String,
    /// Time between checkpoints (also the publication delay of Parquet files).
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Number of key groups state is organised in; fixed for the life of a pipeline, it bounds
    /// the number of workers a checkpoint can be restored on.
    #[serde(default = "default_key_groups")]
    pub key_groups: u32,
}

pub const fn default_interval() -> Duration {
    Duration::secs(10)
}
pub const fn default_key_groups() -> u32 {
    128
}
