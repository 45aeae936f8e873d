//! The pipelines of `specs/examples/` (and a few more spec shapes), each run by the real binary
//! with 1 and 2 workers on generated input (disorder, late and invalid trades, equities, crypto
//! and forex), and compared with an independent DuckDB computation (tests/sql/examples.py).

use std::path::Path;
use std::process::Command;

use crate::support::{Frames, bin, repo, write_frames};

const MIXED: &[&str] = &[
    "AAPL",
    "MSFT",
    "BINANCE:BTCUSDT",
    "BINANCE:ETHUSDT",
    "OANDA:EUR_USD",
];

/// Runs `spec` with `workers` on `trades` into `out`, then the DuckDB check `name`.
fn run_and_check(python: &str, name: &str, spec: &Path, trades: &Path, out: &Path, workers: &str) {
    let run = Command::new(bin())
        .args(["run"])
        .arg(spec)
        .args(["--workers", workers])
        .current_dir(repo())
        .env("TRADES_FILE", trades)
        .env("OUT_URL", out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{name} with {workers} worker(s): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let check = Command::new(python)
        .arg(repo().join("tests/sql/examples.py"))
        .args([name])
        .arg(trades)
        .arg(out)
        .current_dir(repo().join("tests/sql"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{name} with {workers} worker(s): {report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(report.contains(" match"), "{report}");
}

/// Runs `specs/examples/NAME.yaml` on `trades` with 1 and 2 workers (into `dir/out1`, `dir/out2`)
/// and checks each output with its independent computation.
fn check_example(python: &str, name: &str, trades: &Path, dir: &Path) {
    let spec = repo().join(format!("specs/examples/{name}.yaml"));
    for workers in ["1", "2"] {
        run_and_check(
            python,
            name,
            &spec,
            trades,
            &dir.join(format!("out{workers}")),
            workers,
        );
    }
}

/// Every row each of `sinks` wrote (revisions included) is the same for 1 and 2 workers
/// (`dir/out1`, `dir/out2` of [`check_example`]).
fn same_for_1_and_2_workers(dir: &Path, sinks: &[&str]) {
    for sink in sinks {
        let rows = |w: &str| {
            let (_, rows) =
                crate::support::read_parquet_dir(&dir.join(format!("out{w}")).join(sink));
            let mut rows: Vec<String> = rows.iter().map(|r| format!("{r:?}")).collect();
            rows.sort();
            rows
        };
        assert_eq!(
            rows("1"),
            rows("2"),
            "{sink}: the emissions differ between 1 and 2 workers"
        );
    }
}

fn mixed_trades(dir: &Path, seed: u64) -> std::path::PathBuf {
    let trades = dir.join("trades.jsonl");
    write_frames(
        &Frames {
            seed,
            trades: 8000,
            names: MIXED,
            ..Frames::default()
        },
        &trades,
    );
    trades
}

#[test]
fn crypto_filter_bars_derive_and_select_equal_duckdb() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trades = mixed_trades(dir.path(), 31);
    check_example(&python, "crypto-returns", &trades, dir.path());
}

/// Mixed trades, then three hours without any, then more: the watermark jumps, and windows
/// close in the middle of a batch of records.
fn gapped_trades(dir: &Path, seed: u64) -> std::path::PathBuf {
    let first = std::fs::read_to_string(mixed_trades(dir, seed)).unwrap();
    let second = std::fs::read_to_string(mixed_trades(dir, seed + 1)).unwrap();
    let mut out = first;
    for line in second.lines() {
        let shifted = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(mut frame) => {
                if let Some(data) = frame.get_mut("data").and_then(|d| d.as_array_mut()) {
                    for trade in data {
                        if let Some(t) = trade.get("t").and_then(|t| t.as_i64()) {
                            trade["t"] = (t + 3 * 3_600_000).into();
                        }
                    }
                }
                frame.to_string()
            }
            Err(_) => line.to_string(),
        };
        out.push_str(&shifted);
        out.push('\n');
    }
    let path = dir.join("gapped.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn five_minute_bars_from_one_minute_bars_equal_duckdb() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trades = gapped_trades(dir.path(), 33);
    check_example(&python, "bars-5m", &trades, dir.path());
}

#[test]
fn rolling_features_equal_sql_window_functions_and_reference_ema_and_rsi() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // 75 minutes of trades: RSI-14 and the 20-bar frame fill up.
    let trades = dir.path().join("long.jsonl");
    write_frames(
        &Frames {
            seed: 35,
            trades: 30_000,
            names: MIXED,
            ..Frames::default()
        },
        &trades,
    );
    check_example(&python, "rolling-features", &trades, dir.path());
}

#[test]
fn a_window_over_rows_made_from_trades_keeps_their_lateness_and_skips_nulls() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trades = mixed_trades(dir.path(), 34);
    let spec = dir.path().join("notional.yaml");
    std::fs::write(
        &spec,
        r#"name: notional-rows
sources:
  trades: { type: replay, path: "${TRADES_FILE}", max_out_of_orderness: 2s }
steps:
  priced:
    type: derive
    input: trades
    columns:
      notional: "price * volume"
      big: "CASE WHEN volume >= 50 THEN volume END"
      big_price: "CASE WHEN volume >= 50 THEN price END"
  by_minute:
    type: window
    input: priced
    window: { type: tumbling, size: 1m }
    aggregates:
      notional:  { fn: sum, field: notional }
      n:         { fn: count }
      big:       { fn: max, field: big }
      big_price: { fn: avg, field: big_price }
      low:       { fn: min, field: price }
sinks:
  rows: { type: parquet, input: by_minute, path: "${OUT_URL}/rows", partition_by: [] }
dead_letters: { path: "${OUT_URL}/dead", format: jsonl }
"#,
    )
    .unwrap();
    for workers in ["1", "2"] {
        let out = dir.path().join(format!("out{workers}"));
        run_and_check(&python, "notional-rows", &spec, &trades, &out, workers);
        // Late rows are dead letters of the window, as late trades are.
        let (_, letters) = crate::support::read_dead_letters(&out.join("dead"));
        assert!(
            letters
                .iter()
                .any(|l| l["reason"] == "late" && l["source"] == "by_minute")
        );
    }
}

#[test]
fn a_failing_expression_dead_letters_only_its_rows() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trades = mixed_trades(dir.path(), 32);
    let spec = dir.path().join("overflow.yaml");
    std::fs::write(
        &spec,
        r#"name: overflowing-derive
sources:
  trades: { type: replay, path: "${TRADES_FILE}", max_out_of_orderness: 2s }
steps:
  big:
    type: derive
    input: trades
    columns: { big: "CAST(volume AS BIGINT) * 4611686018427387904" }
  slim: { type: select, input: big, columns: [symbol, timestamp, big] }
sinks:
  rows: { type: parquet, input: slim, path: "${OUT_URL}/rows", partition_by: [] }
dead_letters: { path: "${OUT_URL}/dead", format: jsonl }
"#,
    )
    .unwrap();
    for workers in ["1", "2"] {
        let out = dir.path().join(format!("out{workers}"));
        run_and_check(&python, "overflowing-derive", &spec, &trades, &out, workers);
        // The dead letter names the step and the expression.
        let (_, letters) = crate::support::read_dead_letters(&out.join("dead"));
        let one = letters
            .iter()
            .find(|l| l["reason"] == "expression_error")
            .expect("an expression_error dead letter");
        let detail = one["detail"].as_str().unwrap();
        assert!(
            detail.contains("step `big`")
                && detail.contains("CAST(volume AS BIGINT)")
                && detail.contains("verflow"),
            "{detail}"
        );
        assert!(one["raw"].as_str().unwrap().starts_with("{\"c\":"), "{one}");
    }
}

#[test]
fn graph_shows_the_steps_with_their_expressions() {
    for format in ["dot", "mermaid"] {
        let out = Command::new(bin())
            .args([
                "graph",
                "specs/examples/crypto-returns.yaml",
                "--format",
                format,
            ])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        for want in [
            "filter where starts_with(symbol, 'BINANCE:') AND volume > 0",
            "derive ret = close / open - 1, range = high - low",
            "select symbol, window_start, close, ret",
            "window tumbling 1m by symbol",
        ] {
            assert!(text.contains(want), "{format}: no `{want}` in\n{text}");
        }
        // trades → filter → window (trades by key) → derive → select → sink
        if format == "dot" {
            assert!(
                text.contains("step_crypto -> step_bars_1m [label=\"trades by key\"]"),
                "{text}"
            );
            assert!(text.contains("step_slim -> sink_bars"), "{text}");
        }
    }
}

/// Trades every few minutes around the clock over weeks that hold the DST changes of 2026
/// (March 8, November 1), Good Friday (April 3), Thanksgiving (November 26) and its early close,
/// weekends, pre-market and after-hours trades, with up to two hours of disorder (late trades).
fn market_weeks(dir: &Path) -> std::path::PathBuf {
    let mut text = String::new();
    for (i, (start, trades)) in [
        (1_772_323_200_000i64, 5_000),
        (1_775_001_600_000, 2_000),
        (1_793_232_000_000, 2_000),
        (1_795_392_000_000, 2_500),
    ]
    .into_iter()
    .enumerate()
    {
        let part = dir.join(format!("part{i}.jsonl"));
        write_frames(
            &Frames {
                seed: 41 + i as u64,
                trades,
                names: &["AAPL", "MSFT", "SPY"],
                start_ms: start,
                gap_ms: 240_000,
                disorder_ms: 2 * 3_600_000,
                ..Frames::default()
            },
            &part,
        );
        text.push_str(&std::fs::read_to_string(&part).unwrap());
    }
    let path = dir.join("market-weeks.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn session_and_local_day_bars_equal_exchange_calendars_and_zoneinfo() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trades = market_weeks(dir.path());
    check_example(&python, "session-bars", &trades, dir.path());
}

/// `tickflow calendar` prints every XNYS and XNAS session of 2000–2030 exactly as the
/// `exchange-calendars` package has them: opens, closes, early closes, holidays.
#[test]
fn calendars_agree_with_exchange_calendars_2000_to_2030() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    for cal in ["XNYS", "XNAS"] {
        let ours = Command::new(bin())
            .args([
                "calendar",
                cal,
                "--from",
                "2000-01-01",
                "--to",
                "2030-12-31",
            ])
            .output()
            .unwrap();
        assert!(
            ours.status.success(),
            "{}",
            String::from_utf8_lossy(&ours.stderr)
        );
        let theirs = Command::new(&python)
            .args([
                "-c",
                "import sys, exchange_calendars as xc\n\
                 c = xc.get_calendar(sys.argv[1], start='2000-01-01', end='2030-12-31')\n\
                 print('date,open,close')\n\
                 f = lambda t: t.strftime('%Y-%m-%dT%H:%M:%SZ')\n\
                 for s, o, e in zip(c.sessions, c.schedule.open, c.schedule.close):\n\
                 \x20   print(f'{s.date()},{f(o)},{f(e)}')\n",
                cal,
            ])
            .output()
            .unwrap();
        assert!(
            theirs.status.success(),
            "{}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        let (ours, theirs) = (
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
        );
        let diff: Vec<(&str, &str)> = ours
            .lines()
            .zip(theirs.lines())
            .filter(|(a, b)| a != b)
            .take(5)
            .collect();
        assert!(
            diff.is_empty(),
            "{cal}: tickflow vs exchange-calendars: {diff:?}"
        );
        assert_eq!(
            ours.lines().count(),
            theirs.lines().count(),
            "{cal}: sessions"
        );
        assert!(
            ours.lines().count() > 7_700,
            "{cal}: {} sessions",
            ours.lines().count()
        );
    }
}

#[test]
fn gap_filled_bars_equal_duckdb_over_a_grid_of_windows() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trades = market_weeks(dir.path());
    check_example(&python, "gap-filled-bars", &trades, dir.path());
}

#[test]
fn tick_volume_and_dollar_bars_equal_a_plain_loop_over_duckdb_ordered_trades() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trades = market_weeks(dir.path());
    check_example(&python, "volume-bars", &trades, dir.path());
}

/// A late trade that revises a 1-minute bar revises the 5-minute bar made from it: the highest
/// revisions equal bars of the trades that were accepted (DuckDB), 1 and 2 workers.
#[test]
fn revisions_flow_from_1_minute_bars_into_the_5_minute_bars_made_from_them() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Dense trades, a tenth of them up to a minute late: many within the 30 s of lateness.
    let trades = dir.path().join("late-trades.jsonl");
    write_frames(
        &Frames {
            seed: 5,
            trades: 20_000,
            names: &["AAPL", "MSFT", "SPY"],
            gap_ms: 150,
            disorder_rate: 0.1,
            disorder_ms: 60_000,
            ..Frames::default()
        },
        &trades,
    );
    check_example(&python, "revised-bars", &trades, dir.path());
    // Which emission is a revision depends on the input only: every row, revisions included,
    // is the same for 1 and 2 workers.
    same_for_1_and_2_workers(dir.path(), &["bars_1m", "bars_5m"]);
}

/// Rows whose key is NULL are dead letters of a step that orders rows per key (count bars
/// here), not a key named "".
#[test]
fn rows_without_a_key_are_dead_letters_of_count_bars() {
    let dir = tempfile::tempdir().unwrap();
    let trades = mixed_trades(dir.path(), 36);
    let spec = dir.path().join("nokey.yaml");
    std::fs::write(
        &spec,
        r#"name: nokey
sources:
  trades: { type: replay, path: "${TRADES_FILE}", max_out_of_orderness: 2s }
steps:
  keyed:
    type: derive
    input: trades
    columns: { symbol: "CASE WHEN price > 50 THEN NULL ELSE symbol END" }
  ticks:
    type: window
    input: keyed
    window: { type: count, size: 10 }
    aggregates: { n: { fn: count } }
sinks:
  rows: { type: parquet, input: ticks, path: "${OUT_URL}/rows", partition_by: [] }
dead_letters: { path: "${OUT_URL}/dead", format: jsonl }
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = Command::new(bin())
        .args(["run"])
        .arg(&spec)
        .env("TRADES_FILE", &trades)
        .env("OUT_URL", &out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (_, letters) = crate::support::read_dead_letters(&out.join("dead"));
    let missing = letters
        .iter()
        .filter(|l| l["reason"] == "missing_field" && l["source"] == "ticks")
        .count();
    assert!(missing > 0, "{letters:?}");
    let (_, rows) = crate::support::read_parquet_dir(&out.join("rows"));
    assert!(!rows.is_empty());
    for r in &rows {
        assert!(
            matches!(&r[0], crate::support::Cell::Str(s) if !s.is_empty()),
            "a bar of no key: {r:?}"
        );
    }
}

/// The top 3 movers and the 2 quietest symbols of each minute, over bars revised by late
/// trades: each minute's highest revision equals DuckDB's `row_number()` over the final bars,
/// and every emission (revisions included) is the same for 1 and 2 workers.
#[test]
fn top_n_rankings_equal_duckdb_row_number_over_the_final_bars() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("late-trades.jsonl");
    write_frames(
        &Frames {
            seed: 12,
            trades: 20_000,
            names: &[
                "AAPL",
                "MSFT",
                "SPY",
                "NVDA",
                "BINANCE:BTCUSDT",
                "BINANCE:ETHUSDT",
                "OANDA:EUR_USD",
            ],
            gap_ms: 120,
            disorder_rate: 0.1,
            disorder_ms: 150_000,
            ..Frames::default()
        },
        &trades,
    );
    check_example(&python, "top-movers", &trades, dir.path());
    same_for_1_and_2_workers(dir.path(), &["movers", "gainers", "quietest"]);
}

/// Market breadth: 1-minute bars grouped by minute, and by minute and an asset class made by a
/// CASE expression (advancing, declining, up and down volume), equal DuckDB's GROUP BY over the
/// bars of the accepted trades, 1 and 2 workers.
#[test]
fn market_breadth_equals_a_duckdb_group_by_over_the_bars() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    write_frames(
        &Frames {
            seed: 21,
            trades: 12_000,
            names: &[
                "AAPL",
                "MSFT",
                "NVDA",
                "SPY",
                "JPM",
                "BINANCE:BTCUSDT",
                "BINANCE:ETHUSDT",
                "OANDA:EUR_USD",
                "OANDA:GBP_USD",
            ],
            gap_ms: 100,
            ..Frames::default()
        },
        &trades,
    );
    check_example(&python, "market-breadth", &trades, dir.path());
}

/// Trades and bars joined with a CSV of sectors: bars per sector and bars with their sector
/// equal DuckDB's left join with its own CSV reader (unlisted symbols, NULL fields), 1 and 2
/// workers.
#[test]
fn lookups_in_a_csv_table_equal_a_duckdb_left_join() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    write_frames(
        &Frames {
            seed: 14,
            trades: 8000,
            names: &[
                "AAPL",
                "MSFT",
                "JPM",
                "V",
                "BINANCE:BTCUSDT",
                "OANDA:EUR_USD",
            ],
            ..Frames::default()
        },
        &trades,
    );
    check_example(&python, "sector-bars", &trades, dir.path());
}

/// A table with `reload:` changes while a paced replay runs (2 workers): a malformed version is
/// refused (logged, the last good table kept), the next good one applies from one point of the
/// stream on — every minute's bars were joined with one version, and the versions follow each
/// other in time.
#[test]
fn a_changed_table_applies_from_one_point_of_the_stream_for_every_worker() {
    use crate::support::Cell;
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    write_frames(
        &Frames {
            seed: 15,
            trades: 6000,
            names: &["AAPL", "MSFT", "JPM", "V"],
            gap_ms: 300,
            ..Frames::default()
        },
        &trades,
    );
    let table = dir.path().join("sectors.csv");
    let version = |v: &str| format!("symbol,sector\nAAPL,{v}\nMSFT,{v}\nJPM,{v}\nV,{v}\n");
    let replace = |text: &str| {
        let tmp = dir.path().join("sectors.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &table).unwrap();
    };
    replace(&version("v1"));
    let spec = dir.path().join("reload.yaml");
    std::fs::write(
        &spec,
        format!(
            r#"name: reload
sources:
  trades: {{ type: replay, path: "{}", speed: 300, max_out_of_orderness: 2s }}
tables:
  sectors: {{ path: "{}", key: symbol, columns: {{ symbol: string, sector: string }}, reload: 1s }}
steps:
  bars: {{ type: window, input: trades, key: symbol, window: {{ type: tumbling, size: 1m }}, aggregates: {{ n: {{ fn: count }} }} }}
  tagged: {{ type: lookup, input: bars, table: sectors }}
sinks:
  out: {{ type: parquet, input: tagged, path: "{}/out" }}
"#,
            trades.display(),
            table.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let child = Command::new(bin())
        .args(["run"])
        .arg(&spec)
        .args(["--workers", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    replace("symbol,sector\nAAPL,v2\nAAPL,v2\n");
    std::thread::sleep(std::time::Duration::from_millis(2000));
    replace(&version("v3"));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("table reload failed: keeping the last good table")
            && stderr.contains("the key `symbol` = `AAPL` appears again"),
        "{stderr}"
    );
    let (names, rows) = crate::support::read_parquet_dir(&dir.path().join("out"));
    let (ws, sector) = (
        names.iter().position(|n| n == "window_start").unwrap(),
        names.iter().position(|n| n == "sector").unwrap(),
    );
    let mut by_minute: std::collections::BTreeMap<i64, std::collections::BTreeSet<String>> =
        Default::default();
    for r in &rows {
        let (Cell::I64(w), Cell::Str(s)) = (&r[ws], &r[sector]) else {
            panic!("{r:?}")
        };
        by_minute.entry(*w).or_default().insert(s.clone());
    }
    let seen: Vec<String> = by_minute
        .values()
        .map(|s| {
            assert_eq!(
                s.len(),
                1,
                "one minute's bars joined with two versions: {by_minute:?}"
            );
            s.iter().next().unwrap().clone()
        })
        .collect();
    let switch = seen
        .iter()
        .position(|s| s == "v3")
        .expect("the new version applied");
    assert!(switch > 0, "{seen:?}");
    assert!(seen[..switch].iter().all(|s| s == "v1"), "{seen:?}");
    assert!(seen[switch..].iter().all(|s| s == "v3"), "{seen:?}");
}

/// EUR crypto trades priced in USD with the latest EUR/USD trade at or before each (within a
/// minute): DuckDB's ASOF LEFT JOIN on the same trades, with disorder and late trades on both
/// sides, 1 and 2 workers.
#[test]
fn asof_join_equals_duckdb_asof_left_join() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    write_frames(
        &Frames {
            seed: 16,
            trades: 4000,
            names: &["BINANCE:BTCEUR", "BINANCE:ETHEUR", "OANDA:EUR_USD", "AAPL"],
            gap_ms: 12_000,
            disorder_rate: 0.05,
            disorder_ms: 8_000,
            ..Frames::default()
        },
        &trades,
    );
    check_example(&python, "eur-usd", &trades, dir.path());
}
