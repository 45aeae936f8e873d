use std::process::Command;

use crate::oracle;
use crate::support::{Cell, Frames, bin, read_parquet_dir, repo, write_frames};

/// Runs `specs/replay.yaml` over `trades` into `out` (it must succeed); its stderr.
fn run_replay(trades: &std::path::Path, out: &std::path::Path, workers: &str) -> String {
    let result = Command::new(bin())
        .args(["run", "specs/replay.yaml", "--workers", workers])
        .current_dir(repo())
        .env("TRADES_FILE", trades)
        .env("OUT_URL", out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(result.status.success(), "{stderr}");
    stderr
}

#[test]
fn replay_spec_end_to_end_with_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    write_frames(
        &Frames {
            seed: 3,
            trades: 4000,
            ..Frames::default()
        },
        &trades,
    );
    let expected = {
        let input = oracle::read(&std::fs::read_to_string(&trades).unwrap(), 2_000);
        oracle::fixed_windows(&input, 60_000, 60_000, 0).0
    };
    for workers in ["1", "2"] {
        let out = dir.path().join(format!("out{workers}"));
        let stderr = run_replay(&trades, &out, workers);
        assert!(stderr.contains("done: "), "{stderr}");
        // Nothing but complete, published files: no leftovers in _pending.
        let mut pending = Vec::new();
        crate::support::collect_files(&out.join("bars/_pending"), "inprogress", &mut pending);
        assert!(pending.is_empty(), "{pending:?}");

        let (names, mut rows) = read_parquet_dir(&out.join("bars"));
        assert_eq!(
            names,
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
                "trades"
            ]
        );
        rows.sort_by_key(|r| match (&r[0], &r[1]) {
            (Cell::Str(s), Cell::I64(t)) => (s.clone(), *t),
            _ => panic!(),
        });
        assert_eq!(rows.len(), expected.len());
        for (row, bar) in rows.iter().zip(&expected) {
            assert_eq!(
                (&row[0], &row[1], &row[2]),
                (
                    &Cell::Str(bar.sym.clone()),
                    &Cell::I64(bar.start),
                    &Cell::I64(bar.end)
                )
            );
            for (i, want) in bar.values[..6].iter().enumerate() {
                match (&row[3 + i], want) {
                    (Cell::F64(g), Some(w)) => assert!(
                        (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                        "{} {}: {g} vs {w}",
                        bar.sym,
                        names[3 + i]
                    ),
                    (Cell::Null, None) => {}
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(row[9], Cell::I64(bar.count));
        }
        // Hive-style date partitions.
        let dates: Vec<String> = std::fs::read_dir(out.join("bars"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('_'))
            .collect();
        assert!(dates.iter().all(|d| d.starts_with("date=20")), "{dates:?}");
    }
}

/// The same frames as Python writes them (`json.dumps` defaults, keys reversed, extra keys of
/// every JSON kind, escaped `/` and non-ASCII symbols; `tests/sql/json_layouts.py`) give the
/// bars the oracle computes from them, with 1 and 2 workers, invalid trades and malformed lines
/// included.
#[test]
fn frames_as_python_writes_them_give_the_oracles_bars() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let canonical = dir.path().join("canonical.jsonl");
    write_frames(
        &Frames {
            seed: 8,
            trades: 6000,
            malformed_rate: 0.01,
            ..Frames::default()
        },
        &canonical,
    );
    let trades = dir.path().join("trades.jsonl");
    crate::sql::run_script(
        &python,
        "json_layouts.py",
        &[
            "rewrite".as_ref(),
            canonical.as_os_str(),
            trades.as_os_str(),
        ],
    );
    let text = std::fs::read_to_string(&trades).unwrap();
    for layout in [
        r#"{"data": ["#,
        r#"{"type":"trade","data":[{"v":"#,
        r#""meta": {"src": "#,
        "\\u00e9",
        "\\/",
    ] {
        assert!(text.contains(layout), "no frame with {layout}");
    }
    let expected = oracle::fixed_windows(&oracle::read(&text, 2_000), 60_000, 60_000, 0).0;
    assert!(
        expected.iter().any(|b| b.sym == "S1\u{e9}") && expected.iter().any(|b| b.sym == "S2/")
    );
    for workers in ["1", "2"] {
        let out = dir.path().join(format!("out{workers}"));
        run_replay(&trades, &out, workers);
        let (_, rows) = read_parquet_dir(&out.join("bars"));
        crate::kafka::assert_bars_equal(&rows, &expected, &format!("{workers} worker(s)"));
    }
}
