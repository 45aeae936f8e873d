use std::collections::BTreeMap;
use std::path::Path;

use crate::oracle::{self, Bar};
use crate::support::{Cell, Frames, read_dead_letters, read_parquet_dir, run_spec, write_frames};

const OOO: i64 = 2_000;

fn spec(window: &str, allowed: &str) -> String {
    spec_with(window, allowed, "auto")
}

fn spec_with(window: &str, allowed: &str, engine: &str) -> String {
    format!(
        r#"
name: oracle
sources:
  trades:
    type: replay
    path: ${{TRADES_FILE}}
    max_out_of_orderness: 2s
steps:
  w:
    type: window
    input: trades
    window: {window}
    allowed_lateness: {allowed}
    engine: {engine}
    aggregates:
      open: {{ fn: first, field: price }}
      high: {{ fn: max, field: price }}
      low: {{ fn: min, field: price }}
      close: {{ fn: last, field: price }}
      volume: {{ fn: sum, field: volume }}
      vwap: {{ fn: vwap }}
      avg_price: {{ fn: avg, field: price }}
      std_price: {{ fn: stddev, field: price }}
      trades: {{ fn: count }}
sinks:
  out:
    type: parquet
    input: w
    path: ${{OUT_URL}}/bars
    rolling: {{ max_rows: 50 }}
dead_letters:
  path: ${{OUT_URL}}/dead
"#
    )
}

/// Runs the spec on `frames` and returns (rows, dead-letter counts, dead letters).
fn run(
    dir: &Path,
    text: &str,
    workers: usize,
) -> (
    Vec<Vec<Cell>>,
    BTreeMap<String, usize>,
    Vec<serde_json::Value>,
) {
    run_blocks(dir, text, workers, 1024)
}

/// Like [`run`] with replay blocks of `block_size` bytes (smaller than a line: blocks where no
/// line starts).
fn run_blocks(
    dir: &Path,
    text: &str,
    workers: usize,
    block_size: usize,
) -> (
    Vec<Vec<Cell>>,
    BTreeMap<String, usize>,
    Vec<serde_json::Value>,
) {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = dir.join(format!("out-{n}-{workers}-{block_size}"));
    let env = [
        (
            "TRADES_FILE",
            dir.join("trades.jsonl").display().to_string(),
        ),
        ("OUT_URL", out.display().to_string()),
    ];
    run_spec(text, &env, workers, block_size);
    let (names, mut rows) = read_parquet_dir(&out.join("bars"));
    if !rows.is_empty() {
        assert_eq!(names[..4], ["symbol", "window_start", "window_end", "open"]);
    }
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    let (counts, all) = read_dead_letters(&out.join("dead"));
    (rows, counts.into_iter().collect(), all)
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Compares rows (symbol, start, end, 8 doubles, count[, revision]) with expected bars.
fn assert_bars(rows: &[Vec<Cell>], expected: &[Bar], context: &str) {
    let mut got: Vec<&Vec<Cell>> = rows.iter().collect();
    got.sort_by_key(|r| match (&r[0], &r[1]) {
        (Cell::Str(s), Cell::I64(t)) => (s.clone(), *t),
        _ => panic!("bad row {r:?}"),
    });
    assert_eq!(got.len(), expected.len(), "{context}: number of windows");
    for (row, bar) in got.iter().zip(expected) {
        assert_eq!(row[0], Cell::Str(bar.sym.clone()), "{context}");
        assert_eq!(
            (row[1].clone(), row[2].clone()),
            (Cell::I64(bar.start), Cell::I64(bar.end)),
            "{context}: {} window",
            bar.sym
        );
        for (i, want) in bar.values.iter().enumerate() {
            match (&row[3 + i], want) {
                (Cell::F64(g), Some(w)) => assert!(
                    close(*g, *w),
                    "{context}: {} [{}] column {}: got {g}, want {w}",
                    bar.sym,
                    bar.start,
                    3 + i
                ),
                (Cell::Null, None) => {}
                (g, w) => panic!(
                    "{context}: {} [{}] column {}: got {g:?}, want {w:?}",
                    bar.sym,
                    bar.start,
                    3 + i
                ),
            }
        }
        assert_eq!(
            row[11],
            Cell::I64(bar.count),
            "{context}: {} [{}] count",
            bar.sym,
            bar.start
        );
    }
}

/// Rejections by reason (excluding lateness) as the oracle sees them.
fn oracle_rejects(input: &oracle::Input) -> BTreeMap<String, usize> {
    input
        .rejected
        .iter()
        .map(|(k, v)| (k.clone(), v.len()))
        .collect()
}

fn without_late(mut counts: BTreeMap<String, usize>) -> (BTreeMap<String, usize>, usize) {
    let late = counts.remove("late").unwrap_or(0);
    (counts, late)
}

#[test]
fn tumbling_bars_match_the_oracle_for_any_worker_count() {
    for seed in 1..=3u64 {
        let dir = tempfile::tempdir().unwrap();
        write_frames(
            &Frames {
                seed,
                ..Frames::default()
            },
            &dir.path().join("trades.jsonl"),
        );
        let text = std::fs::read_to_string(dir.path().join("trades.jsonl")).unwrap();
        let input = oracle::read(&text, OOO);
        let (expected, late) = oracle::fixed_windows(&input, 60_000, 60_000, 0);
        assert!(
            late > 0 && !input.rejected.is_empty(),
            "seed {seed}: the input must exercise late and invalid trades"
        );

        let spec = spec("{ type: tumbling, size: 1m }", "0s");
        let (one, dead_one, letters) = run(dir.path(), &spec, 1);
        assert_bars(&one, &expected, &format!("seed {seed}, 1 worker"));
        let (counts, got_late) = without_late(dead_one);
        assert_eq!(
            counts,
            oracle_rejects(&input),
            "seed {seed}: rejected by reason"
        );
        assert_eq!(got_late, late, "seed {seed}: late trades");
        // Every rejected line number is the one the oracle found.
        let mut lines: Vec<u64> = letters
            .iter()
            .filter(|l| l["reason"] != "late")
            .map(|l| l["line"].as_u64().unwrap())
            .collect();
        let mut want: Vec<u64> = input.rejected.values().flatten().copied().collect();
        lines.sort();
        want.sort();
        assert_eq!(lines, want, "seed {seed}: dead-letter line numbers");

        for (workers, block_size) in [(2, 1024), (3, 1024), (2, 37), (1, 1 << 20)] {
            let (rows, dead, _) = run_blocks(dir.path(), &spec, workers, block_size);
            // Bit for bit the same rows, whatever the worker count.
            assert_eq!(
                rows, one,
                "seed {seed}: {workers} workers ({block_size}-byte blocks) differ from 1 worker"
            );
            assert_eq!(
                without_late(dead).1,
                late,
                "seed {seed}: {workers} workers, late trades"
            );
        }
        // The differential engine gives the very same rows.
        let (rows, dead, _) = run(
            dir.path(),
            &spec_with("{ type: tumbling, size: 1m }", "0s", "differential"),
            2,
        );
        assert_eq!(
            rows, one,
            "seed {seed}: the differential engine differs from the timely operator"
        );
        assert_eq!(
            without_late(dead).1,
            late,
            "seed {seed}: differential engine, late trades"
        );
    }
}

#[test]
fn hopping_windows_match_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    write_frames(
        &Frames {
            seed: 7,
            trades: 1500,
            ..Frames::default()
        },
        &dir.path().join("trades.jsonl"),
    );
    let text = std::fs::read_to_string(dir.path().join("trades.jsonl")).unwrap();
    let input = oracle::read(&text, OOO);
    let (expected, late) = oracle::fixed_windows(&input, 60_000, 20_000, 0);
    for engine in ["timely", "differential"] {
        let spec = spec_with("{ type: hopping, size: 1m, slide: 20s }", "0s", engine);
        let (rows, dead, _) = run(dir.path(), &spec, 2);
        assert_bars(&rows, &expected, &format!("hopping, {engine}"));
        assert_eq!(
            without_late(dead).1,
            late,
            "hopping, {engine}: trades late for all their windows"
        );
    }
}

#[test]
fn session_windows_match_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    write_frames(
        &Frames {
            seed: 11,
            trades: 1500,
            gap_ms: 300,
            ..Frames::default()
        },
        &dir.path().join("trades.jsonl"),
    );
    let text = std::fs::read_to_string(dir.path().join("trades.jsonl")).unwrap();
    let input = oracle::read(&text, OOO);
    let (expected, late) = oracle::sessions(&input, 1_000);
    assert!(
        expected.len() > 50,
        "sessions must break often enough to test merging"
    );
    let spec = spec("{ type: session, gap: 1s }", "0s");
    let (one, dead, _) = run(dir.path(), &spec, 1);
    assert_bars(&one, &expected, "sessions");
    assert_eq!(without_late(dead).1, late, "sessions: late trades");
    let (two, _, _) = run(dir.path(), &spec, 2);
    assert_eq!(two, one, "sessions: 2 workers differ from 1");
}

#[test]
fn allowed_lateness_emits_revisions_that_converge_to_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    write_frames(
        &Frames {
            seed: 5,
            disorder_rate: 0.2,
            disorder_ms: 90_000,
            ..Frames::default()
        },
        &dir.path().join("trades.jsonl"),
    );
    let text = std::fs::read_to_string(dir.path().join("trades.jsonl")).unwrap();
    let input = oracle::read(&text, OOO);
    let (on_time, _) = oracle::fixed_windows(&input, 60_000, 60_000, 0);
    let (final_bars, too_late) = oracle::fixed_windows(&input, 60_000, 60_000, 30_000);
    let timely_rows = check_revisions(
        dir.path(),
        "timely",
        &input,
        &on_time,
        &final_bars,
        too_late,
    );
    let differential_rows = check_revisions(
        dir.path(),
        "differential",
        &input,
        &on_time,
        &final_bars,
        too_late,
    );
    assert_eq!(
        timely_rows, differential_rows,
        "both engines emit the same revisions"
    );
}

/// Runs the revisions spec on `engine` with 1 and 2 workers; checks it against the oracle and
/// returns the rows.
fn check_revisions(
    dir: &Path,
    engine: &str,
    _input: &oracle::Input,
    on_time: &[Bar],
    final_bars: &[Bar],
    too_late: usize,
) -> Vec<Vec<Cell>> {
    let spec = spec_with("{ type: tumbling, size: 1m }", "30s", engine);
    let (rows, dead, _) = run(dir, &spec, 2);
    let (rows_one, _, _) = run(dir, &spec, 1);
    assert_eq!(rows, rows_one, "{engine}: 1 and 2 workers differ");
    assert_eq!(
        without_late(dead).1,
        too_late,
        "{engine}: trades later than the allowed lateness"
    );
    let all = rows.clone();

    // Group rows per window, ordered by revision.
    let mut per_window: BTreeMap<(String, i64), Vec<Vec<Cell>>> = BTreeMap::new();
    for r in rows {
        let (Cell::Str(s), Cell::I64(start)) = (&r[0], &r[1]) else {
            panic!()
        };
        per_window.entry((s.clone(), *start)).or_default().push(r);
    }
    let mut finals = Vec::new();
    let mut firsts = Vec::new();
    let mut revised = 0;
    for (key, mut revs) in per_window {
        revs.sort_by_key(|r| match r[12] {
            Cell::I64(v) => v,
            _ => panic!("revision column"),
        });
        let numbers: Vec<Cell> = revs.iter().map(|r| r[12].clone()).collect();
        let want: Vec<Cell> = (0..revs.len() as i64).map(Cell::I64).collect();
        assert_eq!(
            numbers, want,
            "{key:?}: revisions are numbered 0, 1, 2, ..."
        );
        revised += revs.len() - 1;
        if on_time
            .iter()
            .any(|b| (b.sym.as_str(), b.start) == (key.0.as_str(), key.1))
        {
            firsts.push(revs[0].clone());
        }
        finals.push(revs.last().unwrap().clone());
    }
    assert!(revised > 0, "the input must produce revisions");
    assert_bars(&finals, final_bars, &format!("{engine}: final revisions"));
    assert_bars(&firsts, on_time, &format!("{engine}: first emissions"));
    all
}
