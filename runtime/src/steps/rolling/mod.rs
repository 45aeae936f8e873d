//! The `rolling` step: features over each key's latest rows (moving averages, EMA, RSI, lags).

pub mod config;
mod operator;
mod state;

use std::sync::Arc;

pub use self::config::RollingConfig;
use self::config::{RollingFn, Warmup};
use self::state::{Feature, Features, Frame};
use super::{AnyStream, BuildCx, PlanCx, Planned, StepConfig, StepOp, StreamInfo, StreamKind};
use crate::base::record::{Field, FieldType, Schema};
use crate::base::diagnostic::suggest;

impl StepConfig for RollingConfig {
    fn input(&self) -> &str {
        &self.input
    }
    fn plan(&self, cx: &mut PlanCx<'_>) -> Option<Planned> {
        let input = cx.input.clone();
        let schema = &input.schema;
        let mut ok = true;
        if self.features.is_empty() {
            cx.error("features", "a rolling step needs at least one feature (name: {fn: ...})");
            ok = false;
        }
        let frame = match (self.rows, self.range) {
            (Some(_), Some(_)) => {
                cx.error("range", "give `rows` or `range`, not both");
                ok = false;
                Frame::None
            }
            (Some(0), None) => {
                cx.error("rows", "must be at least 1");
                ok = false;
                Frame::None
            }
            (Some(n), None) => Frame::Rows(n as usize),
            (None, Some(d)) if d.as_millis() <= 0 => {
                cx.error("range", format!("must be positive, got {d}"));
                ok = false;
                Frame::None
            }
            (None, Some(d)) => Frame::Range(d.as_millis()),
            (None, None) => Frame::None,
        };
        if self.warmup == Warmup::Skip && !matches!(frame, Frame::Rows(_)) {
            cx.error("warmup", "`warmup: skip` leaves out the rows before a `rows:` frame is full; this step has no `rows:`");
            ok = false;
        }
        if !cx.input_known {
            return None;
        }
        if let Some(why) = &input.unwindowable {
            cx.error("input", why.replace("a window over them", "rolling features over them"));
            return None;
        }
        // The key and the time.
        let (key, time, lag, stamped) = crate::steps::ordered::plan_order(
            cx,
            &input,
            &self.input,
            self.key.as_deref(),
            self.time.as_deref(),
        );
        // The features.
        let mut fields = schema.fields.clone();
        let mut slots: Vec<usize> = Vec::new();
        let mut features = Vec::new();
        for (name, f) in &self.features {
            let p = format!("features.{name}");
            if !crate::base::record::valid_column_name(name) {
                cx.error(&p, format!("invalid column name `{name}`: use letters, digits and `_`"));
                ok = false;
                continue;
            }
            if fields.iter().any(|x| x.name.eq_ignore_ascii_case(name)) {
                cx.error(&p, format!("`{name}` is already a column of `{}`", self.input));
                ok = false;
                continue;
            }
            let fname = f.func.name();
            if f.func.framed() && frame == Frame::None && ok {
                cx.error(&format!("{p}.fn"), format!("`{fname}` is computed over a frame: give the step `rows: N` or `range: D`"));
                ok = false;
            }
            let slot = match (&f.field, f.func) {
                (None, RollingFn::Count) => None,
                (None, _) => {
                    cx.error(&format!("{p}.field"), format!("`{fname}` needs a `field` (a number column)"));
                    ok = false;
                    None
                }
                (Some(c), _) => match schema.field(c) {
                    Some(fd) if fd.ty.is_numeric() => {
                        let col = schema.index_of(c).expect("a field of the schema");
                        Some(slots.iter().position(|&s| s == col).unwrap_or_else(|| {
                            slots.push(col);
                            slots.len() - 1
                        }))
                    }
                    Some(fd) => {
                        cx.error(&format!("{p}.field"), format!("`{c}` is a {}; `{fname}` needs a number column", fd.ty.name()));
                        ok = false;
                        None
                    }
                    None => {
                        let numbers: Vec<&str> = schema.fields.iter().filter(|f| f.ty.is_numeric()).map(|f| f.name.as_str()).collect();
                        cx.error(&format!("{p}.field"), format!("unknown column `{c}`{}", suggest(c, numbers)));
                        ok = false;
                        None
                    }
                },
            };
            let mut extra = |what: &str, given: bool| {
                if given {
                    cx.error(&format!("{p}.{what}"), format!("`{fname}` takes no `{what}`"));
                    ok = false;
                }
            };
            let param = match f.func {
                RollingFn::Ema => {
                    extra("period", f.period.is_some());
                    extra("offset", f.offset.is_some());
                    match (f.span, f.alpha) {
                        (Some(s), None) if s >= 1.0 && s.is_finite() => 2.0 / (s + 1.0),
                        (None, Some(a)) if a > 0.0 && a <= 1.0 => a,
                        (Some(_), Some(_)) => {
                            cx.error(&format!("{p}.alpha"), "give `span` or `alpha`, not both");
                            ok = false;
                            0.0
                        }
                        (None, None) => {
                            cx.error(&p, "`ema` needs `span: N` (alpha = 2 / (N + 1)) or `alpha: A`");
                            ok = false;
                            0.0
                        }
                        (Some(s), None) => {
                            cx.error(&format!("{p}.span"), format!("must be at least 1, got {s}"));
                            ok = false;
                            0.0
                        }
                        (None, Some(a)) => {
                            cx.error(&format!("{p}.alpha"), format!("must be in (0, 1], got {a}"));
                            ok = false;
                            0.0
                        }
                    }
                }
                RollingFn::Rsi => {
                    extra("span", f.span.is_some());
                    extra("alpha", f.alpha.is_some());
                    extra("offset", f.offset.is_some());
                    match f.period {
                        Some(n) if n >= 1 => n as f64,
                        _ => {
                            cx.error(&format!("{p}.period"), "`rsi` needs `period: N` (at least 1, e.g. 14)");
                            ok = false;
                            0.0
                        }
                    }
                }
                RollingFn::Lag => {
                    extra("span", f.span.is_some());
                    extra("alpha", f.alpha.is_some());
                    extra("period", f.period.is_some());
                    match f.offset.unwrap_or(1) {
                        0 => {
                            cx.error(&format!("{p}.offset"), "must be at least 1");
                            ok = false;
                            0.0
                        }
                        n if n > 10_000 => {
                            cx.error(&format!("{p}.offset"), format!("at most 10000 rows back, got {n}"));
                            ok = false;
                            0.0
                        }
                        n => n as f64,
                    }
                }
                _ => {
                    extra("span", f.span.is_some());
                    extra("alpha", f.alpha.is_some());
                    extra("period", f.period.is_some());
                    extra("offset", f.offset.is_some());
                    0.0
                }
            };
            let ty = if f.func == RollingFn::Count { FieldType::Int64 } else { FieldType::Float64 };
            fields.push(Field::new(name, ty, f.func != RollingFn::Count));
            features.push(Feature { func: f.func, slot, param });
        }
        if let Frame::Rows(n) = frame
            && n > 100_000
        {
            cx.error("rows", format!("at most 100000 rows per frame, got {n}"));
            ok = false;
        }
        let (Some(key), Some(time)) = (key, time) else {
            return None;
        };
        if !ok {
            return None;
        }
        let out = Schema { fields };
        let output = StreamInfo {
            schema: out.clone(),
            kind: StreamKind::Rows,
            key: Some(key),
            time: Some(time),
            ..input.clone()
        };
        Some(Planned {
            output,
            op: Arc::new(Rolling {
                name: cx.name.to_string(),
                key,
                time,
                lag,
                stamped,
                slots,
                features: Features::new(frame, features),
                skip_warmup: self.warmup == Warmup::Skip,
                input_schema: input.schema.clone(),
                names: self.features.keys().cloned().collect(),
            }),
        })
    }
}

/// A planned rolling step.
#[derive(Debug, Clone)]
pub(crate) struct Rolling {
    name: String,
    key: usize,
    time: usize,
    /// Rows whose time is below `frontier - lag` are complete.
    lag: i64,
    /// Rows made from trades: late when behind the watermark they were read at.
    stamped: bool,
    /// The input column of each value slot.
    slots: Vec<usize>,
    features: Features,
    skip_warmup: bool,
    input_schema: Schema,
    names: Vec<String>,
}

impl StepOp for Rolling {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "rolling"
    }
    fn describe(&self) -> String {
        let frame = match self.features.frame {
            Frame::Rows(n) => format!("{n} rows"),
            Frame::Range(d) => crate::base::units::Duration(d).to_string(),
            Frame::None => "no frame".into(),
        };
        let feats: Vec<String> = self
            .names
            .iter()
            .zip(&self.features.features)
            .map(|(n, f)| format!("{n} = {}", f.func.name()))
            .collect();
        format!(
            "rolling by {}, {frame}\\n{}",
            self.input_schema.fields[self.key].name,
            feats.join(", ")
        )
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &BuildCx<'_>) -> AnyStream<'s> {
        let how = crate::steps::ordered::Ordering {
            name: self.name.clone(),
            kind: "rolling",
            key: self.key,
            time: self.time,
            lag: self.lag,
            stamped: self.stamped,
            input_schema: self.input_schema.clone(),
            tie: None,
        };
        AnyStream::Rows(crate::steps::ordered::in_event_time_order(input.rows(), cx, &how, self.clone()))
    }
    fn paces_source(&self) -> bool {
        true
    }
    fn dead_letter_label(&self) -> Option<&'static str> {
        Some("late")
    }
}
