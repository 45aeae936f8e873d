//! The `top_n` step: the first `n` rows of each window by an expression, across keys.

pub mod config;
mod operator;

use std::sync::Arc;

pub use self::config::TopNConfig;
use self::config::Order;
use super::expressions::compile_at;
use super::{AnyStream, BuildCx, PlanCx, Planned, StepConfig, StepOp, StreamInfo, StreamKind};
use crate::base::record::{Field, FieldType, Schema};
use crate::expr::Expr;
use crate::expr::types::Type;
use crate::base::diagnostic::suggest;

/// The most rows a window's ranking keeps.
const MAX_N: u32 = 10_000;

impl StepConfig for TopNConfig {
    fn input(&self) -> &str {
        &self.input
    }
    fn plan(&self, cx: &mut PlanCx<'_>) -> Option<Planned> {
        let mut ok = true;
        if self.n == 0 || self.n > MAX_N {
            cx.error("n", format!("must be 1 to {MAX_N}, got {}", self.n));
            ok = false;
        }
        if !cx.input_known {
            return None;
        }
        let input = cx.input.clone();
        let schema = &input.schema;
        let by = compile_at(cx, "by", &self.by);
        if let Some(e) = &by
            && !(e.ty().is_numeric() || matches!(e.ty(), Type::Ts | Type::Str | Type::Null))
        {
            cx.error("by", format!("`{}` is a {}; rank by a number, a timestamp or a string", self.by, e.ty().name()));
            ok = false;
        }
        // What each ranking is per: a time column whose rows are complete behind the frontier.
        let usable: Vec<&str> = input.complete.iter().map(|c| schema.fields[c.column].name.as_str()).collect();
        let per = match &self.per {
            _ if input.complete.is_empty() => {
                cx.error(
                    "input",
                    format!(
                        "top_n ranks the rows of each window, and `{}` has no window's time column (rank the rows of a window step, or of a step over one)",
                        self.input
                    ),
                );
                None
            }
            None => input.time.filter(|t| input.complete.iter().any(|c| c.column == *t)).or(Some(input.complete[0].column)),
            Some(name) => match schema.index_of(name) {
                Some(i) if input.complete.iter().any(|c| c.column == i) => Some(i),
                Some(_) => {
                    cx.error("per", format!("`{name}` is not a window's time column of `{}`; use one of {}", self.input, quoted(&usable)));
                    None
                }
                None => {
                    cx.error("per", format!("unknown column `{name}`{}", suggest(name, usable.iter().copied())));
                    None
                }
            },
        };
        let key = match &self.key {
            Some(k) => match schema.field(k) {
                Some(f) if f.ty == FieldType::Utf8 => schema.index_of(k),
                Some(f) => {
                    cx.error("key", format!("the key must be a string column; `{k}` is {}", f.ty.name()));
                    None
                }
                None => {
                    cx.error("key", format!("unknown column `{k}`{}", suggest(k, schema.names())));
                    None
                }
            },
            None => match input.key {
                Some(k) => Some(k),
                None => {
                    cx.error("key", format!("`{}` has no key column: name the column of what is ranked with `key:`", self.input));
                    None
                }
            },
        };
        if let Some(clash) = schema.fields.iter().find(|f| f.name.eq_ignore_ascii_case("rank")) {
            cx.error(
                "input",
                format!("`{}` already has a column `{}`, and top_n adds `rank`: rename it first (a select step with `{} AS ...`)", self.input, clash.name, clash.name),
            );
            ok = false;
        }
        let (Some(by), Some(per), Some(key)) = (by, per, key) else {
            return None;
        };
        if !ok {
            return None;
        }
        let complete = input.complete.iter().find(|c| c.column == per).copied().expect("`per` is a complete column");
        let mut fields = schema.fields.clone();
        fields.push(Field::new("rank", FieldType::Int64, false));
        let output = StreamInfo {
            schema: Schema { fields },
            kind: StreamKind::Rows,
            key: Some(key),
            time: Some(per),
            ..input.clone()
        };
        Some(Planned {
            output,
            op: Arc::new(TopN {
                name: cx.name.to_string(),
                n: self.n as usize,
                by,
                desc: self.order == Order::Desc,
                per,
                key,
                complete,
                revised: input.revised,
                source: input.source,
                input_schema: input.schema,
            }),
        })
    }
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// A planned top_n step.
#[derive(Debug, Clone)]
pub(crate) struct TopN {
    name: String,
    n: usize,
    by: Expr,
    desc: bool,
    /// The time column each ranking is per.
    per: usize,
    /// What is ranked: one row per value.
    key: usize,
    /// How `per` is complete behind the frontier.
    complete: crate::steps::Complete,
    /// The input's revisions: the output's `revision` is the ranking's.
    revised: Option<super::Revised>,
    source: usize,
    input_schema: Schema,
}

impl StepOp for TopN {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "top_n"
    }
    fn describe(&self) -> String {
        format!(
            "top {} by {} {} per {}",
            self.n,
            self.by.text(),
            if self.desc { "desc" } else { "asc" },
            self.input_schema.fields[self.per].name
        )
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &BuildCx<'_>) -> AnyStream<'s> {
        AnyStream::Rows(operator::ranked(input.rows(), cx, self.clone()))
    }
    fn paces_source(&self) -> bool {
        true
    }
    fn dead_letter_label(&self) -> Option<&'static str> {
        Some("late")
    }
}
