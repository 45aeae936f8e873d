//! Bars that close on what they hold instead of on time: tick bars (`count`), volume bars and
//! dollar bars (`notional`). Each key's records are read in event-time order (trades: ties by
//! arrival; rows: by a hash of their content) by [`crate::steps::ordered`]; a bar takes
//! records until its measure reaches `size`, and the record that reaches it closes the bar — a
//! record is never split between two bars (so a volume bar holds at least `size`, as in López
//! de Prado's "information-driven bars"). A bar's row is `key, window_start` (its first record's
//! time), `window_end` (its last record's time), the aggregates and `partial`: the open bar of
//! each key at the end of a bounded input is emitted with `partial: true`.

use std::sync::Arc;

use super::aggregate::Acc;
use super::config::{WindowEngine, WindowSpec, WindowStepConfig};
use super::input::WindowRow;
use super::step::plan_aggregates;
use crate::base::diagnostic::suggest;
use crate::base::record::{Field, FieldType, Row, Schema, Value, trade_row};
use crate::steps::ordered::{InOrder, Ordering, in_event_time_order, plan_order};
use crate::steps::window::node::{AggregatePlan, TradeField};
use crate::steps::{AnyStream, BuildCx, Complete, PlanCx, Planned, StepOp, StreamInfo, StreamKind};

/// What fills a bar.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Measure {
    /// One per record.
    Count,
    /// The value of a slot.
    Slot(usize),
    /// A trade's price × volume.
    Notional,
}

/// A planned count, volume or notional bar step.
#[derive(Debug, Clone)]
pub(crate) struct SampledBars {
    name: String,
    /// `count 100`, `volume 10000 of volume`, ...
    shape: String,
    how: Ordering,
    aggregates: Arc<Vec<AggregatePlan>>,
    /// The input column of each value slot.
    slots: Arc<Vec<usize>>,
    measure: Measure,
    size: f64,
    /// Trades, read as rows with their arrival sequence appended.
    trades: bool,
}

/// The open bar of a key.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct OpenBar(Option<Bar>);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Bar {
    start: i64,
    end: i64,
    acc: Acc,
    /// The measure so far.
    held: f64,
}

/// The trade row's columns (`Schema::trades`), then the arrival sequence.
const PRICE: usize = 1;
const VOLUME: usize = 2;
const SEQ: usize = 5;

fn bar_row(key: &str, b: &Bar, partial: bool) -> Row {
    let mut row = vec![Value::Str(key.into()), Value::Ts(b.start), Value::Ts(b.end)];
    b.acc.emit(&mut row);
    row.push(Value::Bool(partial));
    row
}

impl InOrder for SampledBars {
    type State = OpenBar;
    const FLUSHES: bool = true;

    fn apply(&self, key: &str, st: &mut OpenBar, ts: i64, row: Row, out: &mut Vec<Row>) {
        let mut rec = WindowRow::from_row(&row, self.how.key, self.how.time, &self.slots);
        let number = |i: usize| match row[i] {
            Value::F64(x) => x,
            _ => 0.0,
        };
        if self.trades {
            rec.notional = Some((number(PRICE) * number(VOLUME), number(VOLUME)));
            if let Value::I64(seq) = row[SEQ] {
                rec.seq = seq as u64;
            }
        }
        let amount = match self.measure {
            Measure::Count => 1.0,
            Measure::Slot(i) => rec.values[i].unwrap_or(0.0),
            Measure::Notional => number(PRICE) * number(VOLUME),
        };
        let bar = match &mut st.0 {
            Some(b) => {
                b.acc.add(&self.aggregates, &rec);
                b.end = ts;
                b.held += amount;
                b
            }
            None => st.0.insert(Bar {
                start: ts,
                end: ts,
                acc: Acc::new(&self.aggregates, &rec),
                held: amount,
            }),
        };
        if bar.held >= self.size {
            out.push(bar_row(key, bar, false));
            st.0 = None;
        }
    }
    fn open(&self, st: &OpenBar) -> bool {
        st.0.is_some()
    }
    fn flush(&self, key: &str, st: &mut OpenBar, out: &mut Vec<Row>) {
        if let Some(b) = st.0.take() {
            out.push(bar_row(key, &b, true));
        }
    }
}

impl StepOp for SampledBars {
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
        let aggs: Vec<&str> = self.aggregates.iter().map(|a| a.name.as_str()).collect();
        format!(
            "window {} by {}\\n{}",
            self.shape,
            self.how.input_schema.fields[self.how.key].name,
            aggs.join(", ")
        )
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &BuildCx<'_>) -> AnyStream<'s> {
        use timely::dataflow::operators::vec::Map;
        let rows = if self.trades {
            input.trades().map(|t| {
                let mut row = trade_row(&t);
                row.push(Value::I64(t.seq as i64));
                row
            })
        } else {
            input.rows()
        };
        AnyStream::Rows(in_event_time_order(rows, cx, &self.how, self.clone()))
    }
    fn paces_source(&self) -> bool {
        true
    }
    fn dead_letter_label(&self) -> Option<&'static str> {
        Some("late")
    }
}

/// Plans a `count`, `volume` or `notional` window.
pub(super) fn plan(cfg: &WindowStepConfig, cx: &mut PlanCx<'_>) -> Option<Planned> {
    let mut ok = true;
    let what = match &cfg.window {
        WindowSpec::Count { .. } => "count",
        WindowSpec::Volume { .. } => "volume",
        _ => "notional",
    };
    let refuse = |cx: &mut PlanCx<'_>, field: &str, why: &str| {
        cx.error(
            field,
            format!("`{what}` bars close on what they hold, not on time: {why}"),
        );
    };
    if cfg.align.is_some() {
        refuse(
            cx,
            "align",
            "they have no place in market time (remove `align:`)",
        );
        ok = false;
    }
    if cfg.fill.is_some() || cfg.fill_for.is_some() {
        refuse(cx, "fill", "there is no empty bar to fill (remove `fill:`)");
        ok = false;
    }
    if cfg.allowed_lateness.as_millis() > 0 {
        refuse(
            cx,
            "allowed_lateness",
            "a late record would move every later bar's boundary; late records are dead-lettered (use 0s)",
        );
        ok = false;
    }
    if cfg.engine == WindowEngine::Differential {
        refuse(
            cx,
            "engine",
            "the differential engine keeps time windows only (use `timely` or `auto`)",
        );
        ok = false;
    }
    let (size, field) = match &cfg.window {
        WindowSpec::Count { size } => (*size as f64, None),
        WindowSpec::Volume { size, field } => (*size, Some(field.as_deref().unwrap_or("volume"))),
        WindowSpec::Notional { size, field } => (*size, field.as_deref()),
        _ => unreachable!("planned by step.rs"),
    };
    if !(size.is_finite() && size > 0.0) {
        cx.error(
            "window.size",
            format!("must be a positive number, got {size}"),
        );
        ok = false;
    }
    if !cx.input_known {
        return None;
    }
    let input = cx.input.clone();
    if let Some(why) = &input.unwindowable {
        cx.error("input", why.clone());
        return None;
    }
    let trades = input.kind == StreamKind::Trades;
    let (key, time, lag, stamped) =
        plan_order(cx, &input, &cfg.input, Some(&cfg.key), cfg.time.as_deref());
    let path = cx.path.clone();
    let mut slots = Vec::new();
    let (mut fields, mut aggregates, aggs_ok) =
        plan_aggregates(&path, cfg, &input, (!trades).then_some(&mut slots), cx.err);
    ok &= aggs_ok;
    if trades {
        // Trades come as rows: price and volume are the first two slots.
        slots = vec![PRICE, VOLUME];
        for a in &mut aggregates {
            a.field = TradeField::Column(match a.field {
                TradeField::Volume => 1,
                _ => 0,
            });
        }
    }
    let measure = match (field, trades) {
        (None, _) if what == "count" => Measure::Count,
        (None, true) => Measure::Notional,
        (None, false) => {
            cx.error(
                "window.field",
                format!("notional bars over rows sum a column: name it (`field: notional`, e.g. a derived `price * volume`)"),
            );
            return None;
        }
        (Some(f), true) if what == "notional" => {
            cx.error(
                "window.field",
                format!("notional bars over trades sum price × volume (remove `field: {f}`)"),
            );
            return None;
        }
        (Some("volume"), true) => Measure::Slot(1),
        (Some("price"), true) => Measure::Slot(0),
        (Some(f), true) => {
            cx.error(
                "window.field",
                format!("unknown field `{f}`{}", suggest(f, ["price", "volume"])),
            );
            return None;
        }
        (Some(f), false) => match input.schema.field(f) {
            Some(fd) if fd.ty.is_numeric() => {
                slots.push(input.schema.index_of(f).expect("a field of the schema"));
                Measure::Slot(slots.len() - 1)
            }
            Some(fd) => {
                cx.error(
                    "window.field",
                    format!(
                        "`{f}` is a {}; {what} bars sum a number column",
                        fd.ty.name()
                    ),
                );
                return None;
            }
            None => {
                let numbers: Vec<&str> = input
                    .schema
                    .fields
                    .iter()
                    .filter(|x| x.ty.is_numeric())
                    .map(|x| x.name.as_str())
                    .collect();
                cx.error(
                    "window.field",
                    format!("unknown column `{f}`{}", suggest(f, numbers)),
                );
                return None;
            }
        },
    };
    if cfg.aggregates.contains_key("partial") {
        cx.error(
            "aggregates.partial",
            "column `partial` clashes with the column count, volume and notional bars add",
        );
        ok = false;
    }
    fields.push(Field::new("partial", FieldType::Boolean, false));
    let (Some(key), Some(time)) = (key, time) else {
        return None;
    };
    if !ok {
        return None;
    }
    let mut input_schema = input.schema.clone();
    if trades {
        input_schema
            .fields
            .push(Field::new("seq", FieldType::Int64, false));
    }
    let shape = match (&cfg.window, measure) {
        (WindowSpec::Count { size }, _) => format!("count {size}"),
        (_, Measure::Notional) => format!("notional {size} of price × volume"),
        (_, _) => format!("{what} {size} of {}", field.unwrap_or("volume")),
    };
    let output = StreamInfo {
        schema: Schema { fields },
        kind: StreamKind::Rows,
        key: Some(0),
        time: Some(2),
        // A bar's row is emitted when its last record is applied, at the time that record came
        // with: its `window_end` is complete as that record's time was.
        complete: vec![Complete {
            column: 2,
            lag,
            align: 1,
            inclusive: false,
        }],
        unwindowable: None,
        dates: None,
        ..input.clone()
    };
    Some(Planned {
        output,
        op: Arc::new(SampledBars {
            name: cx.name.to_string(),
            shape,
            how: Ordering {
                name: cx.name.to_string(),
                kind: "window",
                key,
                time,
                lag,
                stamped,
                input_schema,
                tie: trades.then_some(SEQ),
            },
            aggregates: Arc::new(aggregates),
            slots: Arc::new(slots),
            measure,
            size,
            trades,
        }),
    })
}
