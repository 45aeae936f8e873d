//! The model step behind the step contract.

use std::sync::Arc;

use super::config::ModelStepConfig;
use crate::plan::ModelNode;
use crate::steps::{
    AnyStream, BuildCx, PlanCx, Planned, StepConfig, StepOp, StreamInfo, StreamKind,
};

impl StepConfig for ModelStepConfig {
    fn input(&self) -> &str {
        &self.input
    }
    fn plan(&self, cx: &mut PlanCx<'_>) -> Option<Planned> {
        let input = cx.input.clone();
        if !cx.input_known {
            // The plugin and the limits are still checked; the inputs need the real stream.
            super::operator::plan_model(
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
        let node = super::operator::plan_model(
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
            .plugin
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
            clean(&self.plugin.info.name),
            clean(&self.plugin.info.version),
            clean(&file),
            outputs.join(", ")
        )
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &BuildCx<'_>) -> AnyStream<'s> {
        AnyStream::Rows(super::operator::model_stream(
            input.rows(),
            cx.ctx,
            self,
            cx.index,
            cx.input_node,
            std::rc::Rc::clone(cx.dead),
        ))
    }
}
