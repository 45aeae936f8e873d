//! What the steps that compute SQL expressions share: compiling at plan time with errors placed
//! in the spec, and evaluating over a batch with failing records dead-lettered.

use std::cell::RefCell;
use std::rc::Rc;

use arrow_array::ArrayRef;

use super::{BuildCx, PlanCx};
use crate::base::record::trade_json;
use crate::base::record::{Row, Schema, Trade};
use crate::base::reject::RejectReason;
use crate::expr::{Batch, Expr};
use crate::output::dead_letter::{DeadLetter, DeadLetters};
use crate::worker::context::SourceFacts;

/// Compiles the expression at `field` (a dotted path below the step) against the step's input.
/// Errors are reported at the expression's own place: `field` plus the position inside it.
pub fn compile_at(cx: &mut PlanCx<'_>, field: &str, text: &str) -> Option<Expr> {
    let schema = cx.input.schema.clone();
    compile_against(cx, field, text, &schema)
}

/// [`compile_at`] against another stream's schema (a join's right side).
pub fn compile_against(
    cx: &mut PlanCx<'_>,
    field: &str,
    text: &str,
    schema: &Schema,
) -> Option<Expr> {
    match Expr::compile(text, schema) {
        Ok(e) => Some(e),
        Err(errors) => {
            for e in errors {
                // `@L:C` is resolved by the spec loader to the line and column inside the YAML.
                cx.error(&format!("{field}@{}:{}", e.line, e.column), e.message);
            }
            None
        }
    }
}

/// Records a batch of which can be turned into columns.
pub trait BatchOf: Sized {
    fn columns(records: &[Self], schema: &Schema, needed: &[usize]) -> Batch;
    /// The record as text for a dead letter.
    fn raw(&self, schema: &Schema) -> String;
    /// Its input position (line or offset), 0 when unknown.
    fn line(&self, source: &SourceFacts) -> u64;
}

impl BatchOf for Trade {
    fn columns(records: &[Self], _: &Schema, needed: &[usize]) -> Batch {
        crate::expr::from_trades(records, needed)
    }
    fn raw(&self, _: &Schema) -> String {
        trade_json(self)
    }
    fn line(&self, source: &SourceFacts) -> u64 {
        source.position_of(self.seq)
    }
}

impl BatchOf for Row {
    fn columns(records: &[Self], schema: &Schema, needed: &[usize]) -> Batch {
        crate::expr::from_rows(records, schema, needed)
    }
    fn raw(&self, schema: &Schema) -> String {
        let mut buf = Vec::new();
        crate::output::rolling::write_json_row(schema, self, &mut buf);
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
    fn line(&self, _: &SourceFacts) -> u64 {
        0
    }
}

/// A step's expressions, evaluated batch by batch on one worker.
pub struct Evaluated {
    step: String,
    exprs: Vec<Expr>,
    needed: Vec<usize>,
    schema: Schema,
    source: SourceFacts,
    dead: Rc<RefCell<DeadLetters>>,
}

impl Evaluated {
    pub fn new(
        cx: &BuildCx<'_>,
        step: &str,
        source: usize,
        input: Schema,
        exprs: Vec<Expr>,
    ) -> Self {
        let mut needed: Vec<usize> = exprs
            .iter()
            .flat_map(|e| e.columns().iter().copied())
            .collect();
        needed.sort_unstable();
        needed.dedup();
        Evaluated {
            step: step.to_string(),
            exprs,
            needed,
            schema: input,
            source: cx.ctx.sources[source].clone(),
            dead: Rc::clone(cx.dead),
        }
    }

    /// Every expression's values over `batch`, and which records failed (dead-lettered with the
    /// first expression that failed for them; their values are NULL). `None` for an empty batch.
    pub fn run<R: BatchOf>(&mut self, batch: &[R]) -> Option<(Vec<ArrayRef>, Vec<bool>)> {
        if batch.is_empty() {
            return None;
        }
        let columns = R::columns(batch, &self.schema, &self.needed);
        let mut failed = vec![false; batch.len()];
        let mut out = Vec::with_capacity(self.exprs.len());
        for e in &self.exprs {
            match e.eval_rows(&columns) {
                Ok(a) => out.push(a),
                Err(per_row) => {
                    let mut parts: Vec<ArrayRef> = Vec::with_capacity(per_row.len());
                    for (r, value, error) in per_row {
                        if !error.is_empty() && !failed[r] {
                            failed[r] = true;
                            self.dead.borrow_mut().push(DeadLetter {
                                source: &self.step,
                                reason: RejectReason::ExpressionError,
                                detail: format!("step `{}`: `{}`: {error}", self.step, e.text()),
                                raw: batch[r].raw(&self.schema),
                                line: batch[r].line(&self.source),
                            });
                        }
                        parts.push(value);
                    }
                    let refs: Vec<&dyn arrow_array::Array> =
                        parts.iter().map(|a| a.as_ref()).collect();
                    match arrow_select::concat::concat(&refs) {
                        Ok(a) => out.push(a),
                        Err(_) => {
                            out.push(arrow_array::new_null_array(&e.ty().arrow(), batch.len()))
                        }
                    }
                }
            }
        }
        Some((out, failed))
    }
}
