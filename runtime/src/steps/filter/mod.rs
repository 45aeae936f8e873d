//! The `filter` step: records for which a SQL condition is true.

pub mod config;

use std::sync::Arc;

use arrow_array::cast::AsArray;

pub use self::config::FilterConfig;
use super::expressions::{BatchOf, Evaluated, compile_at};
use super::{AnyStream, BuildCx, PlanCx, Planned, StepConfig, StepOp, StreamKind};
use crate::expr::Expr;
use crate::expr::types::Type;

impl StepConfig for FilterConfig {
    fn input(&self) -> &str {
        &self.input
    }
    fn plan(&self, cx: &mut PlanCx<'_>) -> Option<Planned> {
        if !cx.input_known {
            return None;
        }
        // NB: with a broken condition the output is still known (the input's), so the steps
        // after it are checked in the same round; the plan has errors and never runs.
        let Some(expr) = compile_at(cx, "where", &self.condition) else {
            return Some(Planned { output: cx.input.clone(), op: super::broken(cx.name, "filter") });
        };
        if !matches!(expr.ty(), Type::Bool | Type::Null) {
            cx.error(
                "where",
                format!(
                    "`where` must be a condition (boolean), but `{}` is a {}",
                    self.condition,
                    expr.ty().name()
                ),
            );
            return Some(Planned { output: cx.input.clone(), op: super::broken(cx.name, "filter") });
        }
        Some(Planned {
            output: cx.input.clone(),
            op: Arc::new(Filter {
                name: cx.name.to_string(),
                expr,
                kind: cx.input.kind,
                source: cx.input.source,
                schema: cx.input.schema.clone(),
            }),
        })
    }
}

#[derive(Debug)]
struct Filter {
    name: String,
    expr: Expr,
    kind: StreamKind,
    source: usize,
    schema: crate::base::record::Schema,
}

impl StepOp for Filter {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "filter"
    }
    fn describe(&self) -> String {
        format!("filter where {}", self.expr.text())
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &BuildCx<'_>) -> AnyStream<'s> {
        let mut eval = Evaluated::new(cx, &self.name, self.source, self.schema.clone(), vec![self.expr.clone()]);
        match (self.kind, input) {
            (StreamKind::Trades, AnyStream::Trades(s)) if let Some(cond) = self.expr.trade_condition() => {
                // Compiled against the trade's fields: nothing to build, nothing can fail.
                AnyStream::Trades(super::stream::map_batches(s, cx, &self.name, "filter", move |mut batch, out| {
                    batch.retain(|t| cond.test(t));
                    *out = batch;
                }))
            }
            (StreamKind::Trades, AnyStream::Trades(s)) => {
                AnyStream::Trades(super::stream::map_batches(s, cx, &self.name, "filter", move |batch, out| {
                    keep(&mut eval, batch, out)
                }))
            }
            (_, input) => {
                let s = input.rows();
                AnyStream::Rows(super::stream::map_batches(s, cx, &self.name, "filter", move |batch, out| {
                    keep(&mut eval, batch, out)
                }))
            }
        }
    }
}

/// The records of `batch` whose condition is true, kept in place (the batch becomes `out`).
fn keep<R: BatchOf>(eval: &mut Evaluated, mut batch: Vec<R>, out: &mut Vec<R>) {
    let Some((values, _)) = eval.run(&batch) else {
        return;
    };
    let mask = crate::expr::truthy(values[0].as_boolean());
    if mask.true_count() < batch.len() {
        let mut keep = mask.values().iter();
        batch.retain(|_| keep.next().unwrap_or(false));
    }
    *out = batch;
}
