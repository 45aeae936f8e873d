use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder};
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt};

use crate::sql::python;
use crate::support::{Frames, bin, repo, write_frames};

/// The project's GCS emulator (deploy/local/gcs_emulator.py) on a free port, stopped on drop.
pub struct Emulator {
    child: Child,
    pub port: u16,
}

impl Emulator {
    pub fn start() -> Emulator {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let child = Command::new("python3")
            .arg(repo().join("deploy/local/gcs_emulator.py"))
            .args(["--port", "0", "--port-file"])
            .arg(&port_file)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the GCS emulator");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return Emulator { child, port };
            }
            assert!(Instant::now() < deadline, "the GCS emulator did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A raw HTTP request; returns (status, body).
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap();
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, body.to_string())
    }

    pub fn bucket(&self, name: &str) {
        let (status, body) = self.request("PUT", &format!("/{name}"), "");
        assert_eq!(status, 200, "{body}");
    }

    pub fn fault(&self, json: &str) {
        let (status, body) = self.request("POST", "/_emulator/faults", json);
        assert_eq!(status, 200, "{body}");
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.request("GET", "/_emulator/stats", "").1).unwrap()
    }

    /// An object_store client of `bucket` on the emulator (the XML API, as in production).
    pub fn store(&self, bucket: &str) -> GoogleCloudStorage {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = serde_json::json!({
            "gcs_base_url": self.url(),
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        });
        GoogleCloudStorageBuilder::new()
            .with_bucket_name(bucket)
            .with_service_account_key(key.to_string())
            .with_client_options(ClientOptions::new().with_allow_http(true))
            .build()
            .unwrap()
    }

    /// Copies every object under `prefix` of `bucket` to `dir` (listed and fetched through the
    /// XML API); returns their names.
    pub fn download(&self, bucket: &str, prefix: &str, dir: &Path) -> Vec<String> {
        let store = self.store(bucket);
        let rt = runtime();
        rt.block_on(async {
            let prefix = object_store::path::Path::from(prefix);
            let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
            let mut names = Vec::new();
            for m in metas {
                let rel = m.location.as_ref()[prefix.as_ref().len()..].trim_start_matches('/');
                let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
                let path = dir.join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, bytes).unwrap();
                names.push(rel.to_string());
            }
            names.sort();
            names
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_emulator_passes_object_stores_own_conformance_suite() {
    use object_store::integration::*;
    let emulator = Emulator::start();
    emulator.bucket("conformance");
    let store = emulator.store("conformance");
    runtime().block_on(async {
        put_get_delete_list(&store).await;
        list_with_offset_exclusivity(&store).await;
        list_uses_directories_correctly(&store).await;
        list_with_delimiter(&store).await;
        rename_and_copy(&store).await;
        copy_if_not_exists(&store).await;
        copy_rename_nonexistent_object(&store).await;
        stream_get(&store).await;
        multipart(&store, &store).await;
        multipart_with_opts(&store, &store).await;
        multipart_put_part_out_of_order(&store, &store).await;
        multipart_race_condition(&store, true).await;
        multipart_out_of_order(&store).await;
        list_paginated(&store, &store).await;
        get_opts(&store).await;
        put_opts(&store, true).await;
        put_get_attributes(&store).await;
        // What object_store's GCS tests check besides the suite: missing objects and buckets.
        let missing = object_store::path::Path::from("no/such/object");
        let err = store.get(&missing).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        let err = store.delete(&missing).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        let err = emulator
            .store("no-such-bucket")
            .put(&missing, "x".into())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
    });
}

fn replay_to(emulator: &Emulator, trades: &Path, out_url: &str) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.args(["run", "specs/replay.yaml", "--workers", "2"])
        .current_dir(repo())
        .env("TRADES_FILE", trades)
        .env("OUT_URL", out_url)
        .env("GCS_EMULATOR_URL", emulator.url());
    cmd.output().unwrap()
}

fn check_bars_with_duckdb(python: &str, trades: &Path, bars: &Path) {
    let check = Command::new(python)
        .arg(repo().join("tests/sql/replay_bars.py"))
        .arg(trades)
        .arg(bars)
        .arg("2000")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && report.contains("bars match"),
        "{report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// An emulator with bucket `market`, and a replay file of `trades` trades.
fn market_with_trades(
    seed: u64,
    trades: usize,
) -> (Emulator, tempfile::TempDir, std::path::PathBuf) {
    let emulator = Emulator::start();
    emulator.bucket("market");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trades.jsonl");
    write_frames(
        &Frames {
            seed,
            trades,
            ..Frames::default()
        },
        &path,
    );
    (emulator, dir, path)
}

#[test]
fn replay_to_gs_gives_the_bars_an_independent_sql_computation_gives() {
    let Some(python) = python() else { return };
    let (emulator, dir, trades) = market_with_trades(33, 5000);

    let run = replay_to(&emulator, &trades, "gs://market/runs/a");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let local = dir.path().join("download");
    let names = emulator.download("market", "runs/a", &local);
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("bars/") && n.ends_with(".parquet")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("dead_letters/")),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.contains("_pending") || n.contains("_tickflow_probe")),
        "{names:?}"
    );
    check_bars_with_duckdb(&python, &trades, &local.join("bars"));
}

#[test]
fn an_outage_mid_run_loses_nothing_and_the_run_catches_up() {
    let Some(python) = python() else { return };
    // Files in one put, then files spilled to disk and uploaded in parts (multipart upload).
    for spill_at in [None, Some("1024")] {
        an_outage_is_waited_out(&python, spill_at);
    }
}

fn an_outage_is_waited_out(python: &str, spill_at: Option<&str>) {
    let (emulator, dir, trades) = market_with_trades(34, 20_000);
    // Storage refuses every upload of the sink for 4 s from now, which covers the moment the
    // run writes its files. object_store gives up on a request after 1 s here, so tickflow's own
    // waiting is what carries the run through.
    emulator.fault(r#"{"status": 503, "seconds": 4, "method": "PUT", "prefix": "market/outage/bars/_pending"}"#);
    let started = Instant::now();
    let mut child = Command::new(bin())
        .args(["run", "specs/replay.yaml", "--workers", "2"])
        .current_dir(repo())
        .env("TRADES_FILE", &trades)
        .env("OUT_URL", "gs://market/outage")
        .env("GCS_EMULATOR_URL", emulator.url())
        .env("TICKFLOW_STORAGE_REQUEST_RETRY", "1s")
        .env("TICKFLOW_SPILL_AT", spill_at.unwrap_or("4194304"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{stderr}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "the run waited the outage out"
    );
    let stats = emulator.stats();
    assert!(stats["injected"].as_u64().unwrap() > 0);
    // Spilled files went up in parts; the others in one put each.
    assert_eq!(
        stats["multipart_completed"].as_u64().unwrap() > 0,
        spill_at.is_some(),
        "{stats}"
    );
    assert!(stderr.contains("storage unavailable"), "{stderr}");
    assert!(stderr.contains("storage is back"), "{stderr}");
    let local = dir.path().join("download");
    emulator.download("market", "outage", &local);
    check_bars_with_duckdb(python, &trades, &local.join("bars"));
}

#[test]
fn a_missing_bucket_or_a_refused_write_stops_the_run_with_a_message_that_says_so() {
    let (emulator, _dir, trades) = market_with_trades(35, 500);

    let run = replay_to(&emulator, &trades, "gs://no-such-bucket/x");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("`gs://no-such-bucket`: the bucket does not exist"),
        "{stderr}"
    );

    emulator.fault(r#"{"status": 403, "prefix": "market/denied"}"#);
    let run = replay_to(&emulator, &trades, "gs://market/denied");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(!stderr.contains("private_key"), "{stderr}");

    // A tuning knob with a bad value is named, not silently replaced by its default.
    let run = Command::new(bin())
        .args(["run", "specs/replay.yaml"])
        .current_dir(repo())
        .env("TRADES_FILE", &trades)
        .env("OUT_URL", "gs://market/knob")
        .env("GCS_EMULATOR_URL", emulator.url())
        .env("TICKFLOW_STORAGE_REQUEST_RETRY", "soon")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr
            .contains("TICKFLOW_STORAGE_REQUEST_RETRY: `soon` is not a positive number of seconds"),
        "{stderr}"
    );
}

/// `specs/market-bars.yaml --bounded` on Kafka with its output and checkpoints on `out_url`.
fn market_bars_to(
    emulator: &Emulator,
    brokers: &str,
    topic: &str,
    out_url: &str,
    workers: &str,
) -> Child {
    Command::new(bin())
        .args([
            "run",
            "specs/market-bars.yaml",
            "--bounded",
            "--workers",
            workers,
        ])
        .current_dir(repo())
        .env("KAFKA_BROKERS", brokers)
        .env("TRADES_TOPIC", topic)
        .env("OUT_URL", out_url)
        .env("CHECKPOINT_INTERVAL", "300ms")
        .env("GCS_EMULATOR_URL", emulator.url())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Complete checkpoints under `prefix` of `bucket` (their manifests), listed through the XML API.
fn manifests(emulator: &Emulator, bucket: &str, prefix: &str) -> usize {
    let store = emulator.store(bucket);
    runtime().block_on(async {
        let prefix = object_store::path::Path::from(prefix);
        let metas: Vec<_> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap_or_default();
        metas
            .iter()
            .filter(|m| m.location.as_ref().ends_with("_manifest.json"))
            .count()
    })
}

#[test]
fn market_bars_with_checkpoints_on_gs_survive_kill_9_and_equal_the_local_run() {
    use crate::kafka::{brokers, create_topic, market_bars, produce_trades, sorted_bars};
    let Some(brokers) = brokers() else { return };
    let topic = create_topic(&brokers, 4);
    produce_trades(&brokers, &topic, 100_000);
    let dir = tempfile::tempdir().unwrap();
    let reference_dir = dir.path().join("reference");
    let out = market_bars(&brokers, &topic, &reference_dir, "2", "300ms")
        .wait_with_output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = sorted_bars(&reference_dir.join("bars"));

    let emulator = Emulator::start();
    emulator.bucket("market");
    let mut child = market_bars_to(&emulator, &brokers, &topic, "gs://market/kafka", "2");
    let deadline = Instant::now() + Duration::from_secs(60);
    while manifests(&emulator, "market", "kafka/checkpoints") == 0
        && child.try_wait().unwrap().is_none()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let out = market_bars_to(&emulator, &brokers, &topic, "gs://market/kafka", "3")
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    if killed {
        assert!(stderr.contains("restored from checkpoint"), "{stderr}");
    }
    let local = dir.path().join("download");
    let names = emulator.download("market", "kafka", &local);
    assert!(!names.iter().any(|n| n.contains("/_pending/")), "{names:?}");
    assert!(
        sorted_bars(&local.join("bars")) == reference,
        "bars on gs:// differ from the local run"
    );
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_run_with_the_reason() {
    use crate::kafka::{brokers, create_topic, produce_trades};
    let Some(brokers) = brokers() else { return };
    let topic = create_topic(&brokers, 2);
    produce_trades(&brokers, &topic, 200_000);
    let emulator = Emulator::start();
    emulator.bucket("market");
    let mut child = market_bars_to(&emulator, &brokers, &topic, "gs://market/denied", "2");
    let deadline = Instant::now() + Duration::from_secs(60);
    while manifests(&emulator, "market", "denied/checkpoints") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // From now on the bucket refuses checkpoint writes, as after a revoked permission.
    emulator.fault(r#"{"status": 403, "prefix": "market/denied/checkpoints"}"#);
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut stderr = String::new();
        let _ = pipe.read_to_string(&mut stderr);
        stderr
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = reader.join().unwrap();
    let status =
        status.unwrap_or_else(|| panic!("the run went on after its checkpoint failed:\n{stderr}"));
    assert!(!status.success(), "the run must stop: {stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
}

#[test]
fn the_quickstart_writes_to_gs_unchanged() {
    let emulator = Emulator::start();
    emulator.bucket("market");
    let run = Command::new(bin())
        .args(["run", "specs/quickstart.yaml", "--for", "4s"])
        .current_dir(repo())
        .env("OUT_URL", "gs://market/quickstart")
        .env("GCS_EMULATOR_URL", emulator.url())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let names = emulator.download("market", "quickstart", dir.path());
    let (_, rows) = crate::support::read_parquet_dir(dir.path());
    assert!(names.iter().any(|n| n.ends_with(".parquet")), "{names:?}");
    assert!(!rows.is_empty(), "{names:?}");
}
