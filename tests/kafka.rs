use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::oracle::{self, T};
use crate::support::{Cell, bin, read_dead_letters, read_parquet_dir, repo};

/// The broker `scripts/test` starts (`deploy/local/kafka start`), or None outside CI.
pub fn brokers() -> Option<String> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let addr = brokers.split(',').next().unwrap_or_default().to_string();
    let up = std::net::TcpStream::connect_timeout(
        &addr.parse().expect("host:port"),
        Duration::from_secs(1),
    )
    .is_ok();
    if up {
        return Some(brokers);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no Kafka broker at {brokers}: scripts/test starts one (deploy/local/kafka start)"
    );
    eprintln!("skipping: no Kafka broker at {brokers} (run deploy/local/kafka start)");
    None
}

/// A plain producer for the test's own records.
fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap()
}

pub fn create_topic(brokers: &str, partitions: i32) -> String {
    let topic = format!("test-{}-{}", std::process::id(), rand::random::<u32>());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let results = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(
                &topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        ))
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    topic
}

/// (partition, offset, value) of every record, read back with a plain consumer.
pub fn read_topic(brokers: &str, topic: &str, partitions: i32) -> Vec<(i32, i64, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut total = 0;
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .unwrap();
        total += high;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    // Generous: a loaded machine (a whole test suite beside it) reads slowly.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while (out.len() as i64) < total && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push((
                m.partition(),
                m.offset(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    assert_eq!(out.len() as i64, total);
    out.sort_by_key(|(p, o, _)| (*p, *o));
    out
}

/// The oracle over Kafka records: each partition has its own watermark, records in offset order.
pub fn kafka_oracle(records: &[(i32, i64, Vec<u8>)], ooo: i64) -> (Vec<oracle::Bar>, usize, usize) {
    kafka_oracle_windows(records, ooo, 60_000)
}

/// [`kafka_oracle`] with tumbling windows of `size` ms.
pub fn kafka_oracle_windows(
    records: &[(i32, i64, Vec<u8>)],
    ooo: i64,
    size: i64,
) -> (Vec<oracle::Bar>, usize, usize) {
    let mut trades = Vec::new();
    let mut max: BTreeMap<i32, i64> = BTreeMap::new();
    let mut rejected = 0;
    for (p, offset, value) in records {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(value) else {
            rejected += 1;
            continue;
        };
        let frame = format!("{{\"data\":[{v}],\"type\":\"trade\"}}");
        let parsed = oracle::read(&frame, 0);
        if parsed.trades.len() != 1 {
            rejected += 1;
            continue;
        }
        let t = &parsed.trades[0];
        let m = max.entry(*p).or_insert(i64::MIN);
        *m = (*m).max(t.ts);
        trades.push(T {
            sym: t.sym.clone(),
            p: t.p,
            v: t.v,
            ts: t.ts,
            seq: (*p as u64, *offset as u64),
            wm: *m - ooo,
        });
    }
    let input = oracle::Input {
        trades,
        rejected: Default::default(),
    };
    let (bars, late) = oracle::fixed_windows(&input, size, size, 0);
    (bars, late, rejected)
}

fn run_market_bars(brokers: &str, topic: &str, out: &std::path::Path, workers: &str) -> String {
    let result = market_bars(brokers, topic, out, workers, "10s")
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(result.status.success(), "{stderr}");
    stderr
}

pub fn assert_bars_equal(rows: &[Vec<Cell>], expected: &[oracle::Bar], context: &str) {
    let mut rows: Vec<&Vec<Cell>> = rows.iter().collect();
    rows.sort_by_key(|r| match (&r[0], &r[1]) {
        (Cell::Str(s), Cell::I64(t)) => (s.clone(), *t),
        _ => panic!(),
    });
    assert_eq!(rows.len(), expected.len(), "{context}: number of bars");
    for (row, bar) in rows.iter().zip(expected) {
        assert_eq!(
            (&row[0], &row[1]),
            (&Cell::Str(bar.sym.clone()), &Cell::I64(bar.start)),
            "{context}"
        );
        for (i, want) in bar.values[..6].iter().enumerate() {
            match (&row[3 + i], want) {
                (Cell::F64(g), Some(w)) => assert!(
                    (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "{context}: {} column {}: {g} vs {w}",
                    bar.sym,
                    3 + i
                ),
                (Cell::Null, None) => {}
                other => panic!("{context}: {other:?}"),
            }
        }
        assert_eq!(
            row[9],
            Cell::I64(bar.count),
            "{context}: {} [{}] trades",
            bar.sym,
            bar.start
        );
    }
}

#[test]
fn market_bars_from_a_partitioned_topic_equal_the_oracle_for_any_worker_count() {
    let Some(brokers) = brokers() else { return };
    let topic = create_topic(&brokers, 4);
    // An independent producer writes trades (out of order within each partition) and garbage.
    let producer = producer(&brokers);
    let mut rng_state = 12345u64;
    let mut rnd = |n: u64| {
        rng_state = rng_state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng_state >> 33) % n
    };
    let mut clock = 1_764_000_000_000i64;
    for i in 0..4000u64 {
        clock += rnd(120) as i64;
        let sym = format!("S{}", rnd(6));
        let partition = (sym.as_bytes()[1] - b'0') as i32 % 4;
        let mut t = clock - (clock % 250);
        if rnd(10) == 0 {
            t -= rnd(15_000) as i64;
        }
        let value = match i % 97 {
            13 => "not json".to_string(),
            // A clock gone wrong: rejected, it must not make every later trade late.
            29 if i == 29 => format!("{{\"p\":1,\"s\":\"{sym}\",\"t\":253402300799999,\"v\":1}}"),
            41 => format!("{{\"p\":-1,\"s\":\"{sym}\",\"t\":{t},\"v\":1}}"),
            _ => format!(
                "{{\"c\":[\"1\"],\"p\":{}.25,\"s\":\"{sym}\",\"t\":{t},\"v\":{}}}",
                10 + rnd(90),
                rnd(5)
            ),
        };
        producer
            .send(
                BaseRecord::to(&topic)
                    .partition(partition)
                    .key(&sym)
                    .payload(&value),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let records = read_topic(&brokers, &topic, 4);
    let (expected, late, rejected) = kafka_oracle(&records, 2_000);
    assert!(late > 0 && rejected > 0);
    let dir = tempfile::tempdir().unwrap();
    let mut first: Option<Vec<Vec<Cell>>> = None;
    for workers in ["1", "2", "3"] {
        let out = dir.path().join(format!("out{workers}"));
        run_market_bars(&brokers, &topic, &out, workers);
        let (_, mut rows) = read_parquet_dir(&out.join("bars"));
        assert_bars_equal(&rows, &expected, &format!("{workers} worker(s)"));
        rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        match &first {
            None => first = Some(rows),
            Some(f) => assert_eq!(&rows, f, "{workers} workers: not the same bits as 1 worker"),
        }
        let (dead, letters) = read_dead_letters(&out.join("dead_letters"));
        assert_eq!(dead.get("late").copied().unwrap_or(0), late, "late trades");
        let invalid: usize = dead
            .iter()
            .filter(|(k, _)| *k != "late")
            .map(|(_, v)| v)
            .sum();
        assert_eq!(invalid, rejected, "{dead:?}");
        assert!(
            letters
                .iter()
                .any(|l| l["reason"] == "malformed_record" && l["raw"] == "not json")
        );
        assert_eq!(dead.get("future_timestamp"), Some(&1), "{dead:?}");
    }
}

/// Trade objects as Python producers write them (confluent-kafka; `json.dumps` defaults,
/// pretty-printed, keys reversed, extra keys of every JSON kind, escaped and non-ASCII symbols, a
/// key given twice) become the same bars as the oracle computes, with 1 and 2 workers.
#[test]
fn trades_in_any_json_layout_from_a_python_producer_become_the_oracles_bars() {
    let Some(brokers) = brokers() else { return };
    let Some(python) = crate::sql::python() else {
        return;
    };
    let topic = create_topic(&brokers, 3);
    crate::sql::run_script(
        &python,
        "json_layouts.py",
        &["produce", &brokers, &topic, "20000", "11"],
    );
    let records = read_topic(&brokers, &topic, 3);
    assert_eq!(records.len(), 20_000);
    assert!(
        records.iter().any(|(_, _, v)| v.contains(&b'\n')),
        "pretty-printed records"
    );
    let (expected, late, rejected) = kafka_oracle(&records, 2_000);
    assert!(late > 0 && rejected > 0, "{late} late, {rejected} rejected");
    assert!(
        expected.iter().any(|b| b.sym == "S1\u{e9}") && expected.iter().any(|b| b.sym == "S2/")
    );
    let dir = tempfile::tempdir().unwrap();
    for workers in ["1", "2"] {
        let out = dir.path().join(format!("out{workers}"));
        run_market_bars(&brokers, &topic, &out, workers);
        let (_, rows) = read_parquet_dir(&out.join("bars"));
        assert_bars_equal(&rows, &expected, &format!("{workers} worker(s)"));
        let (dead, _) = read_dead_letters(&out.join("dead_letters"));
        assert_eq!(dead.get("late").copied().unwrap_or(0), late, "late trades");
        assert_eq!(
            dead.get("invalid_price").copied().unwrap_or(0),
            rejected,
            "{dead:?}"
        );
    }
}

#[test]
fn ingest_from_the_feed_into_kafka_then_bars() {
    let Some(brokers) = brokers() else { return };
    let topic = create_topic(&brokers, 4);
    let dir = tempfile::tempdir().unwrap();
    let ingest = Command::new(bin())
        .args(["run", "specs/ingest-finnhub.yaml", "--for", "4s"])
        .current_dir(repo())
        .env_remove("FINNHUB_TOKEN")
        .env("KAFKA_BROKERS", &brokers)
        .env("TRADES_TOPIC", &topic)
        .env("OUT_URL", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&ingest.stderr);
    assert!(ingest.status.success(), "{stderr}");
    let records = read_topic(&brokers, &topic, 4);
    assert!(
        records.len() > 300,
        "about 200 trades/s for 4 s: {}",
        records.len()
    );
    // Keys are symbols, values Finnhub trade objects.
    for (_, _, v) in &records {
        let t: serde_json::Value = serde_json::from_slice(v).unwrap();
        let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["c", "p", "s", "t", "v"]);
    }
    let (expected, _, rejected) = kafka_oracle(&records, 2_000);
    assert_eq!(rejected, 0);
    let out = dir.path().join("bars-out");
    run_market_bars(&brokers, &topic, &out, "2");
    let (_, rows) = read_parquet_dir(&out.join("bars"));
    assert_bars_equal(&rows, &expected, "ingested");
}

#[test]
fn undeliverable_records_are_dead_lettered_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("t.jsonl");
    std::fs::write(&trades, "{\"data\":[{\"p\":1,\"s\":\"A\",\"t\":1,\"v\":1},{\"p\":2,\"s\":\"B\",\"t\":2,\"v\":1}],\"type\":\"trade\"}\n").unwrap();
    let spec = format!(
        "name: undeliverable
sources:
  trades: {{ type: replay, path: {} }}
sinks:
  k: {{ type: kafka, input: trades, brokers: \"127.0.0.1:1\", topic: nowhere, delivery_timeout: 1s }}
dead_letters: {{ path: {} }}
",
        trades.display(),
        dir.path().join("dead").display()
    );
    std::fs::write(dir.path().join("spec.yaml"), spec).unwrap();
    let out = Command::new(bin())
        .arg("run")
        .arg(dir.path().join("spec.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (dead, letters) = read_dead_letters(&dir.path().join("dead"));
    assert_eq!(dead.get("delivery_failed"), Some(&2), "{dead:?}");
    assert!(
        letters
            .iter()
            .any(|l| l["raw"] == "{\"c\":[],\"p\":2.0,\"s\":\"B\",\"t\":2,\"v\":1.0}"),
        "{letters:?}"
    );
}

/// A second broker of our own (another port and data folder), so restarting it does not disturb
/// the other tests.
pub struct OwnBroker {
    pub port: u16,
    pub data: tempfile::TempDir,
}

impl OwnBroker {
    fn cmd(&self, action: &str) -> std::process::Output {
        Command::new(repo().join("deploy/local/kafka"))
            .arg(action)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_CONTROLLER_PORT", (self.port + 1).to_string())
            .env("TICKFLOW_KAFKA_DATA", self.data.path())
            .output()
            .unwrap()
    }
    pub fn start(&self) {
        let out = self.cmd("start");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    pub fn stop(&self) {
        self.cmd("stop");
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn ingest_survives_a_broker_restart_without_loss_or_duplicates() {
    if brokers().is_none() {
        return; // the same prerequisites as the shared broker (Java, the cached Kafka jars)
    }
    // NB: not the Kubernetes test's port (19092 on the bridge): two brokers on one port and
    // controller port, on different addresses, broke that test's broker under CI.
    let broker = OwnBroker {
        port: 19192,
        data: tempfile::tempdir().unwrap(),
    };
    broker.start();
    let brokers = "127.0.0.1:19192".to_string();
    let topic = create_topic(&brokers, 4);
    let dir = tempfile::tempdir().unwrap();
    // The ingest spec, and the same trades to Parquet: the oracle of what the topic must hold
    // (the feed itself can send two identical trades, so values need not be distinct).
    let spec = dir.path().join("ingest.yaml");
    let ingest_spec = std::fs::read_to_string(repo().join("specs/ingest-finnhub.yaml")).unwrap();
    let (head, tail) = ingest_spec
        .split_once("\ndead_letters:")
        .expect("specs/ingest-finnhub.yaml has a top-level `dead_letters:` after its sinks");
    std::fs::write(
        &spec,
        format!(
            "{head}\n  read:\n    type: parquet\n    input: trades\n    path: ${{OUT_URL}}/read\n\ndead_letters:{tail}"
        ),
    )
    .unwrap();
    let ingest = Command::new(bin())
        .args(["run", spec.to_str().unwrap(), "--for", "16s"])
        .current_dir(repo())
        .env_remove("FINNHUB_TOKEN")
        .env("KAFKA_BROKERS", &brokers)
        .env("TRADES_TOPIC", &topic)
        .env("OUT_URL", dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    broker.start();
    let out = ingest.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // "stopped: N trades in ..." — every trade read from the feed is in the topic, once.
    let read: usize = stderr
        .lines()
        .find_map(|l| l.strip_prefix("stopped: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    let records = read_topic(&brokers, &topic, 4);
    let (dead, _) = read_dead_letters(&dir.path().join("ingest_dead_letters"));
    assert!(dead.is_empty(), "{dead:?}");
    assert!(read > 1000, "{read}");
    assert_eq!(records.len(), read, "records in the topic vs trades read");
    // No loss and no duplicates (idempotent producer): the topic's trades are, as a multiset,
    // the trades the pipeline read.
    // A trade as (symbol, price, volume, time, conditions), from the topic's Finnhub objects and
    // from the Parquet rows.
    let mut in_topic: Vec<String> = records
        .iter()
        .map(|(_, _, v)| {
            let t: serde_json::Value = serde_json::from_slice(v).unwrap();
            let c: Vec<String> = t["c"]
                .as_array()
                .map(|c| c.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            let f = |k: &str| t[k].as_f64().unwrap();
            format!(
                "{} {} {} {} {c:?}",
                t["s"].as_str().unwrap(),
                f("p"),
                f("v"),
                t["t"].as_i64().unwrap()
            )
        })
        .collect();
    let (names, rows) = read_parquet_dir(&dir.path().join("read"));
    let col = |n: &str| names.iter().position(|x| x == n).unwrap();
    let (s, p, v, t, c) = (
        col("symbol"),
        col("price"),
        col("volume"),
        col("timestamp"),
        col("conditions"),
    );
    let mut read_back: Vec<String> = rows
        .iter()
        .map(|r| match (&r[s], &r[p], &r[v], &r[t], &r[c]) {
            (Cell::Str(s), Cell::F64(p), Cell::F64(v), Cell::I64(t), Cell::List(c)) => {
                format!("{s} {p} {v} {t} {c:?}")
            }
            other => panic!("unexpected trade row {other:?}"),
        })
        .collect();
    in_topic.sort();
    read_back.sort();
    assert_eq!(
        read_back.len(),
        read,
        "trades in the Parquet oracle vs trades read"
    );
    assert!(
        in_topic == read_back,
        "the topic's trades differ from those read; first difference (topic, read): {:?}",
        in_topic.iter().zip(&read_back).find(|(a, b)| a != b)
    );
}

/// Produces `n` records for 6 symbols over 4 partitions: trades, some out of order, and every
/// 997th a garbage record (alternately not JSON and a negative price).
pub fn produce_trades(brokers: &str, topic: &str, n: u64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let mut state = 99u64;
    let mut rnd = |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    let mut clock = 1_764_000_000_000i64;
    for i in 0..n {
        clock += rnd(40) as i64;
        let sym = format!("S{}", rnd(6));
        let mut t = clock;
        if rnd(20) == 0 {
            t -= rnd(4_000) as i64;
        }
        let value = match i % 997 {
            500 if i % 2 == 0 => format!("garbage {i}"),
            500 => format!("{{\"p\":-1,\"s\":\"{sym}\",\"t\":{t},\"v\":1}}"),
            _ => format!(
                "{{\"p\":{}.5,\"s\":\"{sym}\",\"t\":{t},\"v\":{}}}",
                10 + rnd(90),
                1 + rnd(9)
            ),
        };
        let mut record = BaseRecord::to(topic).key(&sym).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(20));
                    record = r;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

pub fn market_bars(
    brokers: &str,
    topic: &str,
    out: &std::path::Path,
    workers: &str,
    interval: &str,
) -> std::process::Child {
    run_kafka_spec(
        "specs/market-bars.yaml",
        brokers,
        topic,
        out,
        workers,
        interval,
    )
}

/// Runs a Kafka spec `--bounded` with checkpoints under `out/checkpoints`.
fn run_kafka_spec(
    spec: &str,
    brokers: &str,
    topic: &str,
    out: &std::path::Path,
    workers: &str,
    interval: &str,
) -> std::process::Child {
    Command::new(bin())
        .env("PLUGINS", crate::support::plugins())
        .args(["run", spec, "--bounded", "--workers", workers])
        .current_dir(repo())
        .env("KAFKA_BROKERS", brokers)
        .env("TRADES_TOPIC", topic)
        .env("OUT_URL", out)
        .env("CHECKPOINT_URL", out.join("checkpoints"))
        .env("CHECKPOINT_INTERVAL", interval)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The uninterrupted single-process run of market bars (2 threads) under `dir/reference`:
/// sorted bars and dead letters, what cluster runs are compared with.
pub fn reference_run(
    brokers: &str,
    topic: &str,
    dir: &std::path::Path,
) -> (Vec<String>, Vec<(String, String, i64)>) {
    let reference_dir = dir.join("reference");
    let out = market_bars(brokers, topic, &reference_dir, "2", "300ms")
        .wait_with_output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        sorted_bars(&reference_dir.join("bars")),
        sorted_dead_letters(&reference_dir.join("dead_letters")),
    )
}

/// The epoch of the newest complete checkpoint under `dir` (0: none).
pub fn latest_checkpoint(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join("_manifest.json").exists())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Dead letters without their arrival time: (reason, raw, position), sorted.
pub fn sorted_dead_letters(dir: &std::path::Path) -> Vec<(String, String, i64)> {
    let (_, letters) = read_dead_letters(dir);
    let mut out: Vec<(String, String, i64)> = letters
        .iter()
        .map(|v| {
            (
                v["reason"].as_str().unwrap().to_string(),
                v["raw"].as_str().unwrap().to_string(),
                v["line"].as_i64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

pub fn sorted_bars(dir: &std::path::Path) -> Vec<String> {
    let (_, rows) = read_parquet_dir(dir);
    let mut rows: Vec<String> = rows.iter().map(|r| format!("{r:?}")).collect();
    rows.sort();
    rows
}

#[test]
fn kill_9_at_random_moments_then_restart_gives_exactly_the_uninterrupted_output() {
    kill_9_and_restart("specs/market-bars.yaml", 300);
}

/// The same with expression steps on both sides of the window (filter → window → derive): the
/// stateless steps take part in checkpoints, and the output is still exactly the uninterrupted
/// run's.
#[test]
fn expression_steps_survive_kill_9_with_exactly_the_uninterrupted_output() {
    kill_9_and_restart("specs/examples/market-returns.yaml", 300);
}

/// A window over a window's rows (5-minute bars from 1-minute bars): both windows' state, and
/// the rows between them, are in every checkpoint.
#[test]
fn bars_from_bars_survive_kill_9_with_exactly_the_uninterrupted_output() {
    kill_9_and_restart("specs/examples/market-bars-5m.yaml", 60);
}

/// Rolling features over bars: each key's history, EMA and RSI state are in every checkpoint,
/// so the restarted runs (on other worker counts) emit exactly the uninterrupted run's rows.
#[test]
fn rolling_features_survive_kill_9_with_exactly_the_uninterrupted_output() {
    kill_9_and_restart("specs/examples/market-features.yaml", 300);
}

/// Runs `spec` uninterrupted, then killed twice and restarted, and compares its `bars` (at least
/// `min_bars` of them) and dead letters.
fn kill_9_and_restart(spec: &str, min_bars: usize) {
    let Some(brokers) = brokers() else { return };
    let topic = create_topic(&brokers, 4);
    produce_trades(&brokers, &topic, 200_000);
    let dir = tempfile::tempdir().unwrap();
    let market_bars =
        |brokers: &str, topic: &str, out: &std::path::Path, workers: &str, interval: &str| {
            run_kafka_spec(spec, brokers, topic, out, workers, interval)
        };

    // The uninterrupted run.
    let reference_dir = dir.path().join("reference");
    let started = std::time::Instant::now();
    let out = market_bars(&brokers, &topic, &reference_dir, "2", "300ms")
        .wait_with_output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = started.elapsed();
    let reference = sorted_bars(&reference_dir.join("bars"));
    assert!(reference.len() > min_bars, "{}", reference.len());
    let reference_dead = sorted_dead_letters(&reference_dir.join("dead_letters"));
    assert!(reference_dead.len() >= 200, "{}", reference_dead.len());

    // kill -9 twice at random moments, restarting with another worker count each time: each
    // run is killed a random time after it completed a checkpoint of its own (so every run makes
    // progress and the kill lands anywhere in the checkpoint cycle).
    let crash_dir = dir.path().join("crash");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut kills = 0;
    for (i, workers) in ["2", "3"].iter().enumerate() {
        let before = latest_checkpoint(&crash_dir.join("checkpoints"));
        let mut child = market_bars(&brokers, &topic, &crash_dir, workers, "300ms");
        let deadline = std::time::Instant::now() + took * 3;
        while latest_checkpoint(&crash_dir.join("checkpoints")) <= before
            && child.try_wait().unwrap().is_none()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis((seed >> (i * 8)) % 400));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let _ = child.wait();
    }
    let out = market_bars(&brokers, &topic, &crash_dir, "1", "300ms")
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(kills >= 1, "the runs were killed mid-way (seed {seed})");
    assert!(stderr.contains("restored from checkpoint"), "{stderr}");
    // Every sink's folder holds exactly the uninterrupted run's rows.
    let mut sinks: Vec<String> = std::fs::read_dir(&reference_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "checkpoints" && n != "dead_letters")
        .collect();
    sinks.sort();
    assert!(sinks.contains(&"bars".to_string()), "{sinks:?}");
    for sink in &sinks {
        let (reference, recovered) = (
            sorted_bars(&reference_dir.join(sink)),
            sorted_bars(&crash_dir.join(sink)),
        );
        assert_eq!(
            recovered.len(),
            reference.len(),
            "seed {seed}: number of rows in `{sink}` (duplicates or losses)"
        );
        assert!(
            recovered == reference,
            "seed {seed}: `{sink}` differs from the uninterrupted run"
        );
    }
    // Dead letters are exactly-once too: each rejected record once, with its offset.
    let recovered_dead = sorted_dead_letters(&crash_dir.join("dead_letters"));
    assert_eq!(recovered_dead.len(), reference_dead.len(), "seed {seed}");
    assert!(
        recovered_dead == reference_dead,
        "seed {seed}: dead letters differ"
    );
}

#[test]
fn a_finished_run_restarted_adds_nothing_and_a_checkpoint_refuses_another_topic() {
    let Some(brokers) = brokers() else { return };
    let topic = create_topic(&brokers, 2);
    produce_trades(&brokers, &topic, 5_000);
    let dir = tempfile::tempdir().unwrap();
    let run = |topic: &str| {
        market_bars(&brokers, topic, dir.path(), "2", "10s")
            .wait_with_output()
            .unwrap()
    };
    let first = run(&topic);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let bars = sorted_bars(&dir.path().join("bars"));
    assert!(!bars.is_empty());

    // The same job again resumes at the end offsets of its last checkpoint: nothing new.
    let again = run(&topic);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(sorted_bars(&dir.path().join("bars")), bars);

    // Another topic with the same checkpoint folder: refused, and the message says what to do.
    let other = create_topic(&brokers, 2);
    let refused = run(&other);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "reading `topic {topic}`, but it now reads `topic {other}`"
        )) && stderr.contains("CHECKPOINT_URL"),
        "{stderr}"
    );
    assert_eq!(sorted_bars(&dir.path().join("bars")), bars);
}

#[test]
fn plugin_state_is_checkpointed_so_a_killed_run_restarted_scores_like_the_uninterrupted_one() {
    let Some(brokers) = brokers() else { return };
    let topic = create_topic(&brokers, 3);
    produce_trades(&brokers, &topic, 120_000);
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &std::path::Path, workers: &str| {
        run_kafka_spec(
            "specs/market-forecast.yaml",
            &brokers,
            &topic,
            out,
            workers,
            "200ms",
        )
    };

    let reference_dir = dir.path().join("reference");
    let started = std::time::Instant::now();
    let out = run(&reference_dir, "2").wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = started.elapsed();
    let (names, rows) = read_parquet_dir(&reference_dir.join("scored"));
    let forecast = names
        .iter()
        .position(|n| n == "forecast_close")
        .expect("a forecast_close column");
    assert!(rows.len() > 150, "{}", rows.len());
    assert!(
        rows.iter()
            .filter(|r| !matches!(r[forecast], crate::support::Cell::Null))
            .count()
            > rows.len() / 2,
        "the model forecasts most bars"
    );
    let reference = sorted_bars(&reference_dir.join("scored"));

    // Killed once after a checkpoint of its own, then finished on another worker count: the
    // models' learned state (and bars not yet scored) must come back from the checkpoint, or the
    // forecasts after the restart differ from the reference.
    let crash_dir = dir.path().join("crash");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut child = run(&crash_dir, "2");
    let deadline = std::time::Instant::now() + took * 3;
    while latest_checkpoint(&crash_dir.join("checkpoints")) < 2
        && child.try_wait().unwrap().is_none()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(seed % 300));
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(killed, "the run was killed mid-way (seed {seed})");
    let out = run(&crash_dir, "3").wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("restored from checkpoint"), "{stderr}");
    let recovered = sorted_bars(&crash_dir.join("scored"));
    assert_eq!(
        recovered.len(),
        reference.len(),
        "seed {seed}: duplicates or losses"
    );
    assert!(
        recovered == reference,
        "seed {seed}: scores differ from the uninterrupted run"
    );
}

/// specs/examples/bars-to-kafka.yaml: the bars in the topic are exactly the Parquet bars of the
/// same run (which DuckDB computes independently from the trades), one compact JSON object per
/// bar with the symbol as the key.
#[test]
fn bars_written_to_kafka_as_json_rows_equal_the_parquet_bars_and_duckdb() {
    let Some(brokers) = brokers() else { return };
    let Some(python) = crate::sql::python() else {
        return;
    };
    let topic = create_topic(&brokers, 1);
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    crate::support::write_frames(
        &crate::support::Frames {
            seed: 41,
            trades: 6000,
            ..Default::default()
        },
        &trades,
    );
    for workers in ["1", "2"] {
        let topic = if workers == "1" {
            topic.clone()
        } else {
            create_topic(&brokers, 3)
        };
        let out_dir = dir.path().join(format!("out{workers}"));
        let out = Command::new(bin())
            .args([
                "run",
                "specs/examples/bars-to-kafka.yaml",
                "--workers",
                workers,
            ])
            .current_dir(repo())
            .env("KAFKA_BROKERS", &brokers)
            .env("BARS_TOPIC", &topic)
            .env("TRADES_FILE", &trades)
            .env("OUT_URL", &out_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The Parquet bars against DuckDB.
        let check = Command::new(&python)
            .arg(repo().join("tests/sql/replay_bars.py"))
            .arg(&trades)
            .arg(out_dir.join("bars"))
            .arg("2000")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stdout)
        );
        // The topic against the Parquet bars.
        let (names, rows) = read_parquet_dir(&out_dir.join("bars"));
        let mut parquet: Vec<String> = rows
            .iter()
            .map(|r| {
                let obj: serde_json::Map<String, serde_json::Value> = names
                    .iter()
                    .zip(r)
                    .map(|(n, c)| {
                        let v = match c {
                            Cell::Null => serde_json::Value::Null,
                            Cell::Str(s) => s.clone().into(),
                            Cell::F64(x) => (*x).into(),
                            Cell::I64(x) if n.starts_with("window_") => {
                                tickflow::base::record::format_ts(*x).into()
                            }
                            Cell::I64(x) => (*x).into(),
                            Cell::Bool(b) => (*b).into(),
                            Cell::List(_) => unreachable!(),
                        };
                        (n.clone(), v)
                    })
                    .collect();
                serde_json::Value::Object(obj).to_string()
            })
            .collect();
        parquet.sort();
        let partitions = if workers == "1" { 1 } else { 3 };
        let records = read_topic_with_keys(&brokers, &topic, partitions);
        let mut kafka: Vec<String> = records
            .iter()
            .map(|(key, value)| {
                let v: serde_json::Value = serde_json::from_slice(value).unwrap();
                assert_eq!(Some(key.as_str()), v["symbol"].as_str(), "key = symbol");
                v.to_string()
            })
            .collect();
        kafka.sort();
        assert!(parquet.len() > 50, "{}", parquet.len());
        assert_eq!(kafka.len(), parquet.len(), "{workers} worker(s)");
        assert!(
            kafka == parquet,
            "{workers} worker(s): the topic's bars differ from the Parquet bars"
        );
    }
}

/// (key, value) of every record of `topic`.
fn read_topic_with_keys(brokers: &str, topic: &str, partitions: i32) -> Vec<(String, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("check-{}", rand::random::<u32>()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut quiet = 0;
    while quiet < 20 {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                quiet = 0;
                out.push((
                    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    m.payload().unwrap_or_default().to_vec(),
                ));
            }
            _ => quiet += 1,
        }
    }
    out
}

/// Windows in market time (5-minute bars of the NYSE extended session, hourly bars of the
/// regular session made from them) keep their state through kill -9 and restarts.
#[test]
fn session_bars_survive_kill_9_with_exactly_the_uninterrupted_output() {
    kill_9_and_restart("specs/examples/market-session-bars.yaml", 60);
}

/// After the close a live topic goes quiet: with `idle_watermark: clock` the watermark follows
/// the wall clock once every partition is idle, so the session's last bar fires without the
/// next trade; with `hold` (the default) it waits, and a stop discards it as incomplete.
#[test]
fn an_idle_topic_lets_the_last_bar_fire_only_when_the_watermark_follows_the_clock() {
    let Some(brokers) = brokers() else { return };
    let topic = create_topic(&brokers, 2);
    // Trades in the minute that ended two minutes ago (24/7 sessions: every minute is in one).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let minute = (now / 60_000 - 3) * 60_000;
    let producer = producer(&brokers);
    for i in 0..20i64 {
        let value = format!(
            r#"{{"p":{}.5,"s":"S{}","t":{},"v":1}}"#,
            10 + i,
            i % 2,
            minute + i * 2_000
        );
        producer
            .send(BaseRecord::to(&topic).key("k").payload(&value))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bars = |mode: &str| {
        let out = dir.path().join(mode);
        let spec = dir.path().join(format!("{mode}.yaml"));
        std::fs::write(
            &spec,
            format!(
                "name: idle
sources:
  trades: {{ type: kafka, brokers: \"{brokers}\", topic: {topic}, group_id: idle-{mode}, idle_timeout: 1s, idle_watermark: {mode} }}
steps:
  bars: {{ type: window, input: trades, window: {{ type: tumbling, size: 1m }}, align: {{ calendar: 24/7 }}, aggregates: {{ n: {{ fn: count }} }} }}
sinks:
  out: {{ type: parquet, input: bars, path: {} }}
",
                out.display()
            ),
        )
        .unwrap();
        let run = Command::new(bin())
            .args(["run"])
            .arg(&spec)
            .args(["--for", "8s"])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let (_, rows) = read_parquet_dir(&out);
        rows.iter()
            .map(|r| match (&r[0], &r[3]) {
                (Cell::Str(s), Cell::I64(n)) => (s.clone(), *n),
                other => panic!("{other:?}"),
            })
            .collect::<BTreeMap<String, i64>>()
    };
    assert_eq!(
        bars("clock"),
        BTreeMap::from([("S0".to_string(), 10), ("S1".to_string(), 10)]),
        "the quiet topic's last bars fire when the watermark follows the clock"
    );
    assert_eq!(
        bars("hold"),
        BTreeMap::new(),
        "held: the bars wait for a later trade"
    );
}

/// An as-of join whose right side stops (a topic that goes quiet under `idle_watermark: hold`)
/// holds its left records forever; with `state_ttl` a left record the left side has passed by
/// that much is joined with the right records that have arrived: the as-of join of those.
#[test]
fn an_asof_join_with_a_stalled_side_joins_what_arrived_once_state_ttl_has_passed() {
    let Some(brokers) = brokers() else { return };
    let (left_topic, right_topic) = (create_topic(&brokers, 1), create_topic(&brokers, 1));
    let t0: i64 = 1_764_000_000_000;
    let producer = producer(&brokers);
    // Left: trades of A and B every 5 s for 3 minutes (out of order in pairs, within the
    // source's 10 s of out-of-orderness), then one at
    // +10 minutes that moves the left watermark on. Right: two quotes of A.
    let mut left = Vec::new();
    for i in 0..36i64 {
        let j = if i % 2 == 0 { i + 1 } else { i - 1 };
        left.push((
            if j % 3 == 0 { "B" } else { "A" },
            t0 + 1_000 + j * 5_000,
            100.0 + j as f64,
        ));
    }
    let last = ("A", t0 + 600_000, 1.0);
    let right = [("A", t0, 1.25), ("A", t0 + 60_000, 1.5)];
    for (topic, rows) in [
        (
            &left_topic,
            left.iter().chain([&last]).copied().collect::<Vec<_>>(),
        ),
        (&right_topic, right.to_vec()),
    ] {
        for (s, t, p) in rows {
            let value = format!(r#"{{"p":{p},"s":"{s}","t":{t},"v":1}}"#);
            producer
                .send(BaseRecord::to(topic).key(s).payload(&value))
                .unwrap();
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let joined = |ttl: &str| {
        let out = dir.path().join(format!("out{}", ttl.len()));
        let spec = dir.path().join(format!("ttl{}.yaml", ttl.len()));
        std::fs::write(
            &spec,
            format!(
                "name: stalled
sources:
  trades: {{ type: kafka, brokers: \"{brokers}\", topic: {left_topic}, group_id: l{n}, idle_timeout: 1s, max_out_of_orderness: 10s }}
  quotes: {{ type: kafka, brokers: \"{brokers}\", topic: {right_topic}, group_id: r{n}, idle_timeout: 1s, max_out_of_orderness: 2s }}
steps:
  priced: {{ type: asof_join, left: trades, right: quotes, columns: {{ quote: price }}{ttl} }}
  picked: {{ type: select, input: priced, columns: [symbol, timestamp, price, quote] }}
sinks:
  out: {{ type: parquet, input: picked, path: {} }}
",
                out.display(),
                n = ttl.len(),
            ),
        )
        .unwrap();
        let run = Command::new(bin())
            .args(["run"])
            .arg(&spec)
            .args(["--for", "8s"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr).to_string();
        assert!(run.status.success(), "{stderr}");
        let (names, rows) = read_parquet_dir(&out);
        assert!(
            rows.is_empty() || names == ["symbol", "timestamp", "price", "quote"],
            "{names:?}"
        );
        let mut rows: Vec<(String, i64, String)> = rows
            .iter()
            .map(|r| match (&r[0], &r[1], &r[3]) {
                (Cell::Str(s), Cell::I64(t), q) => (s.clone(), *t, format!("{q:?}")),
                other => panic!("{other:?}"),
            })
            .collect();
        rows.sort();
        (rows, stderr)
    };
    // The oracle: each left record before the last one with the latest quote of its symbol at
    // or before it.
    let mut expected: Vec<(String, i64, String)> = left
        .iter()
        .map(|&(s, t, _)| {
            let q = right
                .iter()
                .filter(|(rs, rt, _)| *rs == s && *rt <= t)
                .map(|r| r.2)
                .last();
            (
                s.to_string(),
                t,
                format!("{:?}", q.map_or(Cell::Null, Cell::F64)),
            )
        })
        .collect();
    expected.sort();
    // Without it, only what the right side's watermark (the last quote − 2 s) has passed.
    let passed: Vec<_> = expected
        .iter()
        .filter(|r| r.1 < t0 + 58_000)
        .cloned()
        .collect();
    assert!(!passed.is_empty() && passed.len() < expected.len());
    let (held, _) = joined("");
    assert_eq!(
        held, passed,
        "without state_ttl the later left records wait for the quiet right side"
    );
    let (expired, log) = joined(", state_ttl: 1m");
    assert_eq!(
        expired, expected,
        "with state_ttl the passed left records join what arrived"
    );
    assert!(log.contains("state_ttl"), "the expiry is logged: {log}");
}

/// `start: { timestamp }` and `stop_at:` read a backfill window by the records' Kafka
/// timestamps: each partition from its first record stamped at or after the start to its first
/// record stamped at or after `stop_at` (not included), as Kafka's offsets-for-times defines it,
/// also when the timestamps go backwards within a partition; the source then ends by itself.
#[test]
fn a_backfill_window_reads_each_partition_from_its_first_record_at_the_start_to_stop_at() {
    let Some(brokers) = brokers() else { return };
    let topic = create_topic(&brokers, 2);
    let t0: i64 = 1_764_000_000_000;
    let producer = producer(&brokers);
    // Per partition, in offset order: (Kafka timestamp, price); a record every second with up
    // to 6 s of disorder, so neither boundary is a clean cut of time.
    let mut written: Vec<Vec<(i64, f64)>> = vec![Vec::new(), Vec::new()];
    for i in 0..600i64 {
        let p = (i % 2) as i32;
        let jitter = ((i as u64).wrapping_mul(2_654_435_761) >> 7) as i64 % 13 - 6;
        let ts = t0 + i * 1000 + jitter * 1000;
        let price = 100.0 + i as f64;
        let value = format!(r#"{{"p":{price},"s":"S{p}","t":{ts},"v":1}}"#);
        producer
            .send(
                BaseRecord::<str, str>::to(&topic)
                    .partition(p)
                    .timestamp(ts)
                    .payload(&value),
            )
            .unwrap();
        written[p as usize].push((ts, price));
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let (from, to) = (t0 + 150_500, t0 + 420_000);
    let mut expected: Vec<String> = Vec::new();
    for records in &written {
        let first = records.iter().position(|r| r.0 >= from).unwrap();
        let stop = records.iter().position(|r| r.0 >= to).unwrap();
        expected.extend(records[first..stop].iter().map(|r| format!("{}", r.1)));
    }
    expected.sort();
    // Records inside the window stamped before its start, and records before its end stamped
    // after it: the cut is by offset, not a filter by time.
    let (mut early, mut after) = (0, 0);
    for records in &written {
        let first = records.iter().position(|r| r.0 >= from).unwrap();
        let stop = records.iter().position(|r| r.0 >= to).unwrap();
        early += records[first..stop].iter().filter(|r| r.0 < from).count();
        after += records[..stop].iter().filter(|r| r.0 >= to).count()
            + records[stop..].iter().filter(|r| r.0 < to).count();
    }
    assert!(
        early > 0 && after > 0,
        "the input has no disorder around the cuts"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let spec = dir.path().join("backfill.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: backfill
sources:
  trades: {{ type: kafka, brokers: \"{brokers}\", topic: {topic}, start: {{ timestamp: \"{}\" }}, stop_at: \"{}\", max_future: 0s }}
sinks:
  raw: {{ type: parquet, input: trades, path: {} }}
",
            jiff::Timestamp::from_millisecond(from).unwrap(),
            jiff::Timestamp::from_millisecond(to).unwrap(),
            out.display()
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let run = Command::new(bin())
        .args(["run"])
        .arg(&spec)
        .args(["--workers", "2", "--for", "120s"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "the source did not end at stop_at"
    );
    let (names, rows) = read_parquet_dir(&out);
    let price = names.iter().position(|n| n == "price").unwrap();
    let mut got: Vec<String> = rows
        .iter()
        .map(|r| match &r[price] {
            Cell::F64(p) => format!("{p}"),
            other => panic!("{other:?}"),
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
}

/// A compacted topic as a table (`path: kafka://BROKERS/TOPIC`): every trade is joined with the
/// latest value of its symbol's key — an update replaces a row, a tombstone deletes it, a key
/// never written stays unmatched (NULLs) — for 1 and 2 workers; a value of the wrong type is
/// refused at validate naming its partition and offset.
#[test]
fn a_compacted_topic_is_a_table_of_the_latest_value_per_key() {
    let Some(brokers) = brokers() else { return };
    let topic = create_topic(&brokers, 2);
    let producer = producer(&brokers);
    let records: &[(&str, Option<&str>)] = &[
        (
            "AAPL",
            Some(r#"{"symbol":"AAPL","sector":"tech","weight":0.5}"#),
        ),
        (
            "JPM",
            Some(r#"{"symbol":"JPM","sector":"finance","weight":0.2}"#),
        ),
        (
            "V",
            Some(r#"{"symbol":"V","sector":"payments","weight":0.1}"#),
        ),
        ("MSFT", Some(r#"{"symbol":"MSFT","sector":"tech"}"#)),
        (
            "JPM",
            Some(r#"{"symbol":"JPM","sector":"banks","weight":0.3}"#),
        ),
        ("V", None),
    ];
    // Oracle: the last value written for each key (records of one key go to one partition).
    let mut expected: BTreeMap<&str, Option<(&str, Option<f64>)>> = BTreeMap::new();
    for (key, value) in records {
        let row = value.map(|v| {
            let j: serde_json::Value = serde_json::from_str(v).unwrap();
            let sector = ["tech", "finance", "payments", "banks"]
                .into_iter()
                .find(|s| j["sector"] == *s)
                .unwrap();
            (sector, j["weight"].as_f64())
        });
        expected.insert(key, row);
        let record = BaseRecord::<str, str>::to(&topic).key(key);
        let record = match value {
            Some(v) => record.payload(v),
            None => record,
        };
        producer.send(record).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    crate::support::write_frames(
        &crate::support::Frames {
            seed: 5,
            trades: 2000,
            names: &["AAPL", "MSFT", "JPM", "V", "XOM"],
            ..crate::support::Frames::default()
        },
        &trades,
    );
    let spec = dir.path().join("table.yaml");
    let write_spec = |topic: &str| {
        std::fs::write(
            &spec,
            format!(
                "name: kafka-table
sources:
  trades: {{ type: replay, path: \"{}\" }}
tables:
  sectors:
    path: kafka://{brokers}/{topic}
    key: symbol
    columns: {{ symbol: string, sector: string, weight: double }}
steps:
  tagged: {{ type: lookup, input: trades, table: sectors, columns: [sector, weight] }}
sinks:
  out: {{ type: parquet, input: tagged, path: \"${{OUT_URL}}\" }}
",
                trades.display()
            ),
        )
        .unwrap();
    };
    write_spec(&topic);
    for workers in ["1", "2"] {
        let out = dir.path().join(format!("out{workers}"));
        let run = Command::new(bin())
            .args(["run"])
            .arg(&spec)
            .args(["--workers", workers])
            .env("OUT_URL", &out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let (names, rows) = read_parquet_dir(&out);
        let col = |n: &str| names.iter().position(|x| x == n).unwrap();
        let (symbol, sector, weight) = (col("symbol"), col("sector"), col("weight"));
        let mut seen = BTreeMap::new();
        for r in &rows {
            let Cell::Str(s) = &r[symbol] else {
                panic!("{r:?}")
            };
            let want = expected.get(s.as_str()).copied().flatten();
            let got = match (&r[sector], &r[weight]) {
                (Cell::Str(sec), Cell::F64(w)) => Some((sec.clone(), Some(*w))),
                (Cell::Str(sec), Cell::Null) => Some((sec.clone(), None)),
                (Cell::Null, Cell::Null) => None,
                other => panic!("{other:?}"),
            };
            assert_eq!(
                got,
                want.map(|(sec, w)| (sec.to_string(), w)),
                "{s} with {workers} worker(s)"
            );
            *seen.entry(s.clone()).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 5, "every symbol traded: {seen:?}");
    }

    // With `reload:`, values written while the pipeline runs apply from then on: each symbol's
    // bars carry v1, then v2, never back.
    let live = create_topic(&brokers, 1);
    let send_all = |v: &str| {
        for s in ["AAPL", "MSFT", "JPM", "V", "XOM"] {
            let value = format!(r#"{{"symbol":"{s}","sector":"{v}"}}"#);
            producer
                .send(BaseRecord::<str, str>::to(&live).key(s).payload(&value))
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    };
    send_all("v1");
    // 30 minutes of trades replayed 300 times as fast: about 6 s.
    let slow = dir.path().join("slow.jsonl");
    crate::support::write_frames(
        &crate::support::Frames {
            seed: 6,
            trades: 6000,
            gap_ms: 300,
            names: &["AAPL", "MSFT", "JPM", "V", "XOM"],
            ..crate::support::Frames::default()
        },
        &slow,
    );
    let paced = dir.path().join("paced.yaml");
    std::fs::write(
        &paced,
        format!(
            "name: kafka-table-reload
sources:
  trades: {{ type: replay, path: \"{}\", speed: 300 }}
tables:
  sectors: {{ path: \"kafka://{brokers}/{live}\", key: symbol, columns: {{ symbol: string, sector: string }}, reload: 1s }}
steps:
  bars: {{ type: window, input: trades, key: symbol, window: {{ type: tumbling, size: 1m }}, aggregates: {{ n: {{ fn: count }} }} }}
  tagged: {{ type: lookup, input: bars, table: sectors }}
sinks:
  out: {{ type: parquet, input: tagged, path: \"{}\" }}
",
            slow.display(),
            dir.path().join("reloaded").display()
        ),
    )
    .unwrap();
    let child = Command::new(bin())
        .args(["run"])
        .arg(&paced)
        .args(["--workers", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    send_all("v2");
    let run = child.wait_with_output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (names, rows) = read_parquet_dir(&dir.path().join("reloaded"));
    let col = |n: &str| names.iter().position(|x| x == n).unwrap();
    let (symbol, ws, sector) = (col("symbol"), col("window_start"), col("sector"));
    let mut by_symbol: BTreeMap<String, BTreeMap<i64, String>> = BTreeMap::new();
    for r in &rows {
        let (Cell::Str(s), Cell::I64(w), Cell::Str(v)) = (&r[symbol], &r[ws], &r[sector]) else {
            panic!("{r:?}")
        };
        by_symbol
            .entry(s.clone())
            .or_default()
            .insert(*w, v.clone());
    }
    for (s, versions) in &by_symbol {
        let seen: Vec<&String> = versions.values().collect();
        let switch = seen.iter().position(|v| *v == "v2").unwrap_or(seen.len());
        assert!(
            switch > 0 && switch < seen.len(),
            "{s}: the new version did not apply mid-stream: {seen:?}"
        );
        assert!(
            seen[..switch].iter().all(|v| *v == "v1") && seen[switch..].iter().all(|v| *v == "v2"),
            "{s}: {seen:?}"
        );
    }

    // A topic written in transactions ends with a commit marker that is never delivered: the
    // table is still read to its end (at once, not after the read's patience runs out).
    let txn = create_topic(&brokers, 1);
    let transactional: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("transactional.id", format!("table-test-{txn}"))
        .create()
        .unwrap();
    transactional
        .init_transactions(Duration::from_secs(30))
        .unwrap();
    transactional.begin_transaction().unwrap();
    for s in ["AAPL", "MSFT"] {
        let value = format!(r#"{{"symbol":"{s}","sector":"tech","weight":1}}"#);
        transactional
            .send(BaseRecord::<str, str>::to(&txn).key(s).payload(&value))
            .unwrap();
    }
    transactional
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    write_spec(&txn);
    let check = Command::new(bin())
        .args(["validate"])
        .arg(&spec)
        .env("OUT_URL", dir.path().join("never"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // A value of the wrong type: refused at validate, naming the record.
    let bad = create_topic(&brokers, 1);
    for v in [
        r#"{"symbol":"AAPL","sector":"tech","weight":1}"#,
        r#"{"symbol":"MSFT","sector":"tech","weight":"heavy"}"#,
    ] {
        let key = if v.contains("AAPL") { "AAPL" } else { "MSFT" };
        producer
            .send(BaseRecord::<str, str>::to(&bad).key(key).payload(v))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    write_spec(&bad);
    let check = Command::new(bin())
        .args(["validate"])
        .arg(&spec)
        .env("OUT_URL", dir.path().join("never"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("tables.sectors.path: table `sectors` (kafka://{brokers}/{bad}): partition 0, offset 1, column `weight`: \"heavy\" is not a double")),
        "{stderr}"
    );
}
