use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::base::units::{ByteSize, Duration};

/// Scores rows with a WebAssembly model plugin (`tickflow:model@0.3.0`, or `@0.2.0`): each row
/// goes out with its fields plus the plugin's output columns. Rows are routed by key, and each
/// key's rows reach the plugin in event-time order, in batches.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelStepConfig {
    /// The step (or source) whose rows are scored.
    pub input: String,
    /// The plugin: a `.wasm` component (relative to the working directory), or a plugin shipped
    /// with tickflow by name: `onnx` runs the ONNX model of `model:`.
    pub plugin: String,
    /// A file the plugin runs (`plugin: onnx`: an `.onnx` model, e.g. exported by skl2onnx): a
    /// local path, `file://` or `gs://`. Its bytes reach the plugin's `init`.
    #[serde(default)]
    pub model: Option<String>,
    /// Given to the plugin's `init` as JSON (checked against the plugin's config schema, if it
    /// declares one).
    #[serde(default)]
    pub config: serde_json::Value,
    /// Plugin input name → field of the incoming rows (inputs not listed are taken from the
    /// field of the same name); or, for a plugin that takes its inputs from the spec (`onnx`),
    /// the columns it reads, in order (`[ret, range, volume_z]`: a float tensor `[batch, 3]`).
    #[serde(default)]
    pub inputs: ModelInputs,
    /// Checks the `model:` file this often and swaps a changed one in without a restart: the new
    /// model is loaded and checked first (a file that does not load, or whose inputs and
    /// outputs differ, is logged and counted, and the old model keeps scoring). Without
    /// `checkpoints` each worker swaps at its next batch after it saw the change; with them the
    /// first worker reads the file and every worker swaps when the next checkpoint completes, so
    /// no checkpoint's output mixes two models and a restore never does.
    #[serde(default)]
    pub reload: Option<Duration>,
    /// For a plugin that takes its outputs from the spec (`onnx`): by output tensor, one column
    /// (`{variable: score}`) or a column per index (`{probabilities: {p_down: 0, p_up: 1}}`).
    #[serde(default)]
    pub outputs: Option<serde_json::Value>,
    /// What a trap, timeout, memory-cap hit, plugin error or bad output does to the batch.
    #[serde(default)]
    pub on_error: OnError,
    /// What a NaN in a float output becomes.
    #[serde(default)]
    pub on_nan: OnNan,
    /// Deadline of one call.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Memory cap of one instance (one per worker).
    #[serde(default = "default_memory")]
    pub max_memory: ByteSize,
    /// Rows per call at most.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
}

/// A model step's `inputs:`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ModelInputs {
    /// Plugin input name → field of the incoming rows.
    Map(IndexMap<String, String>),
    /// The columns a plugin that takes its inputs from the spec reads, in order.
    List(Vec<String>),
}

impl Default for ModelInputs {
    fn default() -> Self {
        ModelInputs::Map(IndexMap::new())
    }
}

/// Plugins shipped with tickflow, named in `plugin:` without a path.
pub const STOCK_PLUGINS: &[&str] = &["onnx"];

/// What happens to a batch the plugin could not score.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Its rows go to the dead letters with the error; the run goes on.
    #[default]
    DeadLetter,
    /// Its rows are dropped (counted in the metrics); the run goes on.
    Skip,
    /// The run stops with the error.
    Fail,
}

/// What a NaN in a float output column becomes.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnNan {
    /// A null (the model had no answer for that row).
    #[default]
    Null,
    /// A bad output: the batch is handled by `on_error`.
    Error,
}

pub const fn default_timeout() -> Duration {
    Duration::millis(100)
}
pub const fn default_memory() -> ByteSize {
    ByteSize(64 << 20)
}
pub const fn default_batch_rows() -> usize {
    4096
}
