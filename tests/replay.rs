use std::process::Command;

use crate::oracle;
use crate::support::{Cell, Frames, bin, read_parquet_dir, repo, write_frames};

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
        let result = Command::new(bin())
            .args(["run", "specs/replay.yaml", "--workers", workers])
            .current_dir(repo())
            .env("TRADES_FILE", &trades)
            .env("OUT_URL", &out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(result.status.success(), "{stderr}");
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
