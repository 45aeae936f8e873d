use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kafka::{self, brokers, create_topic, latest_checkpoint, produce_trades};
use crate::oracle;
use crate::support::{bin, repo};

const SPEC: &str = "specs/examples/market-bars-to-kafka.yaml";

/// Every record of `topic` as an independent client reads it: confluent-kafka (the Python
/// binding of librdkafka) with `isolation` (`read_committed` or `read_uncommitted`). Each is a
/// JSON object: partition, offset, key, value, txn (the tag header).
pub fn read_with_isolation(brokers: &str, topic: &str, isolation: &str) -> Vec<serde_json::Value> {
    let python = crate::sql::python().expect("Python with confluent-kafka (scripts/test)");
    let out = Command::new(python)
        .arg(repo().join("tests/sql/read_kafka.py"))
        .args([brokers, topic, isolation])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (symbol, window start) of a bar record.
fn bar_key(record: &serde_json::Value) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(record["value"].as_str().unwrap()).unwrap();
    (
        v["symbol"].as_str().unwrap().to_string(),
        v["window_start"].as_str().unwrap().to_string(),
    )
}

/// The topic's bars (JSON rows of the Kafka sink) are exactly the oracle's: each once, keyed by
/// symbol, nothing else.
pub fn assert_topic_bars_exactly_once(
    records: &[serde_json::Value],
    expected: &[oracle::Bar],
    context: &str,
) {
    let mut seen: BTreeMap<(String, String), serde_json::Value> = BTreeMap::new();
    for r in records {
        let v: serde_json::Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
        let key = bar_key(r);
        assert_eq!(r["key"].as_str(), Some(key.0.as_str()), "{context}: key");
        assert!(r["txn"].is_string(), "{context}: no transaction tag: {r}");
        if let Some(first) = seen.insert(key.clone(), v) {
            panic!("{context}: bar {key:?} twice: {first} and {r}");
        }
    }
    for bar in expected {
        let key = (
            bar.sym.clone(),
            tickflow::base::record::format_ts(bar.start),
        );
        let Some(v) = seen.remove(&key) else {
            panic!("{context}: bar {key:?} is missing");
        };
        for (i, col) in ["open", "high", "low", "close", "volume", "vwap"]
            .iter()
            .enumerate()
        {
            match (v[col].as_f64(), bar.values[i]) {
                (Some(g), Some(w)) => assert!(
                    (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "{context}: {key:?} {col}: {g} vs {w}"
                ),
                (None, None) => {}
                other => panic!("{context}: {key:?} {col}: {other:?}"),
            }
        }
        assert_eq!(v["trades"].as_i64(), Some(bar.count), "{context}: {key:?}");
    }
    assert!(
        seen.is_empty(),
        "{context}: bars the oracle does not have: {:?}",
        seen.keys().take(5).collect::<Vec<_>>()
    );
}

/// The spec `--bounded` on `workers` with checkpoints every 300 ms under `out`.
fn run(
    brokers: &str,
    trades: &str,
    bars: &str,
    out: &std::path::Path,
    workers: &str,
    failpoint: Option<&str>,
) -> Child {
    let mut cmd = Command::new(bin());
    cmd.args(["run", SPEC, "--bounded", "--workers", workers])
        .current_dir(repo())
        .env("KAFKA_BROKERS", brokers)
        .env("TRADES_TOPIC", trades)
        .env("BARS_TOPIC", bars)
        .env("OUT_URL", out)
        .env("CHECKPOINT_INTERVAL", "300ms")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(f) = failpoint {
        cmd.env("TICKFLOW_FAILPOINT", f);
    }
    cmd.spawn().unwrap()
}

fn finish(child: Child) -> (std::process::ExitStatus, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// kill -9 at random points of the checkpoint cycle on 2 and then 3 workers, then a crash at the
/// exact point between a manifest and the commits of its transactions (on 2 workers), then a
/// run on 1 worker to the end: a `read_committed` consumer reads every bar of the oracle exactly
/// once, and nothing else. The `read_uncommitted` consumer sees the aborted transactions' bars
/// too (so the same check on it fails: the test can fail).
#[test]
fn kill_9_and_a_crash_between_manifest_and_commit_leave_every_bar_in_kafka_exactly_once() {
    let Some(brokers) = brokers() else { return };
    let trades = create_topic(&brokers, 4);
    let bars = create_topic(&brokers, 3);
    produce_trades(&brokers, &trades, 200_000);
    let records = kafka::read_topic(&brokers, &trades, 4);
    let (expected, _, _) = kafka::kafka_oracle(&records, 2_000);
    assert!(expected.len() > 300, "{}", expected.len());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let chk = out.join("checkpoints");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;

    let mut kills = 0;
    for (i, workers) in ["2", "3"].iter().enumerate() {
        let before = latest_checkpoint(&chk);
        let mut child = run(&brokers, &trades, &bars, &out, workers, None);
        let deadline = Instant::now() + Duration::from_secs(120);
        while latest_checkpoint(&chk) <= before
            && child.try_wait().unwrap().is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis((seed >> (i * 8)) % 600));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let (_, stderr) = finish(child);
        if i == 1 {
            // 3 workers after 2: slot 2 is new, and its id is recorded for the next run.
            assert!(stderr.contains("restored from checkpoint"), "{stderr}");
        }
    }
    assert!(kills >= 1, "seed {seed}: the runs were killed mid-way");

    // The leader aborts right after writing a manifest that lists transactions, before any
    // worker commits one: only the restart can make those records visible.
    let child = run(
        &brokers,
        &trades,
        &bars,
        &out,
        "2",
        Some("crash-after-manifest"),
    );
    let (status, stderr) = finish(child);
    assert!(!status.success(), "the failpoint crashed the run: {stderr}");
    assert!(
        stderr.contains("failpoint crash-after-manifest"),
        "{stderr}"
    );
    // 3 workers → 2: the third worker's id was fenced (its open transaction aborted).
    assert!(
        stderr.contains("fenced a writer of the last generation"),
        "{stderr}"
    );

    let (status, stderr) = finish(run(&brokers, &trades, &bars, &out, "1", None));
    assert!(status.success(), "{stderr}");

    let committed = read_with_isolation(&brokers, &bars, "read_committed");
    assert_topic_bars_exactly_once(&committed, &expected, &format!("seed {seed}"));
    assert!(
        stderr.contains("was never committed: its records are written again"),
        "{stderr}"
    );
    // The aborted transactions are in the log: a reader that ignores transactions sees more.
    let all = read_with_isolation(&brokers, &bars, "read_uncommitted");
    assert!(
        all.len() > committed.len(),
        "seed {seed}: {} records read uncommitted vs {} committed",
        all.len(),
        committed.len()
    );
    let mut keys: Vec<_> = all.iter().map(bar_key).collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert!(
        keys.len() < n,
        "seed {seed}: the aborted records repeat committed bars"
    );
    // The Parquet bars of the same runs are exactly the oracle's too.
    let (_, rows) = crate::support::read_parquet_dir(&out.join("bars"));
    kafka::assert_bars_equal(&rows, &expected, &format!("seed {seed}: Parquet"));
}

/// The broker restarts mid-run (our own broker, so the other tests are not disturbed): the run
/// rides through it or stops with an error; restarted until it finishes, the `read_committed`
/// consumer reads every bar exactly once.
#[test]
fn a_broker_restart_mid_run_leaves_every_bar_in_kafka_exactly_once() {
    if brokers().is_none() {
        return;
    }
    let broker = kafka::OwnBroker {
        port: 19292,
        data: tempfile::tempdir().unwrap(),
    };
    broker.start();
    let brokers = "127.0.0.1:19292".to_string();
    let trades = create_topic(&brokers, 4);
    let bars = create_topic(&brokers, 3);
    produce_trades(&brokers, &trades, 200_000);
    let records = kafka::read_topic(&brokers, &trades, 4);
    let (expected, _, _) = kafka::kafka_oracle(&records, 2_000);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let chk = out.join("checkpoints");

    let mut child = run(&brokers, &trades, &bars, &out, "2", None);
    let deadline = Instant::now() + Duration::from_secs(120);
    while latest_checkpoint(&chk) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    broker.start();
    let mut runs = 1;
    loop {
        let (status, stderr) = finish(child);
        if status.success() {
            break;
        }
        assert!(runs < 4, "{stderr}");
        eprintln!("run {runs} stopped (restarting it): {stderr}");
        runs += 1;
        child = run(&brokers, &trades, &bars, &out, "2", None);
    }
    let committed = read_with_isolation(&brokers, &bars, "read_committed");
    assert_topic_bars_exactly_once(&committed, &expected, &format!("{runs} run(s)"));
}

/// Exactly once needs checkpoints, a transaction timeout longer than two checkpoint intervals
/// and no longer than the broker allows: each mistake is an error that names it.
#[test]
fn transaction_settings_the_broker_or_the_checkpoints_cannot_honour_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = |sink: &str, checkpoints: &str| {
        let path = dir
            .path()
            .join(format!("spec-{}.yaml", rand::random::<u32>()));
        std::fs::write(
            &path,
            format!(
                "name: t\nsources:\n  trades: {{ type: kafka, brokers: \"{}\", topic: trades }}\nsinks:\n  out: {{ type: kafka, input: trades, brokers: \"{}\", topic: out, {sink} }}\n{checkpoints}",
                brokers().unwrap_or_else(|| "127.0.0.1:9092".into()),
                brokers().unwrap_or_else(|| "127.0.0.1:9092".into()),
            ),
        )
        .unwrap();
        path
    };
    let chk = format!(
        "checkpoints: {{ path: \"{}\", interval: 1m }}\n",
        dir.path().join("chk").display()
    );
    for (sink, checkpoints, want) in [
        (
            "delivery: exactly_once",
            "",
            "exactly_once needs `checkpoints:`",
        ),
        (
            "transaction_timeout: 90s",
            chk.as_str(),
            "shorter than two checkpoint intervals",
        ),
        (
            "delivery: at_least_once, transactional_id: x",
            chk.as_str(),
            "only an exactly-once sink has transactions",
        ),
    ] {
        let out = Command::new(bin())
            .args(["validate"])
            .arg(spec(sink, checkpoints))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sink}: {stderr}");
        assert!(stderr.contains(want), "{sink}: {stderr}");
    }
    // The broker's limit (transaction.max.timeout.ms, 15 minutes by default) is asked at start.
    let Some(brokers) = brokers() else { return };
    let topic = create_topic(&brokers, 1);
    let path = dir.path().join("long.yaml");
    std::fs::write(
        &path,
        format!(
            "name: t\nsources:\n  trades: {{ type: kafka, brokers: \"{brokers}\", topic: {topic} }}\nsinks:\n  out: {{ type: kafka, input: trades, brokers: \"{brokers}\", topic: {topic}-out, transaction_timeout: 20m }}\ncheckpoints: {{ path: \"{}\", interval: 1m }}\n",
            dir.path().join("chk2").display()
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["run", "--bounded"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "transaction_timeout 20m is longer than the broker's transaction.max.timeout.ms (15m)"
        ),
        "{stderr}"
    );
}
