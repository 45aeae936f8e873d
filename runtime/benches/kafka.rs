//! Kafka benchmark against Kafka's own perf tools on the same broker and machine (the ceiling):
//!
//! - ingest: a replay of N trades → the `kafka` sink (idempotent, acks=all, lz4), against
//!   `kafka-producer-perf-test` (same acks/idempotence/compression, 70-byte records);
//! - bars: `specs/market-bars.yaml`-like job (`--bounded`) on the topic just written, against
//!   `kafka-consumer-perf-test` reading the same topic.
//!
//! - bars with checkpoints: the same job with `checkpoints: {interval: 1s}` (the cost of
//!   exactly-once).
//!
//! Each measurement is repeated (`--repeat`, default 3), alternating tickflow and the tool so that
//! both see the same machine noise; medians are printed.
//!
//! `--exactly-once` measures the Kafka sink's transactions instead, against the at-least-once
//! sink in the same invocation (alternating): Kafka → 1-minute bars → Kafka and Kafka → Kafka
//! (every trade copied), checkpoints every 1 s and 10 s; then the end-to-end latency of a live
//! copy (a producer writes trades stamped with the time they are sent; a `read_committed`
//! consumer measures when each arrives), p50/p99.
//!
//!     deploy/local/kafka start
//!     cargo bench --bench kafka [-- --trades 2000000 --repeat 3]
//!     cargo bench --bench kafka -- --exactly-once [--trades 2000000 --repeat 3 --rate 20000]
//!
//! `--formats` measures Avro against JSON (a schema registry at `REGISTRY_URL`, default
//! `http://127.0.0.1:8081/apis/ccompat/v7`: `deploy/local/apicurio start`): writing the trades
//! (a replay → the `kafka` sink) and reading them into bars (the `kafka` source → bars), each
//! format alternating with the other.
//!
//!     cargo bench --bench kafka -- --formats [--trades 2000000 --repeat 3]
//!
//! `--layouts` measures reading JSON trade objects as Python producers write them: confluent-kafka
//! (`tests/sql/json_layouts.py produce-file`, Python from `TICKFLOW_TEST_PYTHON`, default
//! `python3`) writes the same trades to one topic per layout (canonical, `json.dumps` defaults,
//! keys reversed, extra keys, pretty-printed); then the `kafka` source → bars reads each topic,
//! alternating, and the medians are compared with the canonical topic's. Use 10 M trades for a
//! backfill's steady rate: at 2 M a run is one or two fetches per partition, and when those land
//! decides more than the layout (writing 10 M records takes Python about 3 minutes per layout).
//!
//!     cargo bench --bench kafka -- --layouts [canonical,extra] [--trades 10000000 --repeat 3]
//!
//! The layout topics (`bench-layout-TRADES-LAYOUT`) are kept on the broker and read again by the
//! next `--layouts` run with the same trade count.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use tickflow::sim::generate::{GenOptions, generate};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn tool(args: &[&str]) -> String {
    let out = Command::new(repo().join("deploy/local/kafka"))
        .arg("tool")
        .args(args)
        .output()
        .expect("deploy/local/kafka");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(spec: &str, env: &[(&str, String)], bounded: bool) -> (f64, u64, u64) {
    run_for(spec, env, bounded, None)
}

/// Runs `spec` on 2 workers (`for_secs`: stopped after that long).
fn run_for(
    spec: &str,
    env: &[(&str, String)],
    bounded: bool,
    for_secs: Option<f64>,
) -> (f64, u64, u64) {
    let lookup = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let loaded = tickflow::spec::load_str("bench.yaml", spec, &lookup).unwrap();
    let plan = tickflow::plan::build(&loaded).unwrap();
    let mut opts = tickflow::dataflow::RunOptions::new(2);
    opts.bounded = bounded;
    if let Some(secs) = for_secs {
        let stop = Arc::clone(&opts.stop);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs_f64(secs));
            stop.store(true, std::sync::atomic::Ordering::Release);
        });
    }
    let metrics = Arc::clone(&opts.metrics);
    let started = Instant::now();
    tickflow::dataflow::run(plan, opts).unwrap();
    let secs = started.elapsed().as_secs_f64();
    (
        secs,
        metrics.trades.load(std::sync::atomic::Ordering::Relaxed),
        metrics
            .rows_written
            .load(std::sync::atomic::Ordering::Relaxed),
    )
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn fmt_all(xs: &[f64]) -> String {
    xs.iter()
        .map(|x| format!("{:.0}k", x / 1e3))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let trades: u64 = arg(&args, "--trades")
        .map(|s| s.parse().unwrap())
        .unwrap_or(2_000_000);
    let repeat: usize = arg(&args, "--repeat")
        .map(|s| s.parse().unwrap())
        .unwrap_or(3);
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let dir = std::env::temp_dir().join("tickflow-kafka-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("trades-{trades}.jsonl"));
    if !file.exists() {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        generate(
            &GenOptions {
                trades,
                symbols: 500,
                seed: 7,
                mean_gap_ms: 2.0,
                ping_every: 0,
                ..GenOptions::default()
            },
            &mut w,
        )
        .unwrap();
        std::io::Write::flush(&mut w).unwrap();
    }
    let stamp = std::process::id();
    if args.iter().any(|a| a == "--exactly-once") {
        let rate: u64 = arg(&args, "--rate")
            .map(|s| s.parse().unwrap())
            .unwrap_or(20_000);
        exactly_once(&brokers, &file, trades, repeat, rate, &dir);
        return;
    }
    if args.iter().any(|a| a == "--formats") {
        formats(&brokers, &file, trades, repeat, &dir);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--layouts") {
        // `--layouts canonical,extra`: only these (canonical first, the others against it).
        let names: Vec<&str> = match args.get(i + 1).filter(|a| !a.starts_with("--")) {
            Some(list) => list.split(',').collect(),
            None => LAYOUTS.to_vec(),
        };
        layouts(&brokers, &file, trades, repeat, &dir, &names);
        return;
    }
    // One topic per ingest run (the first is what the bars runs read) and one for the tool.
    let topics: Vec<String> = (0..repeat)
        .map(|i| format!("bench-trades-{stamp}-{i}"))
        .collect();
    let topic = topics[0].clone();
    let perf_topic = format!("bench-perf-{stamp}");
    for t in topics.iter().chain([&perf_topic]) {
        tool(&[
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            &brokers,
            "--create",
            "--topic",
            t,
            "--partitions",
            "4",
            "--replication-factor",
            "1",
        ]);
    }
    println!("{trades} trades, 500 symbols, topics with 4 partitions on {brokers}; 2 workers");

    // Ingest: tickflow vs the producer perf tool.
    let ingest = format!(
        "name: ingest
sources:
  trades: {{ type: replay, path: {} }}
sinks:
  k: {{ type: kafka, input: trades, brokers: \"{brokers}\", topic: TOPIC, compression: lz4 }}
",
        file.display()
    );
    let (mut ours_all, mut tool_all) = (Vec::new(), Vec::new());
    for t in &topics {
        let (secs, n, delivered) = run(&ingest.replace("TOPIC", t), &[], false);
        assert_eq!(delivered, n, "every trade delivered");
        ours_all.push(n as f64 / secs);
        let perf = tool(&[
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            &perf_topic,
            "--num-records",
            &trades.to_string(),
            "--record-size",
            "70",
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={brokers}"),
            "acks=all",
            "enable.idempotence=true",
            "compression.type=lz4",
            "linger.ms=5",
        ]);
        let last = perf
            .lines()
            .rev()
            .find(|l| l.contains("records/sec"))
            .unwrap_or_default()
            .to_string();
        tool_all.push(
            last.split(" records sent, ")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN),
        );
    }
    let (ours, ceiling) = (median(ours_all.clone()), median(tool_all.clone()));
    println!(
        "ingest   tickflow {ours:>10.0} trades/s [{}]   kafka-producer-perf-test {ceiling:>10.0} records/s [{}]   ({:.0}%)",
        fmt_all(&ours_all),
        fmt_all(&tool_all),
        100.0 * ours / ceiling
    );

    // Bars: tickflow vs the consumer perf tool, on the topic tickflow wrote.
    let bars = bars_spec(
        &format!("type: kafka, brokers: \"{brokers}\", topic: {topic}, group_id: bench-{stamp}"),
        &dir.join(format!("bars-{stamp}-{{OUT}}")),
    );
    let (mut ours_all, mut checkpointed_all, mut tool_all) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..repeat {
        let (secs, n, _) = run(&bars.replace("{OUT}", &format!("plain-{i}")), &[], true);
        assert_eq!(n, trades, "every trade read");
        ours_all.push(n as f64 / secs);
        let checkpointed = format!(
            "{}checkpoints: {{ path: {}, interval: 1s }}\n",
            bars.replace("{OUT}", &format!("chk-{i}")),
            dir.join(format!("checkpoints-{stamp}-{i}")).display()
        );
        let (secs, n, _) = run(&checkpointed, &[], true);
        assert_eq!(n, trades, "every trade read");
        checkpointed_all.push(n as f64 / secs);
        let perf = tool(&[
            "org.apache.kafka.tools.ConsumerPerformance",
            "--bootstrap-server",
            &brokers,
            "--topic",
            &topic,
            "--messages",
            &trades.to_string(),
            "--group",
            &format!("perf-{stamp}-{i}"),
        ]);
        // CSV: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, ...
        let row = perf.lines().last().unwrap_or_default().to_string();
        tool_all.push(
            row.split(',')
                .nth(5)
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(f64::NAN),
        );
    }
    let ceiling = median(tool_all.clone());
    for (label, all) in [("bars", &ours_all), ("bars+chk", &checkpointed_all)] {
        let ours = median(all.clone());
        println!(
            "{label:<8} tickflow {ours:>10.0} trades/s [{}]   kafka-consumer-perf-test {ceiling:>10.0} records/s [{}]   ({:.0}%)",
            fmt_all(all),
            fmt_all(&tool_all),
            100.0 * ours / ceiling
        );
    }
    for t in topics.iter().chain([&perf_topic]) {
        tool(&[
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            &brokers,
            "--delete",
            "--topic",
            t,
        ]);
    }
}

fn create(brokers: &str, topic: &str, partitions: u32) {
    tool(&[
        "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server",
        brokers,
        "--create",
        "--topic",
        topic,
        "--partitions",
        &partitions.to_string(),
        "--replication-factor",
        "1",
    ]);
}

/// Transactions against the at-least-once sink: throughput, then live latency.
fn exactly_once(
    brokers: &str,
    file: &std::path::Path,
    trades: u64,
    repeat: usize,
    rate: u64,
    dir: &std::path::Path,
) {
    let stamp = std::process::id();
    let input = format!("bench-eos-in-{stamp}");
    create(brokers, &input, 4);
    let ingest = format!(
        "name: ingest
sources:
  trades: {{ type: replay, path: {} }}
sinks:
  k: {{ type: kafka, input: trades, brokers: \"{brokers}\", topic: {input} }}
",
        file.display()
    );
    run(&ingest, &[], false);
    println!(
        "{trades} trades, 500 symbols, on a topic with 4 partitions on {brokers}; 2 workers; `--bounded` runs"
    );
    let bars = "steps:
  bars_1m:
    type: window
    input: trades
    window: { type: tumbling, size: 1m }
    aggregates:
      open: { fn: first, field: price }
      close: { fn: last, field: price }
      volume: { fn: sum, field: volume }
      vwap: { fn: vwap }
      trades: { fn: count }
";
    let mut n = 0;
    for (job, steps, sink_input) in [("bars", bars, "bars_1m"), ("copy", "", "trades")] {
        for interval in ["1s", "10s"] {
            let (mut alo, mut eos) = (Vec::new(), Vec::new());
            for _ in 0..repeat {
                for (delivery, out) in [("at_least_once", &mut alo), ("exactly_once", &mut eos)] {
                    n += 1;
                    let topic = format!("bench-eos-out-{stamp}-{n}");
                    create(brokers, &topic, 4);
                    let spec = format!(
                        "name: eos
sources:
  trades: {{ type: kafka, brokers: \"{brokers}\", topic: {input}, group_id: bench-{stamp}-{n} }}
{steps}sinks:
  k: {{ type: kafka, input: {sink_input}, brokers: \"{brokers}\", topic: {topic}, delivery: {delivery} }}
checkpoints: {{ path: {}, interval: {interval} }}
",
                        dir.join(format!("eos-chk-{stamp}-{n}")).display()
                    );
                    let (secs, read, _) = run(&spec, &[], true);
                    assert_eq!(read, trades, "every trade read");
                    out.push(read as f64 / secs);
                }
            }
            let (a, e) = (median(alo.clone()), median(eos.clone()));
            println!(
                "{job:<5} checkpoints {interval:>3}   at_least_once {a:>10.0} trades/s [{}]   exactly_once {e:>10.0} trades/s [{}]   ({:.0}%)",
                fmt_all(&alo),
                fmt_all(&eos),
                100.0 * e / a
            );
        }
    }
    // Latency: a live copy, trades stamped when sent, read by a read_committed consumer.
    println!(
        "live copy at {rate} trades/s for 20 s; latency from send to a read_committed consumer"
    );
    for (delivery, interval) in [
        ("at_least_once", "1s"),
        ("exactly_once", "1s"),
        ("exactly_once", "10s"),
    ] {
        n += 1;
        let (src, dst) = (
            format!("bench-eos-live-{stamp}-{n}"),
            format!("bench-eos-live-out-{stamp}-{n}"),
        );
        create(brokers, &src, 4);
        create(brokers, &dst, 4);
        let spec = format!(
            "name: live
sources:
  trades: {{ type: kafka, brokers: \"{brokers}\", topic: {src}, group_id: bench-{stamp}-{n} }}
sinks:
  k: {{ type: kafka, input: trades, brokers: \"{brokers}\", topic: {dst}, delivery: {delivery} }}
checkpoints: {{ path: {}, interval: {interval} }}
",
            dir.join(format!("eos-chk-{stamp}-{n}")).display()
        );
        let secs = 20.0;
        let consumer = latency_consumer(brokers, &dst, secs + 15.0);
        let producer = paced_producer(brokers, &src, rate, secs);
        run_for(&spec, &[], false, Some(secs + 12.0));
        producer.join().unwrap();
        let mut lat = consumer.join().unwrap();
        lat.sort_unstable();
        let q = |f: f64| {
            lat.get(((lat.len() as f64 - 1.0) * f) as usize)
                .copied()
                .unwrap_or(-1)
        };
        println!(
            "{delivery:<13} checkpoints {interval:>3}   {} records   p50 {} ms   p99 {} ms   max {} ms",
            lat.len(),
            q(0.5),
            q(0.99),
            lat.last().copied().unwrap_or(-1)
        );
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes `rate` trades a second for `secs`, each stamped (`t`) with the time it is sent.
fn paced_producer(brokers: &str, topic: &str, rate: u64, secs: f64) -> std::thread::JoinHandle<()> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "1")
        .create()
        .unwrap();
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed().as_secs_f64() < secs {
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                let sym = format!("S{}", sent % 500);
                let value = format!(
                    "{{\"p\":{}.5,\"s\":\"{sym}\",\"t\":{},\"v\":1}}",
                    100 + sent % 7,
                    now_ms()
                );
                let mut record = BaseRecord::to(&topic).key(&sym).payload(&value);
                while let Err((_, r)) = producer.send(record) {
                    producer.poll(std::time::Duration::from_millis(1));
                    record = r;
                }
                sent += 1;
            }
            producer.poll(std::time::Duration::ZERO);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        producer.flush(std::time::Duration::from_secs(30)).unwrap();
    })
}

/// Reads `topic` with read_committed for `secs`: each record's arrival minus its `t`, in ms.
fn latency_consumer(brokers: &str, topic: &str, secs: f64) -> std::thread::JoinHandle<Vec<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-latency-{}", std::process::id()))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut out = Vec::new();
        while started.elapsed().as_secs_f64() < secs {
            if let Some(Ok(m)) = consumer.poll(std::time::Duration::from_millis(50)) {
                let now = now_ms();
                let payload = m.payload().unwrap_or_default();
                let t = std::str::from_utf8(payload)
                    .ok()
                    .and_then(|s| s.split("\"t\":").nth(1))
                    .and_then(|s| s.split([',', '}']).next())
                    .and_then(|s| s.parse::<i64>().ok());
                if let Some(t) = t {
                    out.push(now - t);
                }
            }
        }
        out
    })
}

/// Avro against JSON: writing trades to Kafka, and reading them into bars.
fn formats(
    brokers: &str,
    file: &std::path::Path,
    trades: u64,
    repeat: usize,
    dir: &std::path::Path,
) {
    let registry = std::env::var("REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into());
    let stamp = std::process::id();
    println!(
        "{trades} trades, 500 symbols, topics with 4 partitions on {brokers}; 2 workers; registry {registry}"
    );
    let format_of = |f: &str| match f {
        "avro" => format!("format: avro, registry: {{ url: \"{registry}\" }}"),
        _ => "format: json".to_string(),
    };
    let (mut write, mut read): (BTreeMap<&str, Vec<f64>>, BTreeMap<&str, Vec<f64>>) =
        (BTreeMap::new(), BTreeMap::new());
    let mut n = 0;
    for _ in 0..repeat {
        for f in ["json", "avro"] {
            n += 1;
            let topic = format!("bench-format-{stamp}-{n}");
            create(brokers, &topic, 4);
            let ingest = format!(
                "name: ingest
sources:
  trades: {{ type: replay, path: {} }}
sinks:
  k: {{ type: kafka, input: trades, brokers: \"{brokers}\", topic: {topic}, {} }}
",
                file.display(),
                format_of(f)
            );
            let (secs, sent, delivered) = run(&ingest, &[], false);
            assert_eq!(delivered, sent, "every trade delivered");
            write.entry(f).or_default().push(sent as f64 / secs);
            let bars = bars_spec(
                &format!(
                    "type: kafka, brokers: \"{brokers}\", topic: {topic}, group_id: bench-{stamp}-{n}, {}",
                    format_of(f)
                ),
                &dir.join(format!("format-bars-{stamp}-{n}")),
            );
            let (secs, got, _) = run(&bars, &[], true);
            assert_eq!(got, trades, "every trade read");
            read.entry(f).or_default().push(got as f64 / secs);
        }
    }
    for (label, all) in [
        ("write (replay → kafka sink)", &write),
        ("read (kafka source → bars)", &read),
    ] {
        let (j, a) = (median(all["json"].clone()), median(all["avro"].clone()));
        println!(
            "{label:<28} json {j:>10.0} trades/s [{}]   avro {a:>10.0} trades/s [{}]   (avro/json {:.0}%)",
            fmt_all(&all["json"]),
            fmt_all(&all["avro"]),
            100.0 * a / j
        );
    }
}

/// The layouts `--layouts` writes and reads (`tests/sql/json_layouts.py produce-file`).
const LAYOUTS: [&str; 5] = ["canonical", "dumps", "reversed", "extra", "pretty"];

/// Records in `topic` (the sum of its partitions' end offsets; nothing is deleted from it).
fn records(brokers: &str, topic: &str) -> u64 {
    tool(&[
        "org.apache.kafka.tools.GetOffsetShell",
        "--bootstrap-server",
        brokers,
        "--topic",
        topic,
    ])
    .lines()
    .filter_map(|l| l.rsplit(':').next()?.trim().parse::<u64>().ok())
    .sum()
}

/// JSON layouts as Python producers write them, read into bars (see the module's comment).
fn layouts(
    brokers: &str,
    file: &std::path::Path,
    trades: u64,
    repeat: usize,
    dir: &std::path::Path,
    names: &[&str],
) {
    let python = std::env::var("TICKFLOW_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let stamp = std::process::id();
    assert!(
        names.first() == Some(&"canonical") && names.iter().all(|n| LAYOUTS.contains(n)),
        "--layouts: canonical first, then any of {LAYOUTS:?}"
    );
    let mut topics = BTreeMap::new();
    let existing = tool(&[
        "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server",
        brokers,
        "--list",
    ]);
    for &layout in names {
        // Written once per trade count and kept (Python takes minutes per layout): a topic
        // that does not hold every trade (an interrupted run) is written again.
        let topic = format!("bench-layout-{trades}-{layout}");
        if existing.lines().any(|t| t.trim() == topic) {
            if records(brokers, &topic) == trades {
                topics.insert(layout, topic);
                continue;
            }
            tool(&[
                "org.apache.kafka.tools.TopicCommand",
                "--bootstrap-server",
                brokers,
                "--delete",
                "--topic",
                &topic,
            ]);
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        create(brokers, &topic, 4);
        let out = Command::new(&python)
            .arg(repo().join("tests/sql/json_layouts.py"))
            .args(["produce-file", brokers, &topic])
            .arg(file)
            .arg(layout)
            .output()
            .expect("python with confluent-kafka (TICKFLOW_TEST_PYTHON)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        topics.insert(layout, topic);
    }
    println!(
        "{trades} trades, 500 symbols, one topic of 4 partitions per layout on {brokers} (written by confluent-kafka); 2 workers"
    );
    let mut read: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut n = 0;
    for _ in 0..repeat {
        for &layout in names {
            n += 1;
            let bars = bars_spec(
                &format!(
                    "type: kafka, brokers: \"{brokers}\", topic: {}, group_id: bench-{stamp}-{n}",
                    topics[layout]
                ),
                &dir.join(format!("layout-bars-{stamp}-{n}")),
            );
            let (secs, got, _) = run(&bars, &[], true);
            assert_eq!(got, trades, "{layout}: every trade read");
            read.entry(layout).or_default().push(got as f64 / secs);
        }
    }
    let canonical = median(read["canonical"].clone());
    for &layout in names {
        let m = median(read[layout].clone());
        println!(
            "{layout:<10} {m:>10.0} trades/s [{}]   ({:.0}% of canonical)",
            fmt_all(&read[layout]),
            100.0 * m / canonical
        );
    }
}

/// A Kafka source (`source`: its settings) → 1-minute bars → Parquet under `out`.
fn bars_spec(source: &str, out: &std::path::Path) -> String {
    format!(
        "name: bars
sources:
  trades: {{ {source} }}
steps:
  bars_1m:
    type: window
    input: trades
    window: {{ type: tumbling, size: 1m }}
    aggregates:
      open: {{ fn: first, field: price }}
      high: {{ fn: max, field: price }}
      low: {{ fn: min, field: price }}
      close: {{ fn: last, field: price }}
      volume: {{ fn: sum, field: volume }}
      vwap: {{ fn: vwap }}
      trades: {{ fn: count }}
sinks:
  out: {{ type: parquet, input: bars_1m, path: {} }}
",
        out.display()
    )
}
