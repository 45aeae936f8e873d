//! The window step behind the step contract: planning (checks against the input stream, the
//! output schema) and building (the timely or the differential operator).

use std::sync::Arc;

use super::config::{AggregateFn, PartialWindows, WindowEngine, WindowSpec, WindowStepConfig};
use crate::base::record::{Field, FieldType, Schema};
use crate::plan::{AggregatePlan, MAX_WINDOWS_PER_RECORD, TradeField, WindowKind, WindowNode};
use crate::spec::diagnostic::suggest;
use crate::steps::{
    AnyStream, BuildCx, PlanCx, Planned, StepConfig, StepOp, StreamInfo, StreamKind,
};

impl StepConfig for WindowStepConfig {
    fn input(&self) -> &str {
        &self.input
    }
    fn plan(&self, cx: &mut PlanCx<'_>) -> Option<Planned> {
        if cx.input.kind != StreamKind::Trades {
            cx.error(
                "input",
                format!(
                    "window steps read trades (a source, or a filter of one); `{}` gives rows (windows over rows are not supported yet)",
                    self.input
                ),
            );
            return None;
        }
        let (source, live) = (cx.input.source, cx.input.live);
        let node = plan_window(cx.name, self, source, live, cx.err)?;
        let output = StreamInfo {
            schema: node.schema.clone(),
            kind: StreamKind::Rows,
            key: Some(0),
            time: Some(1),
            source,
            live,
        };
        Some(Planned {
            output,
            op: Arc::new(node),
        })
    }
}

impl StepOp for WindowNode {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "window"
    }
    fn describe(&self) -> String {
        let d = |ms: i64| crate::spec::units::Duration(ms).to_string();
        let shape = match self.kind {
            WindowKind::Tumbling { size } => format!("tumbling {}", d(size)),
            WindowKind::Hopping { size, slide } => {
                format!("hopping {} every {}", d(size), d(slide))
            }
            WindowKind::Session { gap } => format!("session gap {}", d(gap)),
        };
        let aggs: Vec<&str> = self.aggregates.iter().map(|a| a.name.as_str()).collect();
        format!(
            "window {shape} by {}\\n{}",
            self.schema.fields[0].name,
            aggs.join(", ")
        )
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &BuildCx<'_>) -> AnyStream<'s> {
        let trades = input.trades();
        let dead = std::rc::Rc::clone(cx.dead);
        AnyStream::Rows(if self.differential {
            super::differential::window_stream(trades, cx.ctx, self, cx.index, dead)
        } else {
            super::operator::window_stream(trades, cx.ctx, self, cx.index, cx.input_node, dead)
        })
    }
    fn time_step_ms(&self) -> Option<u64> {
        Some(match self.kind {
            WindowKind::Tumbling { size } => size as u64,
            WindowKind::Hopping { size, slide } => gcd(size as u64, slide as u64),
            WindowKind::Session { .. } => 1000,
        })
    }
    fn paces_source(&self) -> bool {
        true
    }
    fn dead_letter_label(&self) -> Option<&'static str> {
        Some("late")
    }
    fn checkpoint_problem(&self) -> Option<(&'static str, String)> {
        self.differential.then(|| {
            (
                "engine",
                "checkpoints support the timely engine only (use `engine: auto` or `timely`)"
                    .to_string(),
            )
        })
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

pub(crate) fn plan_window(
    name: &str,
    cfg: &WindowStepConfig,
    input: usize,
    live: bool,
    err: &mut dyn FnMut(String, String),
) -> Option<WindowNode> {
    let p = format!("steps.{name}");
    let trades = Schema::trades();
    let mut ok = true;
    match trades.field(&cfg.key) {
        Some(f) if f.ty == FieldType::Utf8 => {}
        Some(f) => {
            err(
                format!("{p}.key"),
                format!(
                    "cannot group by `{}` ({}): the key must be a string field",
                    cfg.key,
                    f.ty.name()
                ),
            );
            ok = false;
        }
        None => {
            err(
                format!("{p}.key"),
                format!(
                    "unknown field `{}`{}",
                    cfg.key,
                    suggest(&cfg.key, trades.names())
                ),
            );
            ok = false;
        }
    }
    let positive =
        |d: crate::spec::units::Duration, field: &str, err: &mut dyn FnMut(String, String)| {
            if d.as_millis() <= 0 {
                err(
                    format!("{p}.window.{field}"),
                    format!("must be positive, got {d}"),
                );
                false
            } else {
                true
            }
        };
    let kind = match cfg.window {
        WindowSpec::Tumbling { size } => {
            ok &= positive(size, "size", err);
            WindowKind::Tumbling {
                size: size.as_millis(),
            }
        }
        WindowSpec::Hopping { size, slide } => {
            ok &= positive(size, "size", err) & positive(slide, "slide", err);
            if slide > size {
                err(
                    format!("{p}.window.slide"),
                    format!("slide ({slide}) must not exceed size ({size})"),
                );
                ok = false;
            } else if slide.as_millis() > 0
                && size.as_millis() / slide.as_millis() > MAX_WINDOWS_PER_RECORD
            {
                err(
                    format!("{p}.window.slide"),
                    format!(
                        "every record would belong to {} windows (size {size} / slide {slide}); at most {MAX_WINDOWS_PER_RECORD} are allowed: use a larger slide or a smaller size",
                        size.as_millis() / slide.as_millis()
                    ),
                );
                ok = false;
            }
            WindowKind::Hopping {
                size: size.as_millis(),
                slide: slide.as_millis(),
            }
        }
        WindowSpec::Session { gap } => {
            ok &= positive(gap, "gap", err);
            if cfg.allowed_lateness.as_millis() > 0 {
                err(
                    format!("{p}.allowed_lateness"),
                    "allowed_lateness is not supported for session windows yet; use 0s".into(),
                );
                ok = false;
            }
            WindowKind::Session {
                gap: gap.as_millis(),
            }
        }
    };
    if cfg.allowed_lateness.as_millis() < 0 {
        err(
            format!("{p}.allowed_lateness"),
            "must not be negative".into(),
        );
    }
    if cfg.aggregates.is_empty() {
        err(
            format!("{p}.aggregates"),
            "a window needs at least one aggregate".into(),
        );
        ok = false;
    }
    let revisions = cfg.allowed_lateness.as_millis() > 0;
    let mut fields = vec![
        Field::new(&cfg.key, FieldType::Utf8, false),
        Field::new("window_start", FieldType::Timestamp, false),
        Field::new("window_end", FieldType::Timestamp, false),
    ];
    let mut aggregates = Vec::new();
    for (col, agg) in &cfg.aggregates {
        let ap = format!("{p}.aggregates.{col}");
        if fields.iter().any(|f| &f.name == col) || (revisions && col == "revision") {
            err(
                ap.clone(),
                format!(
                    "column `{col}` clashes with a column the window adds (`{}`, `window_start`, `window_end`{})",
                    cfg.key,
                    if revisions { ", `revision`" } else { "" }
                ),
            );
            ok = false;
        }
        let field = match (&agg.field, agg.func.takes_field()) {
            (Some(f), false) => {
                err(
                    format!("{ap}.field"),
                    format!(
                        "`{}` takes no field (remove `field: {f}`)",
                        fn_name(agg.func)
                    ),
                );
                ok = false;
                TradeField::Price
            }
            (None, false) => TradeField::Price,
            (None, true) => {
                err(
                    format!("{ap}.field"),
                    format!(
                        "`{}` needs a `field` (one of `price`, `volume`)",
                        fn_name(agg.func)
                    ),
                );
                ok = false;
                TradeField::Price
            }
            (Some(f), true) => match trades.field(f) {
                Some(_) if f == "price" => TradeField::Price,
                Some(_) if f == "volume" => TradeField::Volume,
                Some(fd) => {
                    err(
                        format!("{ap}.field"),
                        format!(
                            "`{f}` is a {}; `{}` needs a numeric field (`price`, `volume`)",
                            fd.ty.name(),
                            fn_name(agg.func)
                        ),
                    );
                    ok = false;
                    TradeField::Price
                }
                None => {
                    err(
                        format!("{ap}.field"),
                        format!("unknown field `{f}`{}", suggest(f, ["price", "volume"])),
                    );
                    ok = false;
                    TradeField::Price
                }
            },
        };
        let (ty, nullable) = match agg.func {
            AggregateFn::Count => (FieldType::Int64, false),
            AggregateFn::Stddev | AggregateFn::Vwap => (FieldType::Float64, true),
            _ => (FieldType::Float64, false),
        };
        fields.push(Field::new(col, ty, nullable));
        aggregates.push(AggregatePlan {
            name: col.clone(),
            func: agg.func,
            field,
        });
    }
    if revisions {
        fields.push(Field::new("revision", FieldType::Int64, false));
    }
    let session = matches!(kind, WindowKind::Session { .. });
    let differential = match cfg.engine {
        // Measured: the timely operator is 4–5× faster than differential dataflow on revisable
        // bars (BENCHMARKS.md), and both give identical rows; so `auto` picks timely.
        WindowEngine::Auto => false,
        WindowEngine::Timely => false,
        WindowEngine::Differential if session => {
            err(
                format!("{p}.engine"),
                "the differential engine does not support session windows; use `timely` or `auto`"
                    .into(),
            );
            ok = false;
            false
        }
        WindowEngine::Differential => true,
    };
    let skip_partial = live && cfg.partial_windows == PartialWindows::Skip;
    if differential && skip_partial {
        err(
            format!("{p}.partial_windows"),
            "the differential engine emits partial first windows of a live source: set `partial_windows: keep`, or use `engine: timely`".into(),
        );
        ok = false;
    }
    ok.then(|| WindowNode {
        name: name.to_string(),
        input,
        kind,
        allowed_lateness_ms: cfg.allowed_lateness.as_millis().max(0),
        aggregates,
        schema: Schema { fields },
        differential,
        skip_partial,
    })
}

fn fn_name(f: AggregateFn) -> &'static str {
    AggregateFn::NAMES[f as usize]
}
