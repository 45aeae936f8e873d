//! The pipeline spec: the single source of truth for what users write, for validation and for the
//! JSON Schema (`tickflow schema`). Every `///` comment here is user documentation.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::output::dead_letter::config::DeadLetterSpec;
use crate::sinks::SinkSpec;
use crate::sources::SourceSpec;
use crate::steps::StepSpec;

/// A tickflow pipeline: named sources feed named steps, steps feed named sinks.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "tickflow pipeline")]
pub struct PipelineSpec {
    /// Name of the pipeline, used in logs and output file names.
    pub name: String,
    /// Where records come from, by name.
    pub sources: IndexMap<String, SourceSpec>,
    /// Transformations, by name. Each step reads one `input`: a source or another step (declared
    /// anywhere: steps run in the order their inputs need).
    #[serde(default)]
    pub steps: IndexMap<String, StepSpec>,
    /// Reference data by name (symbol → sector, ...), joined to streams by `lookup` steps.
    #[serde(default)]
    pub tables: IndexMap<String, crate::tables::TableConfig>,
    /// Where results go, by name. Each sink reads one `input`: a source or a step.
    pub sinks: IndexMap<String, SinkSpec>,
    /// Where rejected and late records go. Without it they are only counted and logged.
    #[serde(default)]
    pub dead_letters: Option<DeadLetterSpec>,
    /// Periodic checkpoints for exactly-once output (Kafka sources).
    #[serde(default)]
    pub checkpoints: Option<crate::checkpoint::CheckpointSpec>,
    /// Prometheus metrics over HTTP (`tickflow run --metrics-addr` overrides the address).
    #[serde(default)]
    pub metrics: Option<MetricsSpec>,
}

/// Where Prometheus scrapes the pipeline: `GET http://ADDR/metrics`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    /// `HOST:PORT` to listen on, e.g. `127.0.0.1:9464`, or `:9464` for every interface.
    pub addr: String,
}

/// The JSON Schema of the spec, as committed in `schemas/pipeline.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(PipelineSpec);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema always serializes");
    text.push('\n');
    text
}
