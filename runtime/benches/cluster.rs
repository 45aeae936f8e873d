//! Cluster benchmark, with real processes on loopback and the real broker:
//!
//! - throughput: the Kafka → 1-minute bars job (`--bounded`, no checkpoints) on a 4-partition
//!   topic as 1 process × N threads and as N processes × 1 thread (whole processes, start to
//!   exit), repeated and alternated; prints medians and the cost of the cluster;
//! - rescale pause: the same topic read by a job with 10-second and 1-minute bars over
//!   `--symbols` symbols (the state a rescale must move), checkpointing every 2 s; the peers file
//!   goes 2 → 3 → 2 processes, and each rescale's pause (membership change seen → new cluster
//!   formed with its state restored, as logged by process 0) is printed.
//!
//!     deploy/local/kafka start
//!     cargo bench --bench cluster [-- --trades 2000000 --processes 2 --repeat 3 --symbols 10000]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickflow::sim::generate::{GenOptions, generate};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn create_topic(brokers: &str, topic: &str) {
    let out = Command::new(repo().join("deploy/local/kafka"))
        .args(["tool", "org.apache.kafka.tools.TopicCommand"])
        .args(["--bootstrap-server", brokers, "--create", "--topic", topic])
        .args(["--partitions", "4", "--replication-factor", "1"])
        .output()
        .expect("deploy/local/kafka");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `trades` generated trades over `symbols` symbols into a new topic (in-process).
fn fill_topic(brokers: &str, topic: &str, dir: &Path, trades: u64, symbols: usize, gap: f64) {
    create_topic(brokers, topic);
    let file = dir.join(format!("trades-{trades}-{symbols}.jsonl"));
    if !file.exists() {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let opts = GenOptions {
            trades,
            symbols,
            seed: 7,
            mean_gap_ms: gap,
            ping_every: 0,
            ..GenOptions::default()
        };
        generate(&opts, &mut w).unwrap();
        std::io::Write::flush(&mut w).unwrap();
    }
    let spec = format!(
        "name: fill
sources:
  trades: {{ type: replay, path: {}, max_future: 0s }}
sinks:
  k: {{ type: kafka, input: trades, brokers: \"{brokers}\", topic: {topic}, compression: lz4 }}
",
        file.display()
    );
    let loaded = tickflow::spec::load_str("fill.yaml", &spec, &|_| None).unwrap();
    let plan = tickflow::plan::build(&loaded).unwrap();
    let opts = tickflow::dataflow::RunOptions::new(2);
    let metrics = Arc::clone(&opts.metrics);
    tickflow::dataflow::run(plan, opts).unwrap();
    assert_eq!(
        metrics.trades.load(std::sync::atomic::Ordering::Relaxed),
        trades
    );
}

fn free_ports(n: usize) -> Vec<String> {
    let ls: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

fn tickflow(spec: &Path, args: &[String], log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .arg("run")
        .arg(spec)
        .args(args)
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Runs `processes` × `threads` to the end; returns the wall time of the slowest process.
fn timed(spec: &Path, processes: usize, threads: usize, dir: &Path) -> f64 {
    let started = Instant::now();
    let peers = free_ports(processes).join(",");
    let children: Vec<Child> = (0..processes)
        .map(|i| {
            let mut args = vec![
                "--bounded".to_string(),
                "--workers".into(),
                threads.to_string(),
            ];
            if processes > 1 {
                args.extend([
                    "--process".into(),
                    i.to_string(),
                    "--peers".into(),
                    peers.clone(),
                ]);
            }
            tickflow(
                spec,
                &args,
                &dir.join(format!("run-{processes}x{threads}-{i}.log")),
            )
        })
        .collect();
    for mut c in children {
        assert!(
            c.wait().unwrap().success(),
            "see the logs in {}",
            dir.display()
        );
    }
    started.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn bars_spec(brokers: &str, topic: &str, out: &Path, extra: &str) -> String {
    format!(
        "name: bars
sources:
  trades: {{ type: kafka, brokers: \"{brokers}\", topic: {topic}, group_id: bench, max_future: 0s }}
steps:
  bars_1m:
    type: window
    input: trades
    window: {{ type: tumbling, size: 1m }}
    aggregates: &bars
      open: {{ fn: first, field: price }}
      high: {{ fn: max, field: price }}
      low: {{ fn: min, field: price }}
      close: {{ fn: last, field: price }}
      volume: {{ fn: sum, field: volume }}
      vwap: {{ fn: vwap }}
      trades: {{ fn: count }}
{extra}sinks:
  out: {{ type: parquet, input: bars_1m, path: {} }}
",
        out.display()
    )
}

/// The pause process 0 logged for its `n`-th rescale, waiting at most `limit`.
fn pause_of(log: &Path, n: usize, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let pauses: Vec<f64> = text
            .lines()
            .filter(|l| l.contains("rescaled:"))
            .filter_map(|l| {
                l.split("pause_ms=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        if let Some(p) = pauses.get(n - 1) {
            return *p / 1e3;
        }
        assert!(
            Instant::now() < deadline,
            "no rescale {n} in {}:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_checkpoint(dir: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !std::fs::read_dir(dir)
        .map(|es| {
            es.flatten()
                .any(|e| e.path().join("_manifest.json").exists())
        })
        .unwrap_or(false)
    {
        assert!(
            Instant::now() < deadline,
            "no checkpoint in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let trades: u64 = arg(&args, "--trades", 2_000_000);
    let processes: usize = arg(&args, "--processes", 2);
    let repeat: usize = arg(&args, "--repeat", 3);
    let symbols: usize = arg(&args, "--symbols", 10_000);
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let stamp = std::process::id();
    let dir = std::env::temp_dir().join(format!("tickflow-cluster-bench-{stamp}"));
    std::fs::create_dir_all(&dir).unwrap();

    // Throughput.
    let topic = format!("bench-cluster-{stamp}");
    fill_topic(&brokers, &topic, &dir, trades, 500, 2.0);
    let (mut one, mut many) = (Vec::new(), Vec::new());
    for i in 0..repeat {
        for (p, t, into) in [(1, processes, &mut one), (processes, 1, &mut many)] {
            let spec = dir.join(format!("bars-{p}x{t}-{i}.yaml"));
            let out = dir.join(format!("out-{p}x{t}-{i}"));
            std::fs::write(&spec, bars_spec(&brokers, &topic, &out, "")).unwrap();
            into.push(trades as f64 / timed(&spec, p, t, &dir));
        }
    }
    let list = |xs: &[f64]| {
        xs.iter()
            .map(|x| format!("{:.0}k", x / 1e3))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (a, b) = (median(one.clone()), median(many.clone()));
    println!(
        "{trades} trades, 500 symbols, 4 partitions: 1 process x {processes} threads {a:>9.0} trades/s [{}]; {processes} processes x 1 thread {b:>9.0} trades/s [{}]: the cluster costs {:.1}%",
        list(&one),
        list(&many),
        100.0 * (1.0 - b / a)
    );

    // Rescale pause with 10-second and 1-minute bars of `symbols` symbols in the state.
    let topic = format!("bench-rescale-{stamp}");
    let n = (symbols as u64 * 100).min(trades);
    fill_topic(&brokers, &topic, &dir, n, symbols, 60_000.0 / n as f64);
    let spec = dir.join("rescale.yaml");
    let chk = dir.join("rescale-checkpoints");
    let ten = "  bars_10s:
    type: window
    input: trades
    window: { type: tumbling, size: 10s }
    aggregates: *bars
";
    std::fs::write(
        &spec,
        format!(
            "{}checkpoints: {{ path: {}, interval: 2s }}\n",
            bars_spec(&brokers, &topic, &dir.join("rescale-out"), ten),
            chk.display()
        ),
    )
    .unwrap();
    let ports = free_ports(3);
    let peers = dir.join("peers");
    std::fs::write(&peers, format!("{}\n{}\n", ports[0], ports[1])).unwrap();
    let member = |i: usize| {
        let args: Vec<String> = [
            "--process",
            &i.to_string(),
            "--peers-file",
            &peers.display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        tickflow(&spec, &args, &dir.join(format!("member-{i}.log")))
    };
    let mut members = vec![member(0), member(1)];
    wait_for_checkpoint(&chk, Duration::from_secs(300));
    std::thread::sleep(Duration::from_secs(3));
    members.push(member(2));
    std::fs::write(
        &peers,
        format!("{}\n{}\n{}\n", ports[0], ports[1], ports[2]),
    )
    .unwrap();
    let up = pause_of(&dir.join("member-0.log"), 1, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&peers, format!("{}\n{}\n", ports[0], ports[1])).unwrap();
    let down = pause_of(&dir.join("member-0.log"), 2, Duration::from_secs(120));
    let state: u64 = std::fs::read_dir(&chk)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("_manifest.json").exists())
        .flat_map(|e| std::fs::read_dir(e.path()).unwrap().flatten())
        .filter(|f| f.file_name().to_string_lossy().starts_with("state-"))
        .map(|f| f.metadata().unwrap().len())
        .max()
        .unwrap_or(0);
    println!(
        "rescale with {symbols} symbols x 2 window sizes ({n} trades; largest state file {:.1} MB): 2 -> 3 processes paused {up:.2} s, 3 -> 2 paused {down:.2} s",
        state as f64 / 1e6
    );
    for mut m in members {
        let _ = Command::new("kill")
            .args(["-INT", &m.id().to_string()])
            .status();
        let _ = m.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
