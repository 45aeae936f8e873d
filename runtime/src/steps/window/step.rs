//! The window step behind the step contract: planning (checks against the input stream, the
//! output schema) and building (the timely or the differential operator).

use std::sync::Arc;

use super::config::{
    AggregateFn, AlignSpec, FillMode, PartialWindows, SessionKind, WindowEngine, WindowSpec,
    WindowStepConfig,
};
use crate::base::calendar::align::{DAY_MS, MONTH_MS, WEEK_MS};
use crate::base::calendar::{Align, Calendar, time_zone};
use crate::base::diagnostic::suggest;
use crate::base::record::{Field, FieldType, Schema};
use crate::steps::window::node::{
    AggregatePlan, FillPlan, MAX_WINDOWS_PER_RECORD, RowInput, TradeField, WindowKind, WindowNode,
};
use crate::steps::{
    AnyStream, BuildCx, Complete, PlanCx, Planned, StepConfig, StepOp, StreamInfo, StreamKind,
};

impl StepConfig for WindowStepConfig {
    fn input(&self) -> &str {
        &self.input
    }
    fn plan(&self, cx: &mut PlanCx<'_>) -> Option<Planned> {
        if self.window.sampled() {
            return super::sampled::plan(self, cx);
        }
        let (source, live) = (cx.input.source, cx.input.live);
        let input = cx.input.clone();
        let node = plan_window(cx.name, self, &input, cx.err)?;
        // A window fires once the frontier passes its end: its rows are complete by their start
        // `size` behind the frontier, by their end at once; a session's start is unbounded.
        // A window over rows fires `delay` after its end (when the rows below its end are
        // complete): its own rows are complete that much later.
        let delay = node.rows.as_ref().and_then(|r| r.lag).unwrap_or(0);
        let at = |column, lag: i64, align| Complete {
            column,
            lag: lag + delay,
            align,
            inclusive: true,
        };
        let complete = match node.kind {
            // Market-time windows vary in length and start anywhere (a session's open).
            _ if node.align.is_some() => {
                let longest = node.align.as_ref().map_or(0, |a| a.longest_ms());
                vec![at(1, longest, 1), at(2, 0, 1)]
            }
            WindowKind::Tumbling { size } => vec![at(1, size, size), at(2, 0, size)],
            WindowKind::Hopping { size, slide } => vec![at(1, size, slide), at(2, 0, slide)],
            WindowKind::Session { .. } => vec![at(2, 0, 1)],
        };
        let output = StreamInfo {
            schema: node.schema.clone(),
            kind: StreamKind::Rows,
            key: Some(0),
            time: Some(1),
            source,
            live,
            complete,
            dates: node
                .align
                .clone()
                .map(|align| crate::steps::MarketDates { column: 1, align }),
            revised: (node.allowed_lateness_ms > 0 && !node.differential).then(|| {
                crate::steps::Revised {
                    column: node.schema.fields.len() - 1,
                    lateness: node.allowed_lateness_ms,
                }
            }),
            unwindowable: if node.allowed_lateness_ms > 0 {
                Some(format!(
                    "`{}` revises rows it has emitted (`allowed_lateness`): a window over them would count a window's first row and its revisions alike; window rows without revisions (`allowed_lateness: 0s` upstream)",
                    cx.name
                ))
            } else if node.differential {
                Some(format!(
                    "`{}` runs on the differential engine, whose rows are not stamped before their window's end; use `engine: timely` (or `auto`) there",
                    cx.name
                ))
            } else {
                None
            },
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
    fn graph_shape(&self) -> &'static str {
        "ellipse"
    }
    fn reads_by_key(&self, input: &StreamInfo) -> bool {
        input.kind == StreamKind::Trades
    }
    fn describe(&self) -> String {
        let d = |ms: i64| crate::base::units::Duration(ms).to_string();
        let shape = match self.kind {
            WindowKind::Tumbling { size } => format!("tumbling {}", d(size)),
            WindowKind::Hopping { size, slide } => {
                format!("hopping {} every {}", d(size), d(slide))
            }
            WindowKind::Session { gap } => format!("session gap {}", d(gap)),
        };
        let shape = match &self.align {
            Some(a) => format!("{shape} {}", a.describe()),
            None => shape,
        };
        let shape = match &self.fill {
            Some(f) => format!(
                "{shape}, gaps filled ({}) for {}",
                match f.mode {
                    FillMode::Previous => "previous",
                    FillMode::Null => "null",
                },
                d(f.for_ms)
            ),
            None => shape,
        };
        let aggs: Vec<&str> = self.aggregates.iter().map(|a| a.name.as_str()).collect();
        format!(
            "window {shape} by {}\\n{}",
            self.schema.fields[0].name,
            aggs.join(", ")
        )
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &BuildCx<'_>) -> AnyStream<'s> {
        let dead = std::rc::Rc::clone(cx.dead);
        if let Some(rows) = &self.rows {
            let records = super::operator::window_rows(input.rows(), rows);
            return AnyStream::Rows(super::operator::window_stream(
                records,
                cx.ctx,
                self,
                cx.index,
                cx.input_node,
                dead,
            ));
        }
        let trades = input.trades();
        AnyStream::Rows(if self.differential {
            super::differential::window_stream(trades, cx.ctx, self, cx.index, dead)
        } else {
            super::operator::window_stream(trades, cx.ctx, self, cx.index, cx.input_node, dead)
        })
    }
    fn time_step_ms(&self) -> Option<u64> {
        let own = match self.kind {
            // Opens and local midnights are whole minutes (IANA offsets since 1970 are).
            _ if self.align.is_some() => {
                gcd(self.align.as_ref().map_or(1, |a| a.size) as u64, 60_000)
            }
            WindowKind::Tumbling { size } => size as u64,
            WindowKind::Hopping { size, slide } => gcd(size as u64, slide as u64),
            WindowKind::Session { .. } => 1000,
        };
        // A window over a window's rows fires at `end + lag`.
        let lag = self.rows.as_ref().and_then(|r| r.lag).unwrap_or(0) as u64;
        Some(gcd(own, lag))
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

/// Window ends are multiples of this (ms): a tumbling window's size, a hopping window's
/// gcd(size, slide); session ends are anywhere.
fn grid(cfg: &WindowStepConfig) -> i64 {
    if cfg.align.is_some() {
        return 1;
    }
    match cfg.window {
        WindowSpec::Tumbling { size } => size.as_millis().max(1),
        WindowSpec::Hopping { size, slide } => gcd(
            size.as_millis().max(1) as u64,
            slide.as_millis().max(1) as u64,
        ) as i64,
        WindowSpec::Session { .. } => 1,
        WindowSpec::Count { .. } | WindowSpec::Volume { .. } | WindowSpec::Notional { .. } => 1,
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

pub(crate) fn plan_window(
    name: &str,
    cfg: &WindowStepConfig,
    stream: &StreamInfo,
    err: &mut dyn FnMut(String, String),
) -> Option<WindowNode> {
    let p = format!("steps.{name}");
    let (input, live) = (stream.source, stream.live);
    let on_rows = stream.kind == StreamKind::Rows;
    let schema = &stream.schema;
    let mut ok = true;
    let mut rows = None;
    if on_rows {
        let r = plan_row_input(&p, cfg, stream, err);
        ok &= r.is_some();
        rows = r;
    } else if let Some(t) = &cfg.time
        && t != "timestamp"
    {
        err(
            format!("{p}.time"),
            format!("trades are windowed by their `timestamp`, not `{t}` (remove `time:`)"),
        );
        ok = false;
    }
    match schema.field(&cfg.key) {
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
                    suggest(&cfg.key, schema.names())
                ),
            );
            ok = false;
        }
    }
    let positive =
        |d: crate::base::units::Duration, field: &str, err: &mut dyn FnMut(String, String)| {
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
            if cfg.align.is_none() && size.as_millis() > 0 && size.as_millis() % MONTH_MS == 0 {
                err(
                    format!("{p}.window.size"),
                    format!(
                        "`{size}` windows are calendar months, which start at a local midnight: add `align: {{ timezone: UTC }}` (or the time zone whose months you mean)"
                    ),
                );
                ok = false;
            }
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
        // Planned by `sampled.rs` (see `WindowStepConfig::plan`).
        WindowSpec::Count { .. } | WindowSpec::Volume { .. } | WindowSpec::Notional { .. } => {
            return None;
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
    let (mut fields, aggregates, aggs_ok) =
        plan_aggregates(&p, cfg, stream, rows.as_mut().map(|r| &mut r.slots), err);
    ok &= aggs_ok;
    let fill = plan_fill(&p, cfg, kind, &aggregates, err);
    ok &= fill.is_ok();
    let fill = fill.ok().flatten();
    if fill.is_some() {
        if cfg.aggregates.contains_key("filled") {
            err(
                format!("{p}.aggregates.filled"),
                "column `filled` clashes with the column gap filling adds".into(),
            );
            ok = false;
        }
        if fill.as_ref().is_some_and(|f| f.mode == FillMode::Null) {
            // A NULL-filled row has NULL in every aggregate but `count`.
            for (f, a) in fields[3..].iter_mut().zip(&aggregates) {
                f.nullable |= a.func != AggregateFn::Count;
            }
        }
        fields.push(Field::new("filled", FieldType::Boolean, false));
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
        WindowEngine::Differential if on_rows => {
            err(
                format!("{p}.engine"),
                "the differential engine reads trades; a window over rows uses `timely` or `auto`"
                    .into(),
            );
            ok = false;
            false
        }
        WindowEngine::Differential if fill.is_some() => {
            err(
                format!("{p}.engine"),
                "the differential engine does not fill gaps; use `timely` or `auto`".into(),
            );
            ok = false;
            false
        }
        WindowEngine::Differential => true,
    };
    let align = match &cfg.align {
        Some(a) => {
            let r = plan_align(&p, a, kind, differential, err);
            ok &= r.is_some();
            r.map(Arc::new)
        }
        None => None,
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
        rows,
        align,
        fill,
    })
}

/// The columns a window adds (key, `window_start`, `window_end`) and one per aggregate; over
/// rows, each aggregate's column becomes a value slot in `slots`. `None` if an aggregate is wrong
/// (each problem reported).
pub(crate) fn plan_aggregates(
    p: &str,
    cfg: &WindowStepConfig,
    stream: &StreamInfo,
    mut slots: Option<&mut Vec<usize>>,
    err: &mut dyn FnMut(String, String),
) -> (Vec<Field>, Vec<AggregatePlan>, bool) {
    let on_rows = stream.kind == StreamKind::Rows;
    let revisions = cfg.allowed_lateness.as_millis() > 0;
    let mut ok = true;
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
        let numbers = if on_rows {
            "a number column"
        } else {
            "one of `price`, `volume`"
        };
        let mut nullable_input = false;
        let mut field = match (&agg.field, agg.func.takes_field()) {
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
                    format!("`{}` needs a `field` ({numbers})", fn_name(agg.func)),
                );
                ok = false;
                TradeField::Price
            }
            (Some(f), true) => {
                let (field, nullable, good) = number_field(
                    &format!("{ap}.field"),
                    f,
                    agg.func,
                    stream,
                    slots.as_deref_mut(),
                    err,
                );
                nullable_input = nullable;
                ok &= good;
                field
            }
        };
        let mut weight = None;
        match (agg.func, on_rows, &agg.price, &agg.volume) {
            (AggregateFn::Vwap, true, Some(price), Some(volume)) => {
                let (field_p, _, g1) = number_field(
                    &format!("{ap}.price"),
                    price,
                    agg.func,
                    stream,
                    slots.as_deref_mut(),
                    err,
                );
                let (field_v, _, g2) = number_field(
                    &format!("{ap}.volume"),
                    volume,
                    agg.func,
                    stream,
                    slots.as_deref_mut(),
                    err,
                );
                ok &= g1 & g2;
                field = field_p;
                weight = Some(field_v);
            }
            (AggregateFn::Vwap, true, _, _) => {
                err(
                    format!("{ap}.fn"),
                    "`vwap` over rows weighs a price column by a volume column: name both (`{fn: vwap, price: vwap, volume: volume}` for bars)".to_string(),
                );
                ok = false;
            }
            (AggregateFn::Vwap, false, Some(_), _) | (AggregateFn::Vwap, false, _, Some(_)) => {
                err(
                    format!("{ap}.price"),
                    "`vwap` of trades weighs their price by their volume (remove `price:` and `volume:`)".to_string(),
                );
                ok = false;
            }
            (_, _, Some(_), _) | (_, _, _, Some(_)) => {
                err(
                    format!("{ap}.price"),
                    format!(
                        "`price` and `volume` are arguments of `vwap`, not of `{}` (remove them)",
                        fn_name(agg.func)
                    ),
                );
                ok = false;
            }
            _ => {}
        }
        let (ty, nullable) = match agg.func {
            AggregateFn::Count => (FieldType::Int64, false),
            AggregateFn::Stddev | AggregateFn::Vwap => (FieldType::Float64, true),
            _ => (FieldType::Float64, nullable_input),
        };
        fields.push(Field::new(col, ty, nullable));
        aggregates.push(AggregatePlan {
            name: col.clone(),
            func: agg.func,
            field,
            weight,
        });
    }
    (fields, aggregates, ok)
}

/// A number an aggregate reads: `price`/`volume` of trades, or a number column of rows (a value
/// slot in `slots`). (field, whether it can be NULL, whether it is right.)
fn number_field(
    at: &str,
    f: &str,
    func: AggregateFn,
    stream: &StreamInfo,
    slots: Option<&mut Vec<usize>>,
    err: &mut dyn FnMut(String, String),
) -> (TradeField, bool, bool) {
    let on_rows = stream.kind == StreamKind::Rows;
    let schema = &stream.schema;
    let numbers = if on_rows {
        "a number column"
    } else {
        "one of `price`, `volume`"
    };
    let mut ok = true;
    let mut nullable_input = false;
    let mut err = |a: &str, m: String| err(a.to_string(), m);
    let field = match schema.field(f) {
        Some(_) if !on_rows && f == "price" => TradeField::Price,
        Some(_) if !on_rows && f == "volume" => TradeField::Volume,
        Some(fd) if on_rows && fd.ty.is_numeric() => {
            nullable_input = fd.nullable;
            let column = schema.index_of(f).expect("a field of the schema");
            match slots {
                Some(slots) => {
                    slots.push(column);
                    TradeField::Column(slots.len() - 1)
                }
                None => TradeField::Price,
            }
        }
        Some(fd) => {
            err(
                at,
                format!(
                    "`{f}` is a {}; `{}` needs a numeric field ({numbers})",
                    fd.ty.name(),
                    fn_name(func)
                ),
            );
            ok = false;
            TradeField::Price
        }
        None => {
            let choices: Vec<&str> = if on_rows {
                schema
                    .fields
                    .iter()
                    .filter(|f| f.ty.is_numeric())
                    .map(|f| f.name.as_str())
                    .collect()
            } else {
                vec!["price", "volume"]
            };
            err(at, format!("unknown field `{f}`{}", suggest(f, choices)));
            ok = false;
            TradeField::Price
        }
    };
    (field, nullable_input, ok)
}

/// Gap filling: tumbling windows only; which values `previous` carries.
fn plan_fill(
    p: &str,
    cfg: &WindowStepConfig,
    kind: WindowKind,
    aggregates: &[AggregatePlan],
    err: &mut dyn FnMut(String, String),
) -> Result<Option<FillPlan>, ()> {
    let Some(mode) = cfg.fill else {
        if let Some(d) = cfg.fill_for {
            err(
                format!("{p}.fill_for"),
                format!("`fill_for: {d}` bounds gap filling: add `fill: previous` (or `null`)"),
            );
            return Err(());
        }
        return Ok(None);
    };
    if !matches!(kind, WindowKind::Tumbling { .. }) {
        err(
            format!("{p}.fill"),
            "gap filling gives a row per key for every window of a tumbling window's grid; hopping and session windows are not filled (remove `fill:`)".into(),
        );
        return Err(());
    }
    let for_ms = cfg.fill_for.map_or(DAY_MS, |d| d.as_millis());
    if for_ms <= 0 {
        err(
            format!("{p}.fill_for"),
            format!(
                "must be positive, got {}",
                crate::base::units::Duration(for_ms)
            ),
        );
        return Err(());
    }
    let mut carried: Vec<AggregatePlan> = Vec::new();
    let mut carry_of = Vec::with_capacity(aggregates.len());
    for a in aggregates {
        let level = matches!(
            a.func,
            AggregateFn::First
                | AggregateFn::Last
                | AggregateFn::Min
                | AggregateFn::Max
                | AggregateFn::Avg
                | AggregateFn::Vwap
        );
        if mode != FillMode::Previous || !level {
            carry_of.push(None);
            continue;
        }
        let at = carried
            .iter()
            .position(|c| c.field == a.field)
            .unwrap_or_else(|| {
                carried.push(AggregatePlan {
                    name: String::new(),
                    func: AggregateFn::Last,
                    field: a.field,
                    weight: None,
                });
                carried.len() - 1
            });
        carry_of.push(Some(at));
    }
    Ok(Some(FillPlan {
        mode,
        for_ms,
        carried,
        carry_of,
    }))
}

/// Market time: the time zone, the calendar, and what sizes they allow.
fn plan_align(
    p: &str,
    a: &AlignSpec,
    kind: WindowKind,
    differential: bool,
    err: &mut dyn FnMut(String, String),
) -> Option<Align> {
    let p = format!("{p}.align");
    let WindowKind::Tumbling { size } = kind else {
        err(
            format!("{p}"),
            "`align` places tumbling windows in market time; hopping and session windows are aligned to UTC (remove `align:`)".into(),
        );
        return None;
    };
    if differential {
        err(
            format!("{p}"),
            "the differential engine aligns windows to UTC; windows in market time use `engine: timely` (or `auto`)".into(),
        );
        return None;
    }
    let calendar = match &a.calendar {
        Some(name) => match Calendar::load(name) {
            Ok(c) => Some(c),
            Err(e) => {
                err(format!("{p}.calendar"), e);
                return None;
            }
        },
        None => None,
    };
    let (tz_name, tz) = match (&a.timezone, &calendar) {
        (Some(name), cal) => match time_zone(name) {
            Ok(tz) => {
                if let Some(c) = cal
                    && c.tz_name != *name
                {
                    err(
                        format!("{p}.timezone"),
                        format!(
                            "calendar `{}` keeps time in {}, not {name}: its sessions are {} local time (remove `timezone:`)",
                            c.name, c.tz_name, c.tz_name
                        ),
                    );
                    return None;
                }
                (name.clone(), tz)
            }
            Err(e) => {
                err(format!("{p}.timezone"), e);
                return None;
            }
        },
        (None, Some(c)) => (c.tz_name.clone(), c.tz.clone()),
        (None, None) => {
            err(
                format!("{p}"),
                "`align` needs a `timezone` (e.g. `America/New_York`) or a `calendar` (e.g. `XNYS`)".into(),
            );
            return None;
        }
    };
    if calendar.is_none() && a.session != SessionKind::Regular {
        err(
            format!("{p}.session"),
            format!(
                "`session: {}` picks part of a calendar's trading day: add a `calendar` (e.g. `XNYS`)",
                a.session.name()
            ),
        );
        return None;
    }
    let d = |ms: i64| crate::base::units::Duration(ms).to_string();
    let fits = size <= DAY_MS || (calendar.is_none() && (size == WEEK_MS || size == MONTH_MS));
    if !fits {
        err(
            format!("{p}"),
            if calendar.is_some() {
                format!(
                    "a window of {} in sessions: windows in sessions last at most a session (`size: 1d`)",
                    d(size)
                )
            } else {
                format!(
                    "a window of {} in local time: use a size up to `1d` (local days), `1w` (weeks from Monday) or `1mo` (calendar months)",
                    d(size)
                )
            },
        );
        return None;
    }
    if size < DAY_MS && DAY_MS % size != 0 {
        err(
            format!("{p}"),
            format!(
                "a window of {} does not divide a day: local and session windows restart every day (use e.g. 1m, 5m, 15m, 30m, 1h, 4h)",
                d(size)
            ),
        );
        return None;
    }
    Some(Align {
        tz_name,
        tz,
        calendar,
        session: a.session,
        size,
    })
}

/// A window over rows: its key and time columns, and how complete the time column is.
fn plan_row_input(
    p: &str,
    cfg: &WindowStepConfig,
    stream: &StreamInfo,
    err: &mut dyn FnMut(String, String),
) -> Option<RowInput> {
    let schema = &stream.schema;
    match (&stream.revised, &stream.unwindowable) {
        // A revised row replaces its earlier revision; the window keeps its windows as long as
        // revisions can come.
        (Some(r), _) if cfg.allowed_lateness.as_millis() < r.lateness => {
            let d = crate::base::units::Duration(r.lateness);
            err(
                format!("{p}.allowed_lateness"),
                format!(
                    "`{}` revises its rows up to {d} after they fire (`allowed_lateness: {d}`): a window over them needs `allowed_lateness` of at least {d} to take the revisions in",
                    cfg.input
                ),
            );
            return None;
        }
        (Some(_), _) => {}
        (None, Some(why)) => {
            err(format!("{p}.input"), why.clone());
            return None;
        }
        (None, None) => {}
    }
    let key = schema.index_of(&cfg.key)?;
    if stream.revised.is_some() && stream.key.is_some_and(|k| k != key) {
        // A revision replaces the row it revises in its window; grouped by another column, a
        // revised bar could land in another group than its first revision, which would stay.
        err(
            format!("{p}.key"),
            format!(
                "`{}` revises its rows (`allowed_lateness`) and is keyed by `{}`: a window over them groups by that key (a revision could move a row to another `{}`); group rows without revisions (`allowed_lateness: 0s` upstream)",
                cfg.input,
                stream.key_name().unwrap_or("?"),
                cfg.key
            ),
        );
        return None;
    }
    let (time, lag) = if stream.complete.is_empty() {
        // Rows made from trades: stamped like trades, by their time column.
        let Some(t) = stream.time else {
            err(
                format!("{p}.input"),
                format!("`{}` has no event-time column to window by", cfg.input),
            );
            return None;
        };
        if let Some(name) = &cfg.time
            && name != &schema.fields[t].name
        {
            err(
                format!("{p}.time"),
                format!(
                    "the rows of `{}` are in the order of `{}`, their event time; windows over them read it (remove `time:`, or use `time: {}`)",
                    cfg.input, schema.fields[t].name, schema.fields[t].name
                ),
            );
            return None;
        }
        (t, None)
    } else {
        let chosen = match &cfg.time {
            None => stream
                .time
                .filter(|t| stream.complete.iter().any(|c| c.column == *t))
                .unwrap_or(stream.complete[0].column),
            Some(name) => match schema.index_of(name) {
                Some(i) if stream.complete.iter().any(|c| c.column == i) => i,
                Some(_) | None => {
                    let usable: Vec<&str> = stream
                        .complete
                        .iter()
                        .map(|c| schema.fields[c.column].name.as_str())
                        .collect();
                    let message = if schema.index_of(name).is_some() {
                        format!(
                            "`{name}` is not a time the rows of `{}` arrive in order of: use {}",
                            cfg.input,
                            usable
                                .iter()
                                .map(|u| format!("`{u}`"))
                                .collect::<Vec<_>>()
                                .join(" or ")
                        )
                    } else {
                        format!(
                            "unknown column `{name}`{}",
                            suggest(name, usable.iter().copied())
                        )
                    };
                    err(format!("{p}.time"), message);
                    return None;
                }
            },
        };
        let c = stream
            .complete
            .iter()
            .find(|c| c.column == chosen)
            .expect("chosen among them");
        // Rows below a window end `E` are complete at `E - g + lag` (their values are multiples
        // of `align`, the ends multiples of the window's grid): fire as early as that.
        let g = gcd(c.align.max(1) as u64, grid(cfg) as u64) as i64;
        (chosen, Some((c.lag - g).max(0)))
    };
    if schema.fields[time].ty != FieldType::Timestamp {
        err(
            format!("{p}.time"),
            format!(
                "`{}` is a {}; windows need a timestamp",
                schema.fields[time].name,
                schema.fields[time].ty.name()
            ),
        );
        return None;
    }
    Some(RowInput {
        key,
        time,
        slots: Vec::new(),
        lag,
        revision: stream.revised.map(|r| r.column),
    })
}

fn fn_name(f: AggregateFn) -> &'static str {
    AggregateFn::NAMES[f as usize]
}
