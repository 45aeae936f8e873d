use std::process::Command;

use crate::support::{Frames, bin, repo, write_frames};

/// Runs `tests/sql/SCRIPT` with the test Python and `args`; its stdout (it must succeed).
pub fn run_script<S: AsRef<std::ffi::OsStr>>(python: &str, script: &str, args: &[S]) -> String {
    let out = Command::new(python)
        .arg(repo().join("tests/sql").join(script))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The Python with DuckDB that `scripts/test` prepares, or None (then the test is skipped
/// outside CI and fails under `CI=true`).
pub fn python() -> Option<String> {
    if let Ok(p) = std::env::var("TICKFLOW_TEST_PYTHON") {
        return Some(p);
    }
    let ok = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("python3".into());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "DuckDB is needed under CI: run the tests with scripts/test"
    );
    eprintln!("skipping: no Python with duckdb (scripts/test installs one)");
    None
}

#[test]
fn replay_bars_equal_an_independent_duckdb_computation() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    write_frames(
        &Frames {
            seed: 21,
            trades: 6000,
            ..Frames::default()
        },
        &trades,
    );
    // Run 3 moves every output file to disk once it passes 1 KiB and uploads it in parts; run 4
    // would too, but its temporary folder does not exist: files stay in memory, with a warning.
    let no_tmp = dir.path().join("no-such-tmp");
    for (n, workers, spill_at, tmpdir) in [
        (1, "1", None, None),
        (2, "2", None, None),
        (3, "2", Some("1024"), None),
        (4, "2", Some("1024"), Some(&no_tmp)),
    ] {
        let out = dir.path().join(format!("out{n}"));
        let mut cmd = Command::new(bin());
        cmd.args(["run", "specs/replay.yaml", "--workers", workers])
            .current_dir(repo())
            .env("TRADES_FILE", &trades)
            .env("OUT_URL", &out);
        if let Some(at) = spill_at {
            cmd.env("TICKFLOW_SPILL_AT", at);
        }
        if let Some(tmp) = tmpdir {
            cmd.env("TMPDIR", tmp);
        }
        let run = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(
            stderr.contains("kept in memory") && stderr.contains("no-such-tmp"),
            tmpdir.is_some(),
            "run {n}: {stderr}"
        );
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let check = Command::new(&python)
            .arg(repo().join("tests/sql/replay_bars.py"))
            .arg(&trades)
            .arg(out.join("bars"))
            .arg("2000")
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success(),
            "{workers} worker(s): {report}{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(report.contains("bars match"), "{report}");
    }
}
