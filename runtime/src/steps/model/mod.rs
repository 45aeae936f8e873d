//! The model step: rows scored by a WebAssembly plugin ([`crate::plugins`]), behind the step
//! contract. Config in [`config`], the operator in [`operator`].

pub mod config;
pub mod operator;
mod setup;

use std::sync::Arc;

use self::config::ModelStepConfig;
use crate::base::record::Schema;
use crate::steps::{
    AnyStream, BuildCx, PlanCx, Planned, StepConfig, StepOp, StreamInfo, StreamKind,
};

impl StepConfig for ModelStepConfig {
    fn input(&self) -> &str {
        &self.input
    }
    fn files(&self) -> Vec<&str> {
        let mut files = vec![self.plugin.as_str()];
        // A model file that is reloaded may change while processes start; with checkpoints the
        // first one makes every process score with the same model.
        if self.reload.is_none() {
            files.extend(self.model.as_deref());
        }
        files
    }
    fn plan(&self, cx: &mut PlanCx<'_>) -> Option<Planned> {
        let input = cx.input.clone();
        if !cx.input_known {
            // The plugin and the limits are still checked; the inputs need the real stream.
            operator::plan_model(
                cx.name,
                self,
                &crate::base::record::Schema::default(),
                0,
                &mut |p, m| {
                    if !p.contains(".inputs") {
                        (cx.err)(p, m)
                    }
                },
            );
            return None;
        }
        let node = operator::plan_model(
            cx.name,
            self,
            &input.schema,
            input.key.unwrap_or(0),
            cx.err,
        )?;
        let output = StreamInfo {
            schema: node.schema.clone(),
            kind: StreamKind::Rows,
            key: Some(node.input_fields[0]),
            ..input
        };
        Some(Planned {
            output,
            op: Arc::new(node),
        })
    }
}

impl StepOp for ModelNode {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "model"
    }
    fn graph_shape(&self) -> &'static str {
        "hexagon"
    }
    fn reads_by_key(&self, input: &StreamInfo) -> bool {
        input.key.is_some()
    }
    fn describe(&self) -> String {
        // What a plugin says about itself is untrusted: one line, no quotes, bounded.
        let clean = |s: &str| -> String {
            crate::base::text::quote(s, crate::base::text::QUOTE_CHARS)
                .chars()
                .map(|c| match c {
                    '"' => '\'',
                    '\\' => '/',
                    c => c,
                })
                .collect()
        };
        let outputs: Vec<String> = self
            .info
            .outputs
            .iter()
            .map(|f| clean(&f.name))
            .collect();
        let file = self
            .plugin
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!(
            "model {} {} ({})\\n+ {}",
            clean(&self.info.name),
            clean(&self.info.version),
            clean(&file),
            outputs.join(", ")
        )
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &BuildCx<'_>) -> AnyStream<'s> {
        AnyStream::Rows(operator::model_stream(
            input.rows(),
            cx.ctx,
            self,
            cx.index,
            cx.input_node,
            std::rc::Rc::clone(cx.dead),
        ))
    }
}

/// A model step: rows scored by a plugin, out with the plugin's columns appended.
#[derive(Debug, Clone)]
pub struct ModelNode {
    pub name: String,
    /// The schema of the rows it scores.
    pub incoming: Schema,
    pub plugin: std::sync::Arc<crate::plugins::Plugin>,
    /// For each plugin input, the index of the incoming field it reads (the first is the key).
    pub input_fields: Vec<usize>,
    /// The incoming fields, then the plugin's outputs.
    pub schema: Schema,
    /// What `init` gets: the config (with list-form inputs and the outputs in it) and the
    /// bytes of the `model:` file.
    pub config: String,
    pub artifact: std::sync::Arc<[u8]>,
    /// With a `model:` file: its URL, the version of the bytes planned (their content hash,
    /// written to each row's `model_version`) and how often it is checked for a new one.
    pub model: Option<ModelFile>,
    /// The instance's inputs and outputs, as `init` answered at planning.
    pub info: crate::plugins::host_types::ModelInfo,
    pub limits: crate::plugins::Limits,
    pub on_error: config::OnError,
    pub on_nan: config::OnNan,
    pub batch_rows: usize,
}


/// The `model:` file of a model step.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub url: String,
    /// The content hash of the bytes planned (16 hex digits).
    pub version: String,
    pub reload: Option<std::time::Duration>,
}

/// The version of a model's bytes: their content hash (FNV-1a, 16 hex digits).
pub fn model_version(bytes: &[u8]) -> String {
    format!("{:016x}", crate::tables::load::fingerprint(bytes))
}
