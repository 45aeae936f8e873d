//! Whole-pipeline benchmark: replay → 1-minute bars → Parquet, against a hand-written
//! single-threaded loop doing the same work (the practical ceiling).
//!
//!     cargo bench --bench pipeline                      # 2M trades, 500 symbols
//!     cargo bench --bench pipeline -- --trades 5000000 --symbols 500
//!     cargo bench --bench pipeline -- --engines         # also: timely vs differential windows
//!     cargo bench --bench pipeline -- --windows --trades 200000   # window sizes 1m … 1ms
//!     cargo bench --bench pipeline -- --peers           # also: the same job in DuckDB (PyPI)
//!     cargo bench --bench pipeline -- --memory          # 10k symbols x (10 s + 1 min) bars
//!     cargo bench --bench pipeline -- --steps           # also: a filter on trades, a derive on bars
//!     cargo bench --bench pipeline -- --cascade         # 1m → 5m → 1h against 1m bars alone
//!     cargo bench --bench pipeline -- --rolling --symbols 10000   # 4 rolling features of 1m bars
//!     cargo bench --bench pipeline -- --topn --symbols 10000      # top 10 of each minute's bars
//!     cargo bench --bench pipeline -- --asof            # as-of join with 100 k quotes, and DuckDB
//!
//! Each measurement runs in a child process so that its peak RSS is its own. Prints trades/s and
//! peak RSS per variant and the ratios the targets in BENCHMARKS.md refer to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{
    Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tickflow::sim::generate::{GenOptions, generate};

/// The bars spec; `ENGINE`/`LATENESS` are substituted for the engine comparison.
const SPEC: &str = r#"
name: bench
sources:
  trades:
    type: replay
    path: ${TRADES_FILE}
    max_out_of_orderness: 2s
steps:
  bars:
    type: window
    input: trades
    window: { type: tumbling, size: ${SIZE:-1m} }
    allowed_lateness: ${LATENESS:-0s}
    engine: ${ENGINE:-auto}
    aggregates:
      open: { fn: first, field: price }
      high: { fn: max, field: price }
      low: { fn: min, field: price }
      close: { fn: last, field: price }
      volume: { fn: sum, field: volume }
      vwap: { fn: vwap }
      trades: { fn: count }
sinks:
  out:
    type: parquet
    input: bars
    path: ${OUT_URL}
"#;

/// The bars job with a `filter` on the trades and a `derive` on the bars (`--steps`): what the
/// expression steps cost on the hot path. The filter keeps every valid trade.
const STEPS_SPEC: &str = r#"
name: bench-steps
sources:
  trades:
    type: replay
    path: ${TRADES_FILE}
    max_out_of_orderness: 2s
steps:
  kept:
    type: filter
    input: trades
    where: "price > 0 AND symbol <> ''"
  bars:
    type: window
    input: kept
    window: { type: tumbling, size: 1m }
    aggregates:
      open: { fn: first, field: price }
      high: { fn: max, field: price }
      low: { fn: min, field: price }
      close: { fn: last, field: price }
      volume: { fn: sum, field: volume }
      vwap: { fn: vwap }
      trades: { fn: count }
  enriched:
    type: derive
    input: bars
    columns:
      ret: "close / open - 1"
      range: "high - low"
      notional: "vwap * volume"
sinks:
  out:
    type: parquet
    input: enriched
    path: ${OUT_URL}
"#;

/// Two window sizes of every symbol into two Parquet sinks (`--memory`: peak RSS with many keys).
const MEMORY_SPEC: &str = r#"
name: bench-memory
sources:
  trades:
    type: replay
    path: ${TRADES_FILE}
    max_out_of_orderness: 2s
steps:
  bars_10s:
    type: window
    input: trades
    window: { type: tumbling, size: 10s }
    aggregates: &bars
      open: { fn: first, field: price }
      high: { fn: max, field: price }
      low: { fn: min, field: price }
      close: { fn: last, field: price }
      volume: { fn: sum, field: volume }
      vwap: { fn: vwap }
      trades: { fn: count }
  bars_1m:
    type: window
    input: trades
    window: { type: tumbling, size: 1m }
    aggregates: *bars
sinks:
  bars_10s_out:
    type: parquet
    input: bars_10s
    path: ${OUT_URL}/bars_10s
  bars_1m_out:
    type: parquet
    input: bars_1m
    path: ${OUT_URL}/bars_1m
"#;

/// The source and the 1-minute bars that `--cascade` and `--rolling` build on.
macro_rules! bars_1m {
    () => {
        r#"
sources:
  trades: { type: replay, path: "${TRADES_FILE}", max_out_of_orderness: 2s }
steps:
  bars_1m:
    type: window
    input: trades
    window: { type: tumbling, size: 1m }
    aggregates:
      open: { fn: first, field: price }
      high: { fn: max, field: price }
      low: { fn: min, field: price }
      close: { fn: last, field: price }
      volume: { fn: sum, field: volume }
      trades: { fn: count }
"#
    };
}

/// 1-minute bars alone (`--cascade`'s and `--rolling`'s baseline).
const ONE_SPEC: &str = concat!(
    "name: bench-one",
    bars_1m!(),
    r#"sinks:
  bars_1m_out: { type: parquet, input: bars_1m, path: "${OUT_URL}/bars_1m" }
"#
);

/// trades → 1 m → 5 m → 1 h, each level written (`--cascade`).
const CASCADE_SPEC: &str = concat!(
    "name: bench-cascade",
    bars_1m!(),
    r#"  bars_5m:
    type: window
    input: bars_1m
    window: { type: tumbling, size: 5m }
    aggregates: &up
      open: { fn: first, field: open }
      high: { fn: max, field: high }
      low: { fn: min, field: low }
      close: { fn: last, field: close }
      volume: { fn: sum, field: volume }
      trades: { fn: sum, field: trades }
  bars_1h:
    type: window
    input: bars_5m
    window: { type: tumbling, size: 1h }
    aggregates: *up
sinks:
  bars_1m_out: { type: parquet, input: bars_1m, path: "${OUT_URL}/bars_1m" }
  bars_5m_out: { type: parquet, input: bars_5m, path: "${OUT_URL}/bars_5m" }
  bars_1h_out: { type: parquet, input: bars_1h, path: "${OUT_URL}/bars_1h" }
"#
);

/// 1-minute bars → four rolling features per symbol (`--rolling`).
const ROLLING_SPEC: &str = concat!(
    "name: bench-rolling",
    bars_1m!(),
    r#"  feats:
    type: rolling
    input: bars_1m
    rows: 20
    features:
      sma20: { fn: avg, field: close }
      sd20: { fn: stddev, field: close }
      ema20: { fn: ema, field: close, span: 20 }
      rsi14: { fn: rsi, field: close, period: 14 }
sinks:
  feats_out: { type: parquet, input: feats, path: "${OUT_URL}/feats" }
"#
);

/// 1-minute bars → the 10 top movers of each minute (`--topn`).
const TOPN_SPEC: &str = concat!(
    "name: bench-topn",
    bars_1m!(),
    r#"  movers:
    type: top_n
    input: bars_1m
    n: 10
    by: "close / open - 1"
sinks:
  movers_out: { type: parquet, input: movers, path: "${OUT_URL}/movers" }
"#
);

/// Every trade with the latest "quote" of its symbol at or before it: 5% of the trades (volume
/// at least 475 of 0..499), about 100 k rows for 2 M trades (`--asof`).
const ASOF_SPEC: &str = r#"name: bench-asof
sources:
  trades: { type: replay, path: "${TRADES_FILE}", max_out_of_orderness: 2s }
steps:
  quotes: { type: filter, input: trades, where: "volume >= 475" }
  joined:
    type: asof_join
    left: trades
    right: quotes
    on: symbol
    columns: { q_price: price, q_time: timestamp }
sinks:
  joined_out: { type: parquet, input: joined, path: "${OUT_URL}/joined" }
"#;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(mode) = arg(&args, "--child") {
        let file = PathBuf::from(arg(&args, "--file").expect("--file"));
        let out = PathBuf::from(arg(&args, "--out").expect("--out"));
        let started = Instant::now();
        let engine = arg(&args, "--engine");
        let size = arg(&args, "--size");
        let trades = match mode.as_str() {
            "loop" => hand_written_loop(&file, &out),
            "steps-1" | "steps-2" => run_spec(
                STEPS_SPEC,
                &file,
                &out,
                mode.ends_with('2') as usize + 1,
                None,
                None,
            ),
            "one-1" | "one-2" | "cascade-1" | "cascade-2" | "rolling-1" | "rolling-2"
            | "topn-2" | "asof-1" | "asof-2" => run_spec(
                match &mode[..mode.len() - 2] {
                    "one" => ONE_SPEC,
                    "cascade" => CASCADE_SPEC,
                    "topn" => TOPN_SPEC,
                    "asof" => ASOF_SPEC,
                    _ => ROLLING_SPEC,
                },
                &file,
                &out,
                mode.ends_with('2') as usize + 1,
                None,
                None,
            ),
            "memory-1" | "memory-2" => run_spec(
                MEMORY_SPEC,
                &file,
                &out,
                mode.ends_with('2') as usize + 1,
                None,
                None,
            ),
            workers => run_pipeline(
                &file,
                &out,
                workers.parse().expect("workers"),
                engine.as_deref(),
                size.as_deref(),
            ),
        };
        println!(
            "{} {} {} {}",
            started.elapsed().as_secs_f64(),
            trades,
            peak_rss_mib(),
            FIRED.load(std::sync::atomic::Ordering::Relaxed)
        );
        return;
    }
    let trades: u64 = arg(&args, "--trades")
        .map(|s| s.parse().unwrap())
        .unwrap_or(2_000_000);
    let memory = args.iter().any(|a| a == "--memory");
    let symbols: usize = arg(&args, "--symbols")
        .map(|s| s.parse().unwrap())
        .unwrap_or(if memory { 10_000 } else { 500 });
    let runs: usize = arg(&args, "--runs")
        .map(|s| s.parse().unwrap())
        .unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("tickflow-bench-{trades}-{symbols}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("trades.jsonl");
    if !file.exists() {
        let opts = GenOptions {
            trades,
            symbols,
            seed: 7,
            mean_gap_ms: 2.0,
            disorder_ms: 1500,
            disorder_rate: 0.01,
            ping_every: 1000,
            ..GenOptions::default()
        };
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        generate(&opts, &mut w).unwrap();
        std::io::Write::flush(&mut w).unwrap();
    }
    let size = std::fs::metadata(&file).unwrap().len();
    println!(
        "input: {trades} trades, {symbols} symbols, {:.1} MiB ({})",
        size as f64 / (1 << 20) as f64,
        file.display()
    );
    println!(
        "machine: {} cores; best of {runs} runs",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let mut results = HashMap::new();
    // With --engines, also compare the two window engines on revisable windows
    // (allowed_lateness: 30s), where `auto` picks differential dataflow.
    let mut variants: Vec<(&str, Option<&str>)> = vec![("loop", None), ("1", None), ("2", None)];
    if memory {
        variants = vec![("memory-1", None), ("memory-2", None)];
    }
    let steps = args.iter().any(|a| a == "--steps");
    if steps {
        variants.extend([("steps-1", None), ("steps-2", None)]);
    }
    let cascade = args.iter().any(|a| a == "--cascade");
    if cascade {
        variants = vec![
            ("one-1", None),
            ("cascade-1", None),
            ("one-2", None),
            ("cascade-2", None),
        ];
    }
    let rolling = args.iter().any(|a| a == "--rolling");
    if rolling {
        variants = vec![("one-2", None), ("rolling-2", None)];
    }
    let topn = args.iter().any(|a| a == "--topn");
    if topn {
        variants = vec![("one-2", None), ("topn-2", None)];
    }
    let asof = args.iter().any(|a| a == "--asof");
    if asof {
        variants = vec![("asof-1", None), ("asof-2", None)];
    }
    if args.iter().any(|a| a == "--windows") {
        // Many small windows: time and peak memory must grow linearly with the window count.
        for size in ["1m", "1s", "100ms", "10ms", "1ms"] {
            let out = dir.join(format!("out-size-{size}"));
            let _ = std::fs::remove_dir_all(&out);
            let child = Command::new(std::env::current_exe().unwrap())
                .args(["--child", "2", "--file", file.to_str().unwrap()])
                .args(["--out", out.to_str().unwrap(), "--size", size])
                .output()
                .unwrap();
            assert!(
                child.status.success(),
                "{}",
                String::from_utf8_lossy(&child.stderr)
            );
            let line = String::from_utf8(child.stdout).unwrap();
            let parts: Vec<f64> = line
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
            let files = walk_count(&out);
            let _ = std::fs::remove_dir_all(&out);
            println!(
                "tumbling {size:>6}, 2 workers {:>12.0} trades/s   {:>7.3} s   peak RSS {:>7.1} MiB   {files} files",
                parts[1] / parts[0],
                parts[0],
                parts[2]
            );
        }
        return;
    }
    if args.iter().any(|a| a == "--engines") {
        variants.extend([
            ("1", Some("timely")),
            ("2", Some("timely")),
            ("1", Some("differential")),
            ("2", Some("differential")),
        ]);
    }
    let mut bars_seen: u64 = 0;
    for (variant, engine) in variants {
        let mut best: Option<(f64, u64, f64)> = None;
        for run in 0..runs {
            let out = dir.join(format!("out-{variant}-{run}"));
            let _ = std::fs::remove_dir_all(&out);
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args([
                "--child",
                variant,
                "--file",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ]);
            if let Some(e) = engine {
                cmd.args(["--engine", e]);
            }
            let child = cmd.output().unwrap();
            assert!(
                child.status.success(),
                "{}",
                String::from_utf8_lossy(&child.stderr)
            );
            let line = String::from_utf8(child.stdout).unwrap();
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (secs, n, rss) = (
                parts[0].parse::<f64>().unwrap(),
                parts[1].parse::<u64>().unwrap(),
                parts[2].parse::<f64>().unwrap(),
            );
            bars_seen = parts
                .get(3)
                .and_then(|b| b.parse().ok())
                .unwrap_or(bars_seen);
            if best.is_none_or(|b| secs < b.0) {
                best = Some((secs, n, rss));
            }
            let _ = std::fs::remove_dir_all(&out);
        }
        let (secs, n, rss) = best.unwrap();
        let name = match (variant, engine) {
            ("loop", _) => "hand-written loop (1 thread)".to_string(),
            ("memory-1", _) => format!("{symbols} symbols x 2 sizes, 1 worker"),
            ("memory-2", _) => format!("{symbols} symbols x 2 sizes, 2 workers"),
            ("steps-1", _) => "filter + bars + derive, 1 worker".to_string(),
            ("steps-2", _) => "filter + bars + derive, 2 workers".to_string(),
            ("one-1", _) | ("one-2", _) => format!("1m bars alone, {} worker(s)", &variant[4..]),
            ("cascade-1", _) | ("cascade-2", _) => {
                format!("1m → 5m → 1h, {} worker(s)", &variant[8..])
            }
            ("rolling-2", _) => "1m bars → 4 rolling features, 2 workers".to_string(),
            ("topn-2", _) => "1m bars → top 10 per minute, 2 workers".to_string(),
            ("asof-1", _) | ("asof-2", _) => {
                format!("asof join with 5% quotes, {} worker(s)", &variant[5..])
            }
            (w, None) => format!("tickflow, {w} worker(s)"),
            (w, Some(e)) => format!("lateness 30s, {e}, {w} worker(s)"),
        };
        println!(
            "{name:40} {:>12.0} trades/s   {:>7.3} s   peak RSS {:>7.1} MiB",
            n as f64 / secs,
            secs,
            rss
        );
        if engine.is_none() {
            results.insert(variant, n as f64 / secs);
        }
    }
    if memory {
        println!("(peak RSS of the fastest run; goal: at most 200 MB = 190.7 MiB)");
        return;
    }
    if cascade {
        println!(
            "cascade: 1m → 5m → 1h costs {:+.1}% (1 worker), {:+.1}% (2 workers) over 1m bars alone (target ≤ +15%)",
            (results["one-1"] / results["cascade-1"] - 1.0) * 100.0,
            (results["one-2"] / results["cascade-2"] - 1.0) * 100.0
        );
        return;
    }
    if topn {
        let (one, ranked) = (
            trades as f64 / results["one-2"],
            trades as f64 / results["topn-2"],
        );
        println!(
            "top_n: {bars} bars; ranking them adds {:.3} s: {:.0} bars/s ranked (2 workers)",
            ranked - one,
            bars_seen.max(1) as f64 / (ranked - one).max(1e-9),
            bars = bars_seen
        );
        return;
    }
    if asof {
        asof_peer(&file, trades, results["asof-2"], runs);
        return;
    }
    if rolling {
        let (one, feats) = (
            trades as f64 / results["one-2"],
            trades as f64 / results["rolling-2"],
        );
        println!(
            "rolling: {bars} bars; the rolling step adds {:.3} s: {:.0} rows/s of 4 features (2 workers)",
            feats - one,
            bars_seen.max(1) as f64 / (feats - one).max(1e-9),
            bars = bars_seen
        );
        return;
    }
    println!(
        "ratios: 1 worker / loop = {:.2} (target ≥ 0.70); 2 workers / loop = {:.2} (target ≥ 1.30); 2 workers = {:.2}M trades/s (target ≥ 2M)",
        results["1"] / results["loop"],
        results["2"] / results["loop"],
        results["2"] / 1e6
    );
    if steps {
        println!(
            "steps: filter + derive / plain bars = {:.3} (1 worker), {:.3} (2 workers) (target ≥ 0.90)",
            results["steps-1"] / results["1"],
            results["steps-2"] / results["2"]
        );
    }
    if args.iter().any(|a| a == "--peers") {
        peers(&file, &dir, trades, runs);
    }
}

/// The same job in DuckDB (PyPI, current version, in a venv of its own), alternating, on three
/// files: this one, the same frames as Python's `json.dumps` writes them, and 2 M trades over
/// 10,000 symbols. tickflow is timed as a whole process (2 workers), DuckDB (2 threads) from
/// `import duckdb` to the written Parquet file (its engine time, without the interpreter's own
/// start and exit). The ratio is DuckDB's time over tickflow's, the median of the pairs.
fn peers(file: &Path, dir: &Path, trades: u64, runs: usize) {
    let python = peers_python();
    let dumps = dir.join("trades-dumps.jsonl");
    if !dumps.exists() {
        let rewrite = "import json, sys\nwith open(sys.argv[1]) as f, open(sys.argv[2], 'w') as out:\n    for line in f:\n        out.write(json.dumps(json.loads(line)) + '\\n')\n";
        assert!(
            Command::new(&python)
                .args(["-c", rewrite])
                .args([file, &dumps])
                .status()
                .unwrap()
                .success()
        );
    }
    let many_dir = std::env::temp_dir().join("tickflow-bench-peers-2000000-10000");
    std::fs::create_dir_all(&many_dir).unwrap();
    let many = many_dir.join("trades.jsonl");
    if !many.exists() {
        // `tickflow generate --trades 2000000 --symbols 10000 --seed 3`
        let opts = GenOptions {
            trades: 2_000_000,
            symbols: 10_000,
            seed: 3,
            ..GenOptions::default()
        };
        let mut w = std::io::BufWriter::new(std::fs::File::create(&many).unwrap());
        generate(&opts, &mut w).unwrap();
        std::io::Write::flush(&mut w).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_bars.py");
    println!(
        "peers: tickflow 2 workers (whole process) against DuckDB 2 threads (engine time), alternating, {runs} pairs, medians"
    );
    for (label, path, n, target) in [
        ("canonical frames, 500 symbols", file, trades, 2.0),
        ("json.dumps frames, 500 symbols", &dumps, trades, 1.5),
        ("canonical frames, 10,000 symbols", &many, 2_000_000, 1.5),
    ] {
        let (mut ours, mut theirs, mut ratios, mut version) =
            (Vec::new(), Vec::new(), Vec::new(), String::new());
        for run in 0..runs {
            let out = dir.join(format!("out-peers-{run}"));
            let started = Instant::now();
            let child = Command::new(std::env::current_exe().unwrap())
                .args(["--child", "2", "--file", path.to_str().unwrap()])
                .args(["--out", out.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                child.status.success(),
                "{}",
                String::from_utf8_lossy(&child.stderr)
            );
            let t = started.elapsed().as_secs_f64();
            let _ = std::fs::remove_dir_all(&out);
            let parts = run_python(
                &python,
                &script,
                [path.as_os_str(), "--once".as_ref(), "2".as_ref()],
            );
            version = parts[0].clone();
            let d: f64 = parts[2].parse().unwrap();
            ours.push(t);
            theirs.push(d);
            ratios.push(d / t);
        }
        let median = |xs: &mut Vec<f64>| {
            xs.sort_by(f64::total_cmp);
            xs[xs.len() / 2]
        };
        let (t, d, r) = (median(&mut ours), median(&mut theirs), median(&mut ratios));
        println!(
            "  {label:<34} tickflow {t:.3} s ({:>5.2} M trades/s)  DuckDB {version} {d:.3} s ({:>5.2} M trades/s)  tickflow / DuckDB = {r:.2} (target ≥ {target})",
            n as f64 / t / 1e6,
            n as f64 / d / 1e6,
        );
    }
}

/// Runs a peer's Python `script` with `args`; the words it printed (the bench fails with the
/// script's stderr if it fails).
fn run_python<'a>(
    python: &Path,
    script: &Path,
    args: impl IntoIterator<Item = &'a std::ffi::OsStr>,
) -> Vec<String> {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The same as-of join in DuckDB (`benches/duckdb_asof.py`, 2 threads, engine time: from the
/// query's start to the written Parquet file), against tickflow's whole process.
fn asof_peer(file: &Path, trades: u64, ours: f64, runs: usize) {
    let python = peers_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_asof.py");
    let runs = runs.to_string();
    let parts = run_python(&python, &script, [file.as_os_str(), runs.as_ref()]);
    let (version, secs, rows) = (&parts[0], parts[1].parse::<f64>().unwrap(), &parts[2]);
    let theirs = trades as f64 / secs;
    println!(
        "asof peers: tickflow 2 workers {ours:>10.0} trades/s (whole process); DuckDB {version} 2 threads {theirs:>10.0} trades/s ({secs:.3} s engine time, {rows} rows): tickflow / DuckDB = {:.2} (target ≥ 1.0, aim 1.5)",
        ours / theirs
    );
}

/// The venv with DuckDB the peer comparisons use (made on first use).
fn peers_python() -> PathBuf {
    let venv = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/tickflow/peers-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        assert!(
            Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status()
                .unwrap()
                .success()
        );
    }
    let has = Command::new(&python)
        .args(["-c", "import duckdb"])
        .status()
        .unwrap()
        .success();
    if !has {
        assert!(
            Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "duckdb"
                ])
                .status()
                .unwrap()
                .success()
        );
    }
    python
}

fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk_count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn run_pipeline(
    file: &Path,
    out: &Path,
    workers: usize,
    engine: Option<&str>,
    size: Option<&str>,
) -> u64 {
    run_spec(SPEC, file, out, workers, engine, size)
}

/// Windows the last run fired (the child prints them).
static FIRED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn run_spec(
    spec: &str,
    file: &Path,
    out: &Path,
    workers: usize,
    engine: Option<&str>,
    size: Option<&str>,
) -> u64 {
    let env = |k: &str| match k {
        "SIZE" => size.map(str::to_string),
        "TRADES_FILE" => Some(file.display().to_string()),
        "OUT_URL" => Some(out.display().to_string()),
        "ENGINE" => engine.map(str::to_string),
        "LATENESS" => engine.map(|_| "30s".to_string()),
        _ => None,
    };
    let loaded = tickflow::spec::load_str("bench.yaml", spec, &env).unwrap();
    let plan = tickflow::plan::build(&loaded).unwrap();
    let opts = tickflow::dataflow::RunOptions::new(workers);
    let metrics = Arc::clone(&opts.metrics);
    tickflow::dataflow::run(plan, opts).unwrap();
    FIRED.store(
        tickflow::metrics::Metrics::get(&metrics.windows_fired),
        std::sync::atomic::Ordering::Relaxed,
    );
    tickflow::metrics::Metrics::get(&metrics.trades)
}

// ---- the hand-written ceiling: one thread, no framework --------------------------------------

#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    data: Vec<RawTrade<'a>>,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(serde::Deserialize)]
struct RawTrade<'a> {
    p: f64,
    #[serde(borrow)]
    s: &'a str,
    t: i64,
    v: f64,
}

struct Bar {
    open: (i64, u64, f64),
    close: (i64, u64, f64),
    high: f64,
    low: f64,
    volume: f64,
    pv: f64,
    count: i64,
}

/// Parse every frame, track the watermark, aggregate 1-minute bars in a hash map, write Parquet.
fn hand_written_loop(file: &Path, out: &Path) -> u64 {
    let data = std::fs::read(file).unwrap();
    let mut bars: HashMap<(String, i64), Bar> = HashMap::new();
    let (mut max_ts, mut n, mut seq) = (i64::MIN, 0u64, 0u64);
    for line in data.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let Ok(frame) = serde_json::from_slice::<Frame>(line) else {
            continue;
        };
        if frame.kind != "trade" {
            continue;
        }
        for t in frame.data {
            seq += 1;
            if !(t.p > 0.0 && t.v >= 0.0) {
                continue;
            }
            n += 1;
            max_ts = max_ts.max(t.t);
            let start = t.t.div_euclid(60_000) * 60_000;
            if start + 60_000 <= max_ts - 2_000 {
                continue; // late
            }
            let key = (t.s.to_string(), start);
            let b = bars.entry(key).or_insert(Bar {
                open: (t.t, seq, t.p),
                close: (t.t, seq, t.p),
                high: t.p,
                low: t.p,
                volume: 0.0,
                pv: 0.0,
                count: 0,
            });
            if (t.t, seq) < (b.open.0, b.open.1) {
                b.open = (t.t, seq, t.p);
            }
            if (t.t, seq) >= (b.close.0, b.close.1) {
                b.close = (t.t, seq, t.p);
            }
            b.high = b.high.max(t.p);
            b.low = b.low.min(t.p);
            b.volume += t.v;
            b.pv += t.p * t.v;
            b.count += 1;
        }
    }
    let (mut sym, mut ws, mut we) = (
        StringBuilder::new(),
        TimestampMillisecondBuilder::new().with_timezone("UTC"),
        TimestampMillisecondBuilder::new().with_timezone("UTC"),
    );
    let mut f: Vec<Float64Builder> = (0..6).map(|_| Float64Builder::new()).collect();
    let mut count = Int64Builder::new();
    for ((s, start), b) in &bars {
        sym.append_value(s);
        ws.append_value(*start);
        we.append_value(start + 60_000);
        for (i, v) in [b.open.2, b.high, b.low, b.close.2, b.volume]
            .into_iter()
            .enumerate()
        {
            f[i].append_value(v);
        }
        f[5].append_option((b.volume > 0.0).then(|| b.pv / b.volume));
        count.append_value(b.count);
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(sym.finish()),
        Arc::new(ws.finish()),
        Arc::new(we.finish()),
    ];
    cols.extend(f.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    cols.push(Arc::new(count.finish()));
    let batch = RecordBatch::try_from_iter(
        [
            "symbol",
            "window_start",
            "window_end",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "vwap",
            "trades",
        ]
        .into_iter()
        .zip(cols),
    )
    .unwrap();
    std::fs::create_dir_all(out).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
        .build();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(out.join("bars.parquet")).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    n
}
