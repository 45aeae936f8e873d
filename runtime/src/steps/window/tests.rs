//! The window state machine on hand-made inputs.

use super::config::AggregateFn;
use super::state::WindowState;
use crate::base::record::{Row, Schema, Trade, Value};
use crate::steps::window::node::{AggregatePlan, TradeField, WindowKind, WindowNode};

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
                weight: None,
            })
            .collect(),
        schema: Schema::default(),
        differential: false,
        skip_partial: false,
        rows: None,
        align: None,
        fill: None,
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

/// Open (first price), high (max price), volume (sum), trades (count), filled with `previous`.
fn filling(kind: WindowKind, allowed: i64, for_ms: i64) -> WindowNode {
    use AggregateFn::*;
    let mut n = node(
        kind,
        allowed,
        &[
            (First, TradeField::Price),
            (Max, TradeField::Price),
            (Sum, TradeField::Volume),
            (Count, TradeField::Price),
        ],
    );
    n.fill = Some(crate::steps::window::node::FillPlan {
        mode: super::config::FillMode::Previous,
        for_ms,
        carried: vec![AggregatePlan {
            name: String::new(),
            func: Last,
            field: TradeField::Price,
            weight: None,
        }],
        carry_of: vec![Some(0), Some(0), None, None],
    });
    n
}

/// (key, start, open, high, volume, count, filled) of each row.
fn bars(rows: &[Row]) -> Vec<(String, i64, Option<f64>, Option<f64>, f64, i64, bool)> {
    let f = |v: &Value| match v {
        Value::F64(x) => Some(*x),
        _ => None,
    };
    rows.iter()
        .map(|r| match (&r[0], &r[1], &r[5], &r[6], &r[7]) {
            (Value::Str(k), Value::Ts(s), Value::F64(v), Value::I64(n), Value::Bool(filled)) => {
                (k.to_string(), *s, f(&r[3]), f(&r[4]), *v, *n, *filled)
            }
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

#[test]
fn gaps_are_filled_with_the_last_close_until_fill_for_has_passed() {
    let m = 60_000;
    let mut s = WindowState::new(&filling(WindowKind::Tumbling { size: m }, 0, 3 * m));
    // A: minutes 0 (closing at 11 after 10) and 2; B: minute 0 only.
    s.add(&trade("A", 10.0, 1.0, 1_000, 1, 0));
    s.add(&trade("A", 11.0, 2.0, 2_000, 2, 0));
    s.add(&trade("B", 50.0, 5.0, 3_000, 3, 0));
    s.add(&trade("A", 12.0, 1.0, 2 * m + 5, 4, 0));
    let rows = fire(&mut s, 10 * m);
    let a = |st, o, h, v, n, filled| ("A".to_string(), st, Some(o), Some(h), v, n, filled);
    let b = |st, o, h, v, n, filled| ("B".to_string(), st, Some(o), Some(h), v, n, filled);
    assert_eq!(
        bars(&rows),
        vec![
            a(0, 10.0, 11.0, 3.0, 2, false),
            b(0, 50.0, 50.0, 5.0, 1, false),
            a(m, 11.0, 11.0, 0.0, 0, true), // the last close, not the high
            b(m, 50.0, 50.0, 0.0, 0, true),
            a(2 * m, 12.0, 12.0, 1.0, 1, false),
            b(2 * m, 50.0, 50.0, 0.0, 0, true),
            a(3 * m, 12.0, 12.0, 0.0, 0, true),
            b(3 * m, 50.0, 50.0, 0.0, 0, true), // B's last: it starts 3 minutes after B's last end
            a(4 * m, 12.0, 12.0, 0.0, 0, true),
            a(5 * m, 12.0, 12.0, 0.0, 0, true),
        ]
    );
    assert!(
        s.is_empty(),
        "every key is forgotten once fill_for has passed"
    );
}

#[test]
fn a_late_trade_in_a_filled_window_revises_it() {
    let m = 60_000;
    let mut s = WindowState::new(&filling(WindowKind::Tumbling { size: m }, 10 * m, 60 * m));
    s.add(&trade("A", 10.0, 1.0, 1_000, 1, 0));
    let rows = fire(&mut s, 3 * m);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][7], Value::Bool(true));
    assert_eq!(
        rows[1][8],
        Value::I64(0),
        "a filled row is the window's first emission"
    );
    // A trade for minute 1, read at watermark 3m (within the allowed lateness).
    assert_eq!(s.add(&trade("A", 9.0, 4.0, m + 10, 2, 3 * m)), None);
    let rows = fire(&mut s, 3 * m + 1);
    let r = &rows[0];
    assert_eq!(
        (&r[1], &r[3], &r[5], &r[6], &r[7], &r[8]),
        (
            &Value::Ts(m),
            &Value::F64(9.0),
            &Value::F64(4.0),
            &Value::I64(1),
            &Value::Bool(false),
            &Value::I64(1)
        )
    );
}

#[test]
fn market_time_gaps_are_filled_within_sessions_only() {
    use crate::base::calendar::{Align, Calendar, SessionKind};
    let ms = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    let h = 3_600_000;
    let cal = Calendar::load("XNYS").unwrap();
    let mut n = filling(WindowKind::Tumbling { size: h }, 0, 4 * 24 * h);
    n.align = Some(std::sync::Arc::new(Align {
        tz_name: cal.tz_name.clone(),
        tz: cal.tz.clone(),
        calendar: Some(cal),
        session: SessionKind::Regular,
        size: h,
    }));
    let mut s = WindowState::new(&n);
    // Friday 2026-03-06 14:45 New York (EST), then nothing until Monday (EDT from Sunday).
    s.add(&trade("A", 10.0, 1.0, ms("2026-03-06T19:45:00Z"), 1, 0));
    let rows = fire(&mut s, ms("2026-03-09T15:30:00Z"));
    let starts: Vec<(i64, i64, bool)> = rows
        .iter()
        .map(|r| match (&r[1], &r[2], &r[7]) {
            (Value::Ts(a), Value::Ts(b), Value::Bool(f)) => (*a, *b, *f),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        starts,
        vec![
            (
                ms("2026-03-06T19:30:00Z"),
                ms("2026-03-06T20:30:00Z"),
                false
            ),
            (ms("2026-03-06T20:30:00Z"), ms("2026-03-06T21:00:00Z"), true), // to the close
            (ms("2026-03-09T13:30:00Z"), ms("2026-03-09T14:30:00Z"), true), // Monday's open
            (ms("2026-03-09T14:30:00Z"), ms("2026-03-09T15:30:00Z"), true),
        ]
    );
}

#[test]
fn keys_that_go_quiet_and_trade_again_start_every_window_afresh() {
    use AggregateFn::*;
    // Keys trade in some minutes and not in others, so their entries go idle, are kept for a
    // round or forgotten, and their accumulator vectors are reused by other windows.
    let mut s = WindowState::new(&node(
        WindowKind::Tumbling { size: 60_000 },
        0,
        &[
            (Count, TradeField::Price),
            (Sum, TradeField::Volume),
            (First, TradeField::Price),
        ],
    ));
    // The oracle: (window start, key) → (count, volume, first price), summed by hand.
    let mut expected: std::collections::BTreeMap<(i64, String), (i64, f64, f64)> =
        Default::default();
    let (mut rows, mut seq) = (Vec::new(), 0u64);
    for m in 0..30i64 {
        let start = m * 60_000;
        rows.extend(fire(&mut s, start));
        if m % 10 == 9 {
            assert!(s.is_empty(), "minute {m}: nothing open after a quiet minute");
            continue; // every key quiet
        }
        for k in 0..8i64 {
            if (k * 7 + m * 3) % 5 < 2 {
                continue;
            }
            for j in 0..=((k + m) % 3) {
                seq += 1;
                let (price, volume) = ((k * 100 + m) as f64 + j as f64 / 4.0, (j + 1) as f64);
                let key = format!("K{k}");
                s.add(&trade(&key, price, volume, start + j * 1_000 + k, seq, start));
                let e = expected.entry((start, key)).or_insert((0, 0.0, price));
                e.0 += 1;
                e.1 += volume;
            }
        }
    }
    rows.extend(fire(&mut s, i64::MAX));
    assert!(s.is_empty());
    assert!(s.snapshot(|_| 0).is_empty(), "idle keys are not checkpointed");
    let got: Vec<(i64, String, i64, f64, f64)> = rows
        .iter()
        .map(|r| match &r[..] {
            [
                Value::Str(k),
                Value::Ts(start),
                Value::Ts(_),
                Value::I64(n),
                Value::F64(v),
                Value::F64(p),
            ] => (*start, k.to_string(), *n, *v, *p),
            other => panic!("unexpected row {other:?}"),
        })
        .collect();
    let want: Vec<(i64, String, i64, f64, f64)> = expected
        .into_iter()
        .map(|((start, k), (n, v, p))| (start, k, n, v, p))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn fired_rows_come_in_start_then_key_order_for_any_keys() {
    use AggregateFn::*;
    let mut s = WindowState::new(&node(
        WindowKind::Tumbling { size: 60_000 },
        0,
        &[(Count, TradeField::Price)],
    ));
    // Keys that tie on their first 16 bytes, keys that are prefixes of others, multi-byte UTF-8.
    let keys = [
        "BINANCE:BTCUSDT_PERP",
        "BINANCE:BTCUSDT_",
        "BINANCE:BTCUSDT",
        "BINANCE:BTCUSDT_A",
        "BINANCE:BTCUSDT_PERPETUAL",
        "AAPL",
        "A",
        "Ä",
        "Z",
        "OANDA:EUR_USD",
    ];
    let mut seq = 0;
    for m in [2i64, 0, 1] {
        for (i, k) in keys.iter().enumerate() {
            seq += 1;
            s.add(&trade(k, 1.0, 1.0, m * 60_000 + i as i64, seq, 0));
        }
    }
    let got: Vec<(i64, String)> = fire(&mut s, i64::MAX)
        .iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::Str(k), Value::Ts(start)) => (*start, k.to_string()),
            other => panic!("unexpected row {other:?}"),
        })
        .collect();
    let mut want: Vec<(i64, String)> = [0i64, 1, 2]
        .iter()
        .flat_map(|m| keys.iter().map(move |k| (m * 60_000, k.to_string())))
        .collect();
    want.sort();
    assert_eq!(got, want);
}
