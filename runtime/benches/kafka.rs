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
//!     deploy/local/kafka start
//!     cargo bench --bench kafka [-- --trades 2000000 --repeat 3]

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
    let lookup = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let loaded = tickflow::spec::load_str("bench.yaml", spec, &lookup).unwrap();
    let plan = tickflow::plan::build(&loaded).unwrap();
    let mut opts = tickflow::dataflow::RunOptions::new(2);
    opts.bounded = bounded;
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
    let bars = format!(
        "name: bars
sources:
  trades: {{ type: kafka, brokers: \"{brokers}\", topic: {topic}, group_id: bench-{stamp} }}
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
        dir.join(format!("bars-{stamp}")).display()
    );
    let bars = bars.replace(&format!("bars-{stamp}"), &format!("bars-{stamp}-{{OUT}}"));
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
