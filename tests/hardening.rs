use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::sql::python;
use crate::support::{Cell, bin, read_dead_letters, read_parquet_dir, repo};

/// Runs `cmd` and waits at most `limit`; a process still running then is killed and the test
/// fails (a hang is a defect, never a slow pass).
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tickflow");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap();
            panic!(
                "still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

fn replay_spec(dir: &Path, trades: &Path, extra_sink: &str) -> std::path::PathBuf {
    let spec = format!(
        "name: hardening
sources:
  trades: {{ type: replay, path: {trades} }}
steps:
  bars:
    type: window
    input: trades
    window: {{ type: tumbling, size: 1m }}
    aggregates:
      open: {{ fn: first, field: price }}
      close: {{ fn: last, field: price }}
      volume: {{ fn: sum, field: volume }}
      trades: {{ fn: count }}
sinks:
  out: {{ type: parquet, input: bars, path: {out}/bars{extra_sink} }}
dead_letters: {{ path: {out}/dead }}
",
        trades = trades.display(),
        out = dir.display(),
    );
    let path = dir.join("spec.yaml");
    std::fs::write(&path, spec).unwrap();
    path
}

fn run(spec: &Path) -> Output {
    output_within(
        Command::new(bin()).args(["run", "--no-status"]).arg(spec),
        Duration::from_secs(60),
    )
}

fn frame(trades: &[(&str, f64, i64, f64)]) -> String {
    let items: Vec<String> = trades
        .iter()
        .map(|(s, p, t, v)| {
            format!(
                "{{\"p\":{p},\"s\":{},\"t\":{t},\"v\":{v}}}",
                serde_json::to_string(s).unwrap()
            )
        })
        .collect();
    format!("{{\"data\":[{}],\"type\":\"trade\"}}\n", items.join(","))
}

/// A year-9999 trade must not turn the rest of the input late: it is rejected as
/// `future_timestamp` and the bars equal those of the input without it.
#[test]
fn one_far_future_trade_does_not_poison_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let base = 1_764_000_000_000i64;
    let mut clean = String::new();
    let mut poisoned = String::new();
    for i in 0..600 {
        let f = frame(&[("AAPL", 100.0 + i as f64, base + i * 1000, 1.0)]);
        clean.push_str(&f);
        poisoned.push_str(&f);
        if i == 10 {
            poisoned.push_str(&frame(&[("AAPL", 1.0, 253_402_300_799_999, 1.0)]));
        }
    }
    let mut outputs = Vec::new();
    for (name, text) in [("clean", &clean), ("poisoned", &poisoned)] {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let trades = sub.join("trades.jsonl");
        std::fs::write(&trades, text).unwrap();
        let out = run(&replay_spec(&sub, &trades, ""));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (_, mut rows) = read_parquet_dir(&sub.join("bars"));
        rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        outputs.push((rows, read_dead_letters(&sub.join("dead"))));
    }
    let (clean_rows, (clean_dead, _)) = &outputs[0];
    let (rows, (dead, letters)) = &outputs[1];
    assert_eq!(
        clean_rows.len(),
        10,
        "600 s of trades make 10 one-minute bars"
    );
    assert_eq!(rows, clean_rows);
    assert!(clean_dead.is_empty(), "{clean_dead:?}");
    assert_eq!(dead.get("future_timestamp"), Some(&1), "{dead:?}");
    assert_eq!(dead.get("late"), None, "{dead:?}");
    assert!(
        letters[0]["detail"]
            .as_str()
            .unwrap()
            .contains("max_future")
    );
}

/// Symbols are untrusted: a 230-byte symbol (file name too long before) and a 50 MB one are
/// dead-lettered as `invalid_symbol`, the run publishes everything else, and stderr stays small.
#[test]
fn long_symbols_are_rejected_and_never_printed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let base = 1_764_000_000_000i64;
    let mut text = String::new();
    let long = "L".repeat(230);
    let huge = "H".repeat(50_000_000);
    for i in 0..300 {
        text.push_str(&frame(&[("MSFT", 10.0, base + i * 1000, 1.0)]));
        if i == 5 {
            text.push_str(&frame(&[(&long, 1.0, base + i * 1000, 1.0)]));
            text.push_str(&frame(&[(&huge, 1.0, base + i * 1000, 1.0)]));
        }
    }
    let trades = dir.path().join("trades.jsonl");
    std::fs::write(&trades, text).unwrap();
    let spec = replay_spec(dir.path(), &trades, ", partition_by: [symbol]");
    let out = run(&spec);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.len() < 20_000,
        "stderr is {} bytes",
        out.stderr.len()
    );
    let (counts, _) = read_dead_letters(&dir.path().join("dead"));
    assert_eq!(counts.get("invalid_symbol"), Some(&2), "{counts:?}");
    let (_, rows) = read_parquet_dir(&dir.path().join("bars"));
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r[0] == Cell::Str("MSFT".into())));
}

/// Partition folders use Hive's escaping, so DuckDB with hive partitioning (its default for
/// `symbol=...` folders) reads back exactly the symbols that went in — also awkward ones.
#[test]
fn partition_folders_round_trip_through_duckdb_hive_partitioning() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let base = 1_764_000_000_000i64;
    let symbols = [
        "BINANCE:BTCUSDT",
        "A/B",
        "A_B",
        " ",
        "x%2Fy",
        "a=b",
        "OANDA:EUR_USD",
        "q?#*[]{}^'\"\\",
        "ÄÖÜ",
        // Folder names readers take for NULL, as strings.
        "NULL",
        "null",
        "__HIVE_DEFAULT_PARTITION__",
    ];
    let mut text = String::new();
    for i in 0..120 {
        let trades: Vec<(&str, f64, i64, f64)> = symbols
            .iter()
            .map(|s| (*s, 1.0, base + i * 1000, 1.0))
            .collect();
        text.push_str(&frame(&trades));
    }
    let trades = dir.path().join("trades.jsonl");
    std::fs::write(&trades, text).unwrap();
    let out = run(&replay_spec(
        dir.path(),
        &trades,
        ", partition_by: [symbol]",
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = "import duckdb, json, sys
rows = duckdb.sql(f\"select distinct symbol from read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning=true)\").fetchall()
print(json.dumps(sorted(r[0] for r in rows)))
";
    let check = Command::new(python)
        .args(["-c", script])
        .arg(dir.path().join("bars"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let got: Vec<String> = serde_json::from_slice(&check.stdout).unwrap();
    let mut want: Vec<String> = symbols.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

/// The exit status and stderr (piped) of a run that must stop by itself within a minute.
fn stopped(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

/// A replay file or object rewritten with the same length while it is read (a careless copy
/// over an archive) stops the run with an error naming it, instead of mixing two versions into
/// the bars: a file by its modification time, an object in a bucket by its ETag (If-Match on
/// every ranged read).
#[test]
fn a_replay_input_rewritten_mid_run_is_an_error_naming_it() {
    use object_store::ObjectStoreExt;
    let dir = tempfile::tempdir().unwrap();
    let base = 1_764_000_000_000i64;
    let mut text = String::new();
    for i in 0..400_000i64 {
        text.push_str(&frame(&[("AAPL", 1.0, base + i * 10, 1.0)]));
    }
    // The same length, other prices.
    let rewritten = text.replace("\"p\":1,", "\"p\":2,");
    assert_eq!(rewritten.len(), text.len());
    let emulator = crate::gcs::Emulator::start();
    emulator.bucket("archive");
    let store = emulator.store("archive");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let object = object_store::path::Path::from("trades.jsonl");
    rt.block_on(store.put(&object, text.clone().into()))
        .unwrap();
    let trades = dir.path().join("trades.jsonl");
    std::fs::write(&trades, &text).unwrap();
    for (input, rewrite, message) in [
        (
            trades.display().to_string(),
            Box::new(|| {
                // In place: the same inode, the same length.
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&trades)
                    .unwrap();
                f.write_all_at(rewritten.as_bytes(), 0).unwrap();
            }) as Box<dyn Fn()>,
            "was modified while being read",
        ),
        (
            "gs://archive/trades.jsonl".to_string(),
            Box::new(|| {
                rt.block_on(store.put(&object, rewritten.clone().into()))
                    .unwrap();
            }),
            "was replaced while being read",
        ),
    ] {
        let spec = std::fs::read_to_string(replay_spec(dir.path(), Path::new(&input), ""))
            .unwrap()
            .replace("type: replay,", "type: replay, speed: 1000.0,");
        let path = dir.path().join("paced.yaml");
        std::fs::write(&path, spec).unwrap();
        let mut child = Command::new(bin())
            .args(["run", "--no-status"])
            .arg(&path)
            .env("GCS_EMULATOR_URL", emulator.url())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        rewrite();
        let (status, stderr) = stopped(&mut child);
        assert_eq!(status.code(), Some(1), "{input}: {stderr}");
        assert!(
            stderr.contains(message) && stderr.contains(&input),
            "{input}: {stderr}"
        );
    }
}

/// A replay file truncated while it is read gives a clear error (exit 1), never SIGBUS; the
/// dead letters read before are kept.
#[test]
fn a_replay_file_truncated_mid_run_is_an_error_not_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    let base = 1_764_000_000_000i64;
    let mut f = std::io::BufWriter::new(std::fs::File::create(&trades).unwrap());
    for i in 0..400_000i64 {
        // One malformed line early on: a dead letter that must survive the failure.
        if i == 3 {
            f.write_all(b"not json\n").unwrap();
        }
        f.write_all(frame(&[("AAPL", 1.0, base + i * 10, 1.0)]).as_bytes())
            .unwrap();
    }
    drop(f);
    let spec = std::fs::read_to_string(replay_spec(dir.path(), &trades, ""))
        .unwrap()
        .replace("type: replay,", "type: replay, speed: 1000.0,");
    let path = dir.path().join("paced.yaml");
    std::fs::write(&path, spec).unwrap();
    let mut run = crate::support::LoggedChild::spawn(
        Command::new(bin()).args(["run", "--no-status"]).arg(&path),
    );
    // Truncated once the run reads (it takes about 4 s, paced): a loaded machine may take
    // longer than any fixed delay to start it.
    run.wait_for_log("starting pipeline", 1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(700));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&trades)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let (status, stderr) = run.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("shrank while being read"), "{stderr}");
    let (counts, _) = read_dead_letters(&dir.path().join("dead"));
    assert_eq!(counts.get("malformed_frame"), Some(&1), "{counts:?}");
}

/// Two sinks (or a sink and the dead letters) in one folder would overwrite each other.
#[test]
fn overlapping_output_folders_are_a_validate_error() {
    let dir = tempfile::tempdir().unwrap();
    let trades = repo().join("specs/sample/trades.jsonl");
    let spec = replay_spec(dir.path(), &trades, "")
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(&spec).unwrap().replace(
        "dead_letters: {",
        &format!(
            "  again: {{ type: parquet, input: bars, path: {}/./bars/ }}\ndead_letters: {{",
            dir.path().display()
        ),
    );
    std::fs::write(&spec, &text).unwrap();
    let out = Command::new(bin())
        .arg("validate")
        .arg(&spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("sinks.again.path: ")
            && stderr.contains("overlaps the folder of sink `out`"),
        "{stderr}"
    );
    // Dead letters inside a sink's folder: the same.
    let text = text
        .replace(
            &format!(
                "  again: {{ type: parquet, input: bars, path: {}/./bars/ }}\n",
                dir.path().display()
            ),
            "",
        )
        .replace("/dead }", "/bars/dead }");
    std::fs::write(&spec, &text).unwrap();
    let out = Command::new(bin())
        .arg("validate")
        .arg(&spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("dead_letters.path: "), "{stderr}");
}

/// `${VAR}` values are data: one scalar, whatever they contain.
#[test]
fn environment_values_cannot_change_the_structure_of_a_spec() {
    let dir = tempfile::tempdir().unwrap();
    let trades = repo().join("specs/sample/trades.jsonl");
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: env   # ${{NOT_SET_IN_A_COMMENT}}
sources:
  trades: {{ type: replay, path: {} }}
steps:
  bars:
    type: window
    input: trades
    window: {{ type: tumbling, size: ${{SIZE}} }}
    aggregates: {{ n: {{ fn: count }} }}
sinks:
  out: {{ type: parquet, input: bars, path: ${{OUT}} }}
",
            trades.display()
        ),
    )
    .unwrap();
    let nasty = [
        "x\nsinks:\n  evil: {type: parquet, input: bars, path: /tmp/evil}",
        "out #truncated?",
        "a: b",
        "quote\"d'",
        "{braces}",
    ];
    for value in nasty {
        let out_dir = dir.path().join(value.replace('/', "_"));
        let out = Command::new(bin())
            .args(["validate"])
            .arg(&spec)
            .env("SIZE", "1m")
            .env("OUT", &out_dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{value:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 sink(s)"), "{value:?}: {stdout}");
    }
    // The value lands in the path whole (a `#` does not cut it).
    let out_dir = dir.path().join("out #kept");
    let out = output_within(
        Command::new(bin())
            .args(["run", "--no-status"])
            .arg(&spec)
            .env("SIZE", "1m")
            .env("OUT", &out_dir),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!read_parquet_dir(&out_dir).1.is_empty());
}

/// Bounds that keep a careless command line or spec from eating the machine.
#[test]
fn resource_bounds_are_clear_errors() {
    // --workers
    let out = Command::new(bin())
        .args(["run", "specs/replay.yaml", "--workers", "3000"])
        .current_dir(repo())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("from 1 to 1024"), "{stderr}");
    // plugin check /dev/zero
    let out = output_within(
        Command::new(bin()).args(["plugin", "check", "/dev/zero"]),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    // a plugin that is not built yet says how to build it
    let out = Command::new(bin())
        .args(["plugin", "check", "plugins/dist/no-such-model.wasm"])
        .current_dir(repo())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run it first") && stderr.contains("plugins/build"),
        "{stderr}"
    );
}

/// A spec with 200k keys is read in linear time (the duplicate-key check was quadratic: 400k
/// keys took 34 s); one past the YAML parser's node budget is refused with words, not a hang.
#[test]
fn huge_specs_are_read_in_linear_time_or_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for (keys, expect) in [
        (120_000, "unknown field `x`"),
        (400_000, "the spec is too large for a pipeline spec"),
    ] {
        let mut text = String::from("name: huge\nsources: {}\nsinks: {}\nx:\n");
        for i in 0..keys {
            text.push_str(&format!("  k{i}: {i}\n"));
        }
        let spec = dir.path().join("spec.yaml");
        std::fs::write(&spec, text).unwrap();
        let out = output_within(
            Command::new(bin()).arg("validate").arg(&spec),
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr.contains(expect), "{keys} keys: {stderr}");
    }
}

/// Logs written to a file or pipe carry no colour codes.
#[test]
fn logs_off_a_terminal_have_no_ansi_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = output_within(
        Command::new(bin())
            .args(["run", "specs/replay.yaml"])
            .current_dir(repo())
            .env("OUT_URL", dir.path())
            .env_remove("TRADES_FILE"),
        Duration::from_secs(60),
    );
    assert!(out.status.success());
    assert!(
        !out.stderr.contains(&0x1b),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("INFO"));
}

/// An output folder that cannot be written is reported at the start, not after the run.
#[test]
fn a_read_only_output_folder_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    // As root, permissions do not stop writes: a read-only mount does. The output folder
    // exists (made while the mount was writable), so only writing can fail.
    let mount = |opts: &str| {
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&ro)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !mount("size=1m") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and can mount"
        );
        eprintln!("skipping: cannot mount a folder here");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&ro);
    std::fs::create_dir_all(ro.join("bars")).unwrap();
    let remounted = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&ro)
        .status()
        .is_ok_and(|s| s.success());
    assert!(remounted, "remounting read-only");
    let trades = repo().join("specs/sample/trades.jsonl");
    let spec = std::fs::read_to_string(replay_spec(dir.path(), &trades, ""))
        .unwrap()
        .replace(
            &format!("{}/bars", dir.path().display()),
            &ro.join("bars").display().to_string(),
        );
    let spec_path = dir.path().join("ro.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let started = Instant::now();
    let out = run(&spec_path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write to the folder"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// One slow client (a byte every 4 s) and 300 idle connections (more than the server's 256)
/// must not take `/metrics` or the probes offline: the oldest idle connection makes room, so a
/// probe every second and the scrapes are answered at once.
#[test]
fn slow_and_idle_clients_do_not_block_metrics() {
    use std::net::TcpStream;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(bin())
        .args([
            "run",
            "specs/quickstart.yaml",
            "--no-status",
            "--for",
            "30s",
            "--metrics-addr",
            &addr,
        ])
        .current_dir(repo())
        .env_remove("FINNHUB_TOKEN")
        .env("OUT_URL", dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(child);
    let scrape = || -> std::io::Result<String> {
        let mut s = TcpStream::connect(&addr)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while scrape().is_err() {
        assert!(
            Instant::now() < deadline,
            "the metrics server never came up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // 300 idle connections and a slowloris.
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert!(idle.len() >= 280);
    let slow_addr = addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow_stop = std::sync::Arc::clone(&stop);
    let slow = std::thread::spawn(move || {
        let Ok(mut s) = TcpStream::connect(&slow_addr) else {
            return;
        };
        for b in b"GET /metrics HTTP/1.1\r\n" {
            if slow_stop.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(4));
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let probe = |path: &str| -> std::io::Result<String> {
        let mut s = TcpStream::connect(&addr)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        Ok(reply)
    };
    for i in 0..8 {
        // More idle connections keep coming, as from a misbehaving client.
        let _more: Vec<TcpStream> = (0..40)
            .filter_map(|_| TcpStream::connect(&addr).ok())
            .collect();
        let path = ["/healthz", "/readyz"][i % 2];
        let reply = probe(path).unwrap_or_else(|e| panic!("probe {i} of {path} not answered: {e}"));
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        let body = scrape().expect("a scrape is answered within 3 s");
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.contains("tickflow_"), "{body}");
        std::thread::sleep(Duration::from_secs(1));
    }
    // What is not a scrape is answered in HTTP's own words.
    let raw = |request: &[u8]| -> String {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(request).unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply
    };
    let head = raw(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    assert!(
        !head.contains("Content-Length: 0\r\n"),
        "HEAD gives GET's length: {head}"
    );
    let garbage = raw(b"\x16\x03\x01 hello\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400 Bad Request"), "{garbage}");
    let post = raw(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        post.starts_with("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD"),
        "{post}"
    );
    let missing = raw(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 404 Not Found"), "{missing}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(idle);
    let _ = slow.join();
}

/// On a terminal, Ctrl-C starts a clean line (the terminal echoes `^C` at the end of the
/// status line) and the first Ctrl-C stops the run cleanly.
#[test]
fn ctrl_c_on_a_terminal_starts_a_clean_line() {
    let script = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
out, t0, sent = b"", time.time(), False
while time.time() - t0 < 60:
    if not sent and time.time() - t0 > 4:
        os.write(fd, b"\x03")
        sent = True
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let dir = tempfile::tempdir().unwrap();
    let out = output_within(
        Command::new("python3")
            .args(["-c", script, bin(), "run", "specs/quickstart.yaml"])
            .current_dir(repo())
            .env_remove("FINNHUB_TOKEN")
            .env("OUT_URL", dir.path()),
        Duration::from_secs(90),
    );
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(
        screen.contains("trades "),
        "the status line was shown: {screen}"
    );
    // The message starts a cleared line, wherever the cursor (and the echoed `^C`) was.
    assert!(
        screen.contains("\r\x1b[2Kstopping: publishing complete windows"),
        "{screen:?}"
    );
}
