//! The window state machine on hand-made inputs.

use super::config::AggregateFn;
use super::state::WindowState;
use crate::base::record::{Row, Schema, Trade, Value};
use crate::plan::{AggregatePlan, TradeField, WindowKind, WindowNode};

fn node(kind: WindowKind, allowed: i64, aggs: &[(AggregateFn, TradeField)]) -> WindowNode {
    WindowNode {
        name: "w".into(),
        input: 0,
        kind,
        allowed_lateness_ms: allowed,
        aggregates: aggs
            .iter()
            .enumerate()
            .map(|(i, (f, fld))| AggregatePlan {
                name: format!("a{i}"),
                func: *f,
                field: *fld,
            })
            .collect(),
        schema: Schema::default(),
        differential: false,
        skip_partial: false,
        rows: None,
        align: None,
    }
}

fn trade(sym: &str, price: f64, volume: f64, ts: i64, seq: u64, wm: i64) -> Trade {
    Trade {
        symbol: sym.into(),
        price,
        volume,
        ts,
        seq,
        wm,
        conditions: Default::default(),
    }
}

fn fire(state: &mut WindowState, upto: i64) -> Vec<Row> {
    let mut rows = Vec::new();
    state.fire_until(upto, &mut rows);
    rows
}

#[test]
fn first_and_last_are_by_event_time_then_arrival() {
    use AggregateFn::*;
    let mut s = WindowState::new(&node(
        WindowKind::Tumbling { size: 60_000 },
        0,
        &[(First, TradeField::Price), (Last, TradeField::Price)],
    ));
    // Arrival order: ts 30s (p=3), ts 10s (p=1), ts 10s (p=2), ts 30s (p=4).
    s.add(&trade("A", 3.0, 1.0, 30_000, 1, 0));
    s.add(&trade("A", 1.0, 1.0, 10_000, 2, 0));
    s.add(&trade("A", 2.0, 1.0, 10_000, 3, 0));
    s.add(&trade("A", 4.0, 1.0, 30_000, 4, 0));
    let rows = fire(&mut s, 60_000);
    assert_eq!(
        rows,
        vec![vec![
            Value::Str("A".into()),
            Value::Ts(0),
            Value::Ts(60_000),
            Value::F64(1.0),
            Value::F64(4.0)
        ]]
    );
}

#[test]
fn windows_fire_only_when_the_watermark_passes_their_end() {
    let mut s = WindowState::new(&node(
        WindowKind::Tumbling { size: 60_000 },
        0,
        &[(AggregateFn::Count, TradeField::Price)],
    ));
    s.add(&trade("A", 1.0, 1.0, 59_999, 1, 0));
    s.add(&trade("A", 1.0, 1.0, 60_000, 2, 0));
    assert!(fire(&mut s, 59_999).is_empty());
    let rows = fire(&mut s, 60_000);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][3], Value::I64(1));
    assert!(!s.is_empty(), "the second window is still open");
}

#[test]
fn late_trades_are_dropped_or_revise_within_allowed_lateness() {
    let size = 60_000;
    let mut strict = WindowState::new(&node(
        WindowKind::Tumbling { size },
        0,
        &[(AggregateFn::Sum, TradeField::Volume)],
    ));
    assert_eq!(
        strict.add(&trade("A", 1.0, 5.0, 1_000, 1, 60_000)),
        Some(60_000),
        "end 60s ≤ watermark 60s: late"
    );
    assert_eq!(
        strict.add(&trade("A", 1.0, 5.0, 1_000, 2, 59_999)),
        None,
        "end 60s > watermark: on time"
    );

    let mut lenient = WindowState::new(&node(
        WindowKind::Tumbling { size },
        10_000,
        &[(AggregateFn::Sum, TradeField::Volume)],
    ));
    lenient.add(&trade("A", 1.0, 5.0, 1_000, 1, 0));
    let first = fire(&mut lenient, 60_000);
    assert_eq!(first[0][3..], [Value::F64(5.0), Value::I64(0)]);
    assert_eq!(lenient.add(&trade("A", 1.0, 2.0, 2_000, 2, 65_000)), None);
    let mut rev = Vec::new();
    lenient.take_revisions(&mut rev);
    assert_eq!(rev[0][3..], [Value::F64(7.0), Value::I64(1)]);
    assert_eq!(
        lenient.add(&trade("A", 1.0, 2.0, 2_000, 3, 70_000)),
        Some(60_000),
        "past allowed lateness"
    );
    assert!(fire(&mut lenient, 70_000).is_empty());
    assert!(
        lenient.is_empty(),
        "state is dropped once allowed lateness has passed"
    );
}

#[test]
fn hopping_windows_cover_every_window_containing_the_trade() {
    let mut s = WindowState::new(&node(
        WindowKind::Hopping {
            size: 30_000,
            slide: 10_000,
        },
        0,
        &[(AggregateFn::Count, TradeField::Price)],
    ));
    s.add(&trade("A", 1.0, 1.0, 25_000, 1, 0));
    let rows = fire(&mut s, i64::MAX);
    let starts: Vec<&Value> = rows.iter().map(|r| &r[1]).collect();
    assert_eq!(
        starts,
        [&Value::Ts(0), &Value::Ts(10_000), &Value::Ts(20_000)]
    );
}

#[test]
fn sessions_merge_when_a_trade_bridges_them() {
    let mut s = WindowState::new(&node(
        WindowKind::Session { gap: 10_000 },
        0,
        &[
            (AggregateFn::Count, TradeField::Price),
            (AggregateFn::Stddev, TradeField::Price),
        ],
    ));
    s.add(&trade("A", 1.0, 1.0, 0, 1, 0));
    s.add(&trade("A", 3.0, 1.0, 15_000, 2, 0));
    s.add(&trade("A", 2.0, 1.0, 9_000, 3, 0)); // [9s,19s] touches [0,10s] and [15s,25s]
    s.add(&trade("A", 9.0, 1.0, 40_000, 4, 0)); // a separate session
    let rows = fire(&mut s, i64::MAX);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0][1..4],
        [Value::Ts(0), Value::Ts(25_000), Value::I64(3)]
    );
    assert_eq!(
        rows[1][1..4],
        [Value::Ts(40_000), Value::Ts(50_000), Value::I64(1)]
    );
    assert_eq!(rows[0][4], Value::F64(1.0), "sample stddev of 1, 2, 3");
}

#[test]
fn vwap_is_null_without_volume_and_stddev_needs_two_values() {
    let mut s = WindowState::new(&node(
        WindowKind::Tumbling { size: 1_000 },
        0,
        &[
            (AggregateFn::Vwap, TradeField::Price),
            (AggregateFn::Stddev, TradeField::Price),
        ],
    ));
    s.add(&trade("EUR", 1.1, 0.0, 10, 1, 0));
    let rows = fire(&mut s, i64::MAX);
    assert_eq!(rows[0][3..], [Value::Null, Value::Null]);
}

#[test]
fn windows_that_started_before_a_live_source_are_skipped_not_late() {
    let mut s = WindowState::new(&node(
        WindowKind::Hopping {
            size: 20,
            slide: 10,
        },
        0,
        &[(AggregateFn::Count, TradeField::Price)],
    ));
    s.skip_windows_before(25);
    // ts 27 belongs to [10,30) and [20,30)... both start before 25: dropped, not late.
    assert_eq!(s.add(&trade("A", 1.0, 1.0, 27, 1, 0)), None);
    // ts 35 belongs to [20,40) (skipped) and [30,50) (kept).
    assert_eq!(s.add(&trade("A", 1.0, 1.0, 35, 2, 0)), None);
    let rows = fire(&mut s, 100);
    assert_eq!(
        rows,
        vec![vec![
            Value::Str("A".into()),
            Value::Ts(30),
            Value::Ts(50),
            Value::I64(1)
        ]]
    );
}

/// Many small windows at once (1 ms windows, a watermark far behind): every window fires once,
/// in (start, key) order, with the count an independent tally gives.
#[test]
fn many_small_windows_fire_once_each_in_order() {
    let mut s = WindowState::new(&node(
        WindowKind::Tumbling { size: 1 },
        0,
        &[(AggregateFn::Count, TradeField::Price)],
    ));
    let mut expected: std::collections::BTreeMap<(i64, String), i64> = Default::default();
    let mut rng = 7u64;
    for seq in 0..20_000u64 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let ts = ((rng >> 33) % 5_000) as i64;
        let sym = ["A", "B", "C"][((rng >> 20) % 3) as usize];
        s.add(&trade(sym, 1.0, 1.0, ts, seq, i64::MIN));
        *expected.entry((ts, sym.to_string())).or_default() += 1;
    }
    let mut rows = fire(&mut s, 2_500);
    rows.extend(fire(&mut s, 2_500)); // nothing twice
    rows.extend(fire(&mut s, i64::MAX));
    let got: Vec<((i64, String), i64)> = rows
        .iter()
        .map(|r| match (&r[0], &r[1], &r[3]) {
            (Value::Str(k), Value::Ts(t), Value::I64(n)) => ((*t, k.to_string()), *n),
            other => panic!("unexpected row {other:?}"),
        })
        .collect();
    let want: Vec<((i64, String), i64)> = expected.into_iter().collect();
    assert_eq!(got, want);
    assert!(s.is_empty());
}
