use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::oracle;
use crate::support::{Cell, bin, read_parquet_dir, repo};

/// Frames with one trade every `gap_ms` of event time over `seconds`, symbols A/B/C.
fn steady_frames(path: &Path, seconds: i64, gap_ms: i64) {
    let start = 1_764_000_000_000i64;
    let mut out = String::new();
    let mut t = start;
    let mut i = 0;
    while t < start + seconds * 1000 {
        let sym = ["A", "B", "C"][i % 3];
        out.push_str(&format!(
            "{{\"data\":[{{\"p\":{}.5,\"s\":\"{sym}\",\"t\":{t},\"v\":{}}}],\"type\":\"trade\"}}\n",
            10 + i % 7,
            1 + i % 3
        ));
        t += gap_ms;
        i += 1;
    }
    std::fs::write(path, out).unwrap();
}

fn spec(dir: &Path, speed: f64, size: &str) -> std::path::PathBuf {
    let path = dir.join("spec.yaml");
    std::fs::write(
        &path,
        format!(
            "name: paced
sources:
  trades: {{ type: replay, path: {}, speed: {speed}, max_out_of_orderness: 0s }}
steps:
  bars:
    type: window
    input: trades
    window: {{ type: tumbling, size: {size} }}
    aggregates:
      open: {{ fn: first, field: price }}
      high: {{ fn: max, field: price }}
      low: {{ fn: min, field: price }}
      close: {{ fn: last, field: price }}
      volume: {{ fn: sum, field: volume }}
      vwap: {{ fn: vwap }}
      trades: {{ fn: count }}
sinks:
  out: {{ type: parquet, input: bars, path: {}, rolling: {{ max_age: 200ms }} }}
",
            dir.join("trades.jsonl").display(),
            dir.join("out").display()
        ),
    )
    .unwrap();
    path
}

fn sorted_rows(dir: &Path) -> Vec<Vec<Cell>> {
    let (_, mut rows) = read_parquet_dir(dir);
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    rows
}

#[test]
fn speed_paces_the_replay_by_event_time_without_changing_results() {
    let dir = tempfile::tempdir().unwrap();
    steady_frames(&dir.path().join("trades.jsonl"), 4, 50);
    let fast = Command::new(bin())
        .args(["run"])
        .arg(spec(dir.path(), 0.0, "1s"))
        .output()
        .unwrap();
    assert!(
        fast.status.success(),
        "{}",
        String::from_utf8_lossy(&fast.stderr)
    );
    let unpaced = sorted_rows(&dir.path().join("out"));
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();

    // 4 s of event time at 2× speed cannot take less than ~2 s.
    let started = Instant::now();
    let paced = Command::new(bin())
        .args(["run", "--workers", "2"])
        .arg(spec(dir.path(), 2.0, "1s"))
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        paced.status.success(),
        "{}",
        String::from_utf8_lossy(&paced.stderr)
    );
    assert!(
        elapsed >= Duration::from_millis(1800),
        "paced replay took only {elapsed:?}"
    );
    assert_eq!(sorted_rows(&dir.path().join("out")), unpaced);
}

#[test]
fn ctrl_c_publishes_complete_windows_only_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    steady_frames(&trades, 600, 100);
    let child = Command::new(bin())
        .args(["run"])
        .arg(spec(dir.path(), 1.0, "1s"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    let stopped_at = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(2),
        "took {:?} to stop",
        stopped_at.elapsed()
    );
    assert!(stderr.contains("stopped: "), "{stderr}");

    // Every published bar is complete: equal to the bar over the whole file.
    let expected = oracle::fixed_windows(
        &oracle::read(&std::fs::read_to_string(&trades).unwrap(), 0),
        1000,
        1000,
        0,
    )
    .0;
    let rows = sorted_rows(&dir.path().join("out"));
    assert!(
        rows.len() >= 2,
        "some windows completed before the stop: {rows:?}"
    );
    assert!(
        rows.len() < expected.len() / 2,
        "the replay was stopped early"
    );
    for row in &rows {
        let (Cell::Str(sym), Cell::I64(start)) = (&row[0], &row[1]) else {
            panic!()
        };
        let bar = expected
            .iter()
            .find(|b| &b.sym == sym && b.start == *start)
            .expect("a window of the input");
        assert_eq!(
            row[9],
            Cell::I64(bar.count),
            "{sym} [{start}] was published incomplete"
        );
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let out = Command::new(bin())
        .args(["run", "--log-format", "json", "specs/replay.yaml"])
        .current_dir(repo())
        .env("OUT_URL", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: Vec<&str> = stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!logs.is_empty(), "{stderr}");
    for l in logs {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{l}");
    }
}

#[test]
fn dead_letters_can_be_parquet_and_outputs_can_be_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    std::fs::write(
        &trades,
        "{\"data\":[{\"p\":1,\"s\":\"A\",\"t\":1000,\"v\":1},{\"p\":-1,\"s\":\"A\",\"t\":1001,\"v\":1}],\"type\":\"trade\"}\nnot json\n",
    )
    .unwrap();
    let text = format!(
        "name: mem
sources:
  trades: {{ type: replay, path: {} }}
steps:
  n:
    type: window
    input: trades
    window: {{ type: tumbling, size: 1m }}
    aggregates: {{ trades: {{ fn: count }} }}
sinks:
  raw: {{ type: parquet, input: trades, path: memory://dl-test/raw }}
  bars: {{ type: parquet, input: n, path: memory://dl-test/bars }}
dead_letters: {{ path: {}, format: parquet }}
",
        trades.display(),
        dir.path().join("dead").display()
    );
    crate::support::run_spec(&text, &[], 1, 1 << 20);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mem =
        tickflow::base::storage::Storage::open("memory://dl-test", rt.handle().clone()).unwrap();
    let names = mem.list().unwrap();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("raw/date=1970-01-01/") && n.ends_with(".parquet")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("bars/date=1970-01-01/")),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.contains("_pending") && n.ends_with(".inprogress")),
        "{names:?}"
    );

    let (cols, rows) = read_parquet_dir(&dir.path().join("dead"));
    assert_eq!(
        cols,
        ["source", "reason", "detail", "raw", "line", "received_at"]
    );
    let mut reasons: Vec<(String, i64)> = rows
        .iter()
        .map(|r| match (&r[1], &r[4]) {
            (Cell::Str(reason), Cell::I64(line)) => (reason.clone(), *line),
            _ => panic!(),
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("invalid_price".to_string(), 1),
            ("malformed_frame".to_string(), 2)
        ]
    );
    assert_eq!(
        rows.iter()
            .find(|r| r[1] == Cell::Str("invalid_price".into()))
            .unwrap()[3],
        Cell::Str("{\"p\":-1,\"s\":\"A\",\"t\":1001,\"v\":1}".into())
    );
}
