//! The `asof_join` step: each left record with the latest right record of its key at or before
//! its time.

pub mod config;
mod operator;
mod waiting;

use std::sync::Arc;

pub use self::config::AsofJoinConfig;
use self::config::{Direction, How, JoinOn};
use super::expressions::{compile_against, compile_at};
use super::{AnyStream, BuildCx, PlanCx, Planned, StepConfig, StepOp, StreamInfo, StreamKind};
use crate::base::record::{Field, Schema};
use crate::expr::Expr;
use crate::expr::types::Type;
use crate::base::diagnostic::suggest;

impl StepConfig for AsofJoinConfig {
    fn input(&self) -> &str {
        &self.left
    }
    fn also_reads(&self) -> Vec<(&'static str, &str)> {
        vec![("right", &self.right)]
    }
    fn plan(&self, cx: &mut PlanCx<'_>) -> Option<Planned> {
        let mut ok = true;
        if self.direction == Direction::Nearest {
            cx.error("direction", "`nearest` is not supported yet: use `backward` (the latest right record at or before)");
            ok = false;
        }
        if let Some(t) = self.tolerance
            && t.as_millis() <= 0
        {
            cx.error("tolerance", format!("must be positive, got {t}"));
            ok = false;
        }
        if let Some(t) = self.state_ttl
            && t.as_millis() <= 0
        {
            cx.error("state_ttl", format!("must be positive, got {t}"));
            ok = false;
        }
        if self.columns.is_empty() {
            cx.error("columns", "an asof_join needs the right columns to add (new_name: right_column)");
            ok = false;
        }
        if self.left == self.right {
            cx.error("right", "an asof_join of a stream with itself: use a rolling step's `lag` instead");
            return None;
        }
        if !cx.input_known {
            return None;
        }
        let left = cx.input.clone();
        let right = cx.sides[0].clone();
        // The keys.
        let (lk, rk) = match &self.on {
            Some(JoinOn::Both(e)) => (Some(e.clone()), Some(e.clone())),
            Some(JoinOn::Sides { left, right }) => (Some(left.clone()), Some(right.clone())),
            None => (left.key_name().map(str::to_string), right.key_name().map(str::to_string)),
        };
        let on_field = |side: &str| match &self.on {
            Some(JoinOn::Sides { .. }) => format!("on.{side}"),
            _ => "on".to_string(),
        };
        let (Some(lk), Some(rk)) = (lk, rk) else {
            cx.error("on", format!("`{}` or `{}` has no key column: say what to match with `on:`", self.left, self.right));
            return None;
        };
        let left_key = compile_at(cx, &on_field("left"), &lk);
        let right_key = compile_against(cx, &on_field("right"), &rk, &right.schema);
        for (e, text, side) in [(&left_key, &lk, "left"), (&right_key, &rk, "right")] {
            if let Some(e) = e
                && !matches!(e.ty(), Type::Str | Type::Null)
            {
                cx.error(&on_field(side), format!("`{text}` is a {}; keys are strings", e.ty().name()));
                ok = false;
            }
        }
        // The times: each side's event time, and how complete it is.
        let time_of = |s: &StreamInfo, name: &str, cx: &mut PlanCx<'_>, field: &str| -> Option<(usize, Option<super::Complete>)> {
            let Some(t) = s.time else {
                cx.error(field, format!("`{name}` has no event-time column"));
                return None;
            };
            if s.revised.is_some() {
                cx.error(field, format!("`{name}` revises rows it has emitted (`allowed_lateness`): a revision would join again; join rows without revisions"));
                return None;
            }
            if s.complete.is_empty() {
                return Some((t, None));
            }
            match s.complete.iter().find(|c| c.column == t) {
                Some(c) => Some((t, Some(*c))),
                None => {
                    cx.error(field, format!("`{name}`'s event time `{}` is not the time its rows are complete by", s.schema.fields[t].name));
                    None
                }
            }
        };
        let lt = time_of(&left, &self.left, cx, "left");
        let rt = time_of(&right, &self.right, cx, "right");
        // The columns added.
        let mut fields = left.schema.fields.clone();
        let mut picks = Vec::new();
        for (name, col) in &self.columns {
            let p = format!("columns.{name}");
            if !crate::base::record::valid_column_name(name) {
                cx.error(&p, format!("invalid column name `{name}`: use letters, digits and `_`"));
                ok = false;
                continue;
            }
            if let Some(clash) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)) {
                cx.error(&p, format!("`{name}` is already a column of `{}` (`{}`)", self.left, clash.name));
                ok = false;
                continue;
            }
            match right.schema.index_of(col) {
                Some(i) => {
                    fields.push(Field::new(name, right.schema.fields[i].ty, true));
                    picks.push(i);
                }
                None => {
                    cx.error(&p, format!("`{}` has no column `{col}`{}", self.right, suggest(col, right.schema.names())));
                    ok = false;
                }
            }
        }
        let (Some(left_key), Some(right_key), Some((lt, llag)), Some((rt, rlag))) = (left_key, right_key, lt, rt) else {
            return None;
        };
        if !ok {
            return None;
        }
        let output = StreamInfo { schema: Schema { fields }, kind: StreamKind::Rows, ..left.clone() };
        Some(Planned {
            output,
            op: Arc::new(AsofJoin {
                name: cx.name.to_string(),
                left_key,
                right_key,
                left_time: lt,
                right_time: rt,
                left_lag: llag,
                right_lag: rlag,
                tolerance: self.tolerance.map(|d| d.as_millis()),
                state_ttl: self.state_ttl.map(|d| d.as_millis()),
                inner: self.how == How::Inner,
                picks,
                left_schema: left.schema,
                right_schema: right.schema,
                sources: (left.source, right.source),
                right_name: self.right.clone(),
                added: self.columns.keys().cloned().collect(),
            }),
        })
    }
}

/// A planned asof_join.
#[derive(Debug, Clone)]
pub(crate) struct AsofJoin {
    name: String,
    left_key: Expr,
    right_key: Expr,
    left_time: usize,
    right_time: usize,
    /// `None`: records stamped with the watermark they were read at (late when behind it);
    /// `Some(c)`: a window's rows, complete behind the frontier as `c` says.
    left_lag: Option<super::Complete>,
    right_lag: Option<super::Complete>,
    tolerance: Option<i64>,
    /// How far a side may pass its waiting state before it is expired (`None`: never).
    state_ttl: Option<i64>,
    inner: bool,
    /// The right columns added, in order.
    picks: Vec<usize>,
    left_schema: Schema,
    right_schema: Schema,
    sources: (usize, usize),
    right_name: String,
    added: Vec<String>,
}

impl StepOp for AsofJoin {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "asof_join"
    }
    fn describe(&self) -> String {
        let within = self.tolerance.map_or(String::new(), |t| format!(" within {}", crate::base::units::Duration(t)));
        format!(
            "{}asof join {} on {} = {}{within}\\nadds {}",
            if self.inner { "inner " } else { "" },
            self.right_name,
            self.left_key.text(),
            self.right_key.text(),
            self.added.join(", ")
        )
    }
    fn build<'s>(&self, _: AnyStream<'s>, _: &BuildCx<'_>) -> AnyStream<'s> {
        unreachable!("an asof_join is built with its right side (build_joined)")
    }
    fn build_joined<'s>(&self, input: AnyStream<'s>, mut sides: Vec<AnyStream<'s>>, cx: &BuildCx<'_>) -> AnyStream<'s> {
        let right = sides.pop().expect("the right side");
        AnyStream::Rows(operator::join(self, input, right, cx))
    }
    fn paces_source(&self) -> bool {
        true
    }
    fn dead_letter_label(&self) -> Option<&'static str> {
        Some("late")
    }
}
