//! Cluster mode with real processes on loopback: splits of one worker count give identical
//! output equal to the oracle, a killed or frozen process ends the cluster, stray connections
//! to the cluster port are refused without harm, and the flags are checked.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::oracle;
use crate::support::{Cell, Frames, bin, read_dead_letters, read_parquet_dir, repo, write_frames};

/// Free loopback ports, one per process.
fn free_ports(n: usize) -> Vec<String> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts process `index` of the cluster `peers`, `threads` workers, stderr into `dir`.
fn start(
    spec: &Path,
    peers: &[String],
    index: usize,
    threads: usize,
    out: &Path,
    trades: &Path,
    extra: &[&str],
) -> Proc {
    start_with(
        spec,
        peers,
        index,
        threads,
        out,
        &[("TRADES_FILE", trades.display().to_string())],
        extra,
    )
}

fn start_with(
    spec: &Path,
    peers: &[String],
    index: usize,
    threads: usize,
    out: &Path,
    env: &[(&str, String)],
    extra: &[&str],
) -> Proc {
    let log = out.with_extension(format!("p{index}.{}.log", rand::random::<u32>()));
    let child = Command::new(bin())
        .arg("run")
        .arg(spec)
        .args(["--workers", &threads.to_string()])
        .args(["--process", &index.to_string(), "--peers", &peers.join(",")])
        .args(extra)
        .current_dir(repo())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("OUT_URL", out)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn tickflow");
    Proc { child, log }
}

/// Waits for `p` to exit within `limit` (killed and reported otherwise).
fn wait(p: &mut Proc, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            return s;
        }
        if started.elapsed() > limit {
            let _ = p.child.kill();
            let _ = p.child.wait();
            panic!("still running after {limit:?}; stderr:\n{}", p.stderr());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a whole cluster of `processes` × `threads` to the end; every process must exit 0.
fn run_cluster(spec: &Path, processes: usize, threads: usize, out: &Path, trades: &Path) {
    let peers = free_ports(processes);
    let mut procs: Vec<Proc> = (0..processes)
        .map(|i| start(spec, &peers, i, threads, out, trades, &[]))
        .collect();
    for (i, p) in procs.iter_mut().enumerate() {
        let status = wait(p, Duration::from_secs(120));
        assert!(status.success(), "process {i}: {status}\n{}", p.stderr());
    }
}

fn sorted_rows(dir: &Path) -> Vec<Vec<Cell>> {
    let (_, mut rows) = read_parquet_dir(dir);
    rows.sort_by(|a, b| format!("{:?}", &a[..3]).cmp(&format!("{:?}", &b[..3])));
    rows
}

/// A replay file of several 1 MiB blocks, so that every worker of a 4-worker cluster parses
/// some and the block carries must cross processes.
fn big_replay(dir: &Path) -> PathBuf {
    let trades = dir.join("trades.jsonl");
    write_frames(
        &Frames {
            seed: 12,
            trades: 100_000,
            symbols: 8,
            gap_ms: 40,
            ..Frames::default()
        },
        &trades,
    );
    assert!(
        std::fs::metadata(&trades).unwrap().len() > 3 << 20,
        "the file spans several replay blocks"
    );
    trades
}

#[test]
fn every_split_of_four_workers_gives_identical_bars_equal_to_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let trades = big_replay(dir.path());
    let spec = repo().join("specs/replay.yaml");

    // One process with 4 threads: the reference run.
    let single = dir.path().join("1x4");
    replay_alone(&trades, &single, 4);
    let reference = sorted_rows(&single.join("bars"));
    let (reference_dead, _) = read_dead_letters(&single.join("dead_letters"));

    // The oracle: an independent reading of the file and windowing from scratch.
    let input = oracle::read(&std::fs::read_to_string(&trades).unwrap(), 2_000);
    let (expected, late) = oracle::fixed_windows(&input, 60_000, 60_000, 0);
    assert_eq!(reference.len(), expected.len());
    for (row, bar) in reference.iter().zip(&expected) {
        assert_eq!(
            (&row[0], &row[1], &row[2], &row[9]),
            (
                &Cell::Str(bar.sym.clone()),
                &Cell::I64(bar.start),
                &Cell::I64(bar.end),
                &Cell::I64(bar.count)
            )
        );
        for (i, want) in bar.values[..6].iter().enumerate() {
            match (&row[3 + i], want) {
                (Cell::F64(g), Some(w)) => {
                    assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{g} vs {w}")
                }
                (Cell::Null, None) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(reference_dead.get("late").copied().unwrap_or(0), late);
    assert!(late > 0, "the data has late trades to drop");

    for (processes, threads) in [(2, 2), (4, 1)] {
        let out = dir.path().join(format!("{processes}x{threads}"));
        run_cluster(&spec, processes, threads, &out, &trades);
        // Bit for bit: the same values, not merely close ones.
        assert_eq!(
            sorted_rows(&out.join("bars")),
            reference,
            "{processes} processes x {threads} threads"
        );
        let (dead, _) = read_dead_letters(&out.join("dead_letters"));
        assert_eq!(dead, reference_dead, "{processes}x{threads} dead letters");
    }
}

/// The single-process run of `specs/replay.yaml` that cluster runs are compared with.
fn replay_alone(trades: &Path, out: &Path, workers: usize) {
    let status = Command::new(bin())
        .args([
            "run",
            "specs/replay.yaml",
            "--workers",
            &workers.to_string(),
        ])
        .current_dir(repo())
        .env("TRADES_FILE", trades)
        .env("OUT_URL", out)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the single-process replay into {}",
        out.display()
    );
}

/// A paced replay that runs for minutes unless stopped.
fn slow_spec(dir: &Path) -> PathBuf {
    let spec = dir.join("slow.yaml");
    std::fs::write(
        &spec,
        "name: slow
sources:
  trades: { type: replay, path: '${TRADES_FILE}', speed: 5 }
steps:
  bars:
    type: window
    input: trades
    key: symbol
    window: { type: tumbling, size: 10s }
    aggregates:
      trades: { fn: count }
sinks:
  out: { type: parquet, input: bars, path: '${OUT_URL}/bars' }
",
    )
    .unwrap();
    spec
}

#[test]
fn a_killed_process_ends_every_other_process_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let trades = big_replay(dir.path());
    let spec = slow_spec(dir.path());
    let peers = free_ports(3);
    let out = dir.path().join("out");
    let mut procs: Vec<Proc> = (0..3)
        .map(|i| start(&spec, &peers, i, 1, &out, &trades, &[]))
        .collect();
    // Let the cluster form and run a little, then kill -9 the middle one.
    let formed = Instant::now();
    while !procs.iter().all(|p| p.stderr().contains("cluster formed")) {
        assert!(
            formed.elapsed() < Duration::from_secs(60),
            "cluster did not form"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    procs[1].child.kill().unwrap();
    let _ = procs[1].child.wait();
    let killed = Instant::now();
    // NB: a survivor may see the other survivor's exit before the killed process's closed
    // socket (a clean EOF is only noticed when it next sends): it then names that one. The
    // first to notice always names the killed process.
    let mut named = 0;
    for i in [0, 2] {
        let status = wait(&mut procs[i], Duration::from_secs(30));
        let stderr = procs[i].stderr();
        assert_eq!(status.code(), Some(3), "process {i}: {stderr}");
        let other = if i == 0 { 2 } else { 0 };
        let names = |p: usize| stderr.contains(&format!("lost process {p} ({})", peers[p]));
        assert!(names(1) || names(other), "process {i}: {stderr}");
        named += names(1) as usize;
    }
    assert!(named >= 1, "no process named the killed one");
    assert!(killed.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_frozen_process_is_found_by_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let trades = big_replay(dir.path());
    let spec = slow_spec(dir.path());
    let peers = free_ports(2);
    let out = dir.path().join("out");
    let args = ["--peer-timeout", "3s"];
    let mut procs: Vec<Proc> = (0..2)
        .map(|i| start(&spec, &peers, i, 1, &out, &trades, &args))
        .collect();
    let formed = Instant::now();
    while !procs.iter().all(|p| p.stderr().contains("cluster formed")) {
        assert!(
            formed.elapsed() < Duration::from_secs(60),
            "cluster did not form"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let frozen = procs[1].child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &frozen])
            .status()
            .unwrap()
            .success()
    );
    let status = wait(&mut procs[0], Duration::from_secs(20));
    let stderr = procs[0].stderr();
    let _ = procs[1].child.kill();
    let _ = procs[1].child.wait();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("process 1 ({}) has sent nothing for", peers[1])),
        "{stderr}"
    );
}

#[test]
fn stray_connections_to_the_cluster_port_are_refused_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let trades = big_replay(dir.path());
    let spec = repo().join("specs/replay.yaml");
    let peers = free_ports(2);
    let out = dir.path().join("out");
    let mut first = start(&spec, &peers, 0, 1, &out, &trades, &[]);
    // Wait until process 0 listens, then knock in three wrong ways.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probe = loop {
        if let Ok(s) = TcpStream::connect(&peers[0]) {
            break s;
        }
        assert!(Instant::now() < deadline, "process 0 never listened");
        std::thread::sleep(Duration::from_millis(50));
    };
    // A TCP probe that connects and closes (what a kubelet tcpSocket probe does).
    drop(TcpStream::connect(&peers[0]).unwrap());
    // An HTTP client on the wrong port.
    let mut http = TcpStream::connect(&peers[0]).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // A tickflow process of another cluster generation (another peer list).
    let mut stale = TcpStream::connect(&peers[0]).unwrap();
    let mut hello = Vec::from(*b"TICKFLOW");
    hello.extend_from_slice(&2u32.to_le_bytes()); // protocol 2: the hello ends with a fingerprint
    hello.extend_from_slice(&42u64.to_le_bytes());
    hello.extend_from_slice(&2u32.to_le_bytes());
    hello.extend_from_slice(&1u32.to_le_bytes());
    hello.extend_from_slice(&0u32.to_le_bytes());
    hello.extend_from_slice(&[0u8; 52]);
    stale.write_all(&hello).unwrap();
    let mut reply = [0u8; 1];
    stale
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        stale.read(&mut reply).unwrap_or(0),
        0,
        "closed without a reply"
    );
    // `probe` stays open and silent while the real peer joins.
    let mut second = start(&spec, &peers, 1, 1, &out, &trades, &[]);
    for (i, p) in [&mut first, &mut second].into_iter().enumerate() {
        let status = wait(p, Duration::from_secs(120));
        assert!(status.success(), "process {i}: {}", p.stderr());
    }
    let _ = probe.write_all(b"x");
    let log = first.stderr();
    assert!(log.contains("not a tickflow cluster peer"), "{log}");
    assert!(log.contains("another cluster generation"), "{log}");

    let single = dir.path().join("single");
    replay_alone(&trades, &single, 2);
    assert_eq!(
        sorted_rows(&out.join("bars")),
        sorted_rows(&single.join("bars"))
    );
}

#[test]
fn cluster_flags_are_checked_by_validate_and_run() {
    let validate = |args: &[&str]| {
        Command::new(bin())
            .args(["validate", "specs/replay.yaml"])
            .args(args)
            .current_dir(repo())
            .output()
            .unwrap()
    };
    let ok = validate(&[
        "--workers",
        "2",
        "--process",
        "1",
        "--peers",
        "a:7000,b:7000",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ok.stdout)
            .starts_with("cluster: process 1 of 2, 4 worker(s) in all\n")
    );
    for (args, message) in [
        (
            &["--process", "2", "--peers", "a:7000,b:7000"][..],
            "error: --process 2 is out of range: --peers lists 2 process(es), so the index is 0 to 1\n",
        ),
        (
            &["--process", "0", "--peers", "a:7000,b"][..],
            "error: --peers entry 1 `b`: expected HOST:PORT\n",
        ),
        (
            &["--process", "0", "--peers", "a:7000,a:7000"][..],
            "error: --peers entries 0 and 1 are both `a:7000`: every process needs an address of its own\n",
        ),
    ] {
        let out = validate(args);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(String::from_utf8_lossy(&out.stderr), message);
    }
    // --process without --peers is a usage error naming the missing flag.
    let out = validate(&["--process", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--peers"));
}

/// Market bars from Kafka to Parquet and, exactly once, to Kafka.
const KAFKA_SPEC: &str = "specs/examples/market-bars-to-kafka.yaml";

/// Environment of [`KAFKA_SPEC`] from `topic` to `bars`, checkpoints every 300 ms under `out`.
fn kafka_env(brokers: &str, topic: &str, bars: &str, out: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BROKERS", brokers.to_string()),
        ("TRADES_TOPIC", topic.to_string()),
        ("BARS_TOPIC", bars.to_string()),
        (
            "CHECKPOINT_URL",
            out.join("checkpoints").display().to_string(),
        ),
        ("CHECKPOINT_INTERVAL", "300ms".to_string()),
    ]
}

/// Starts a whole `--bounded` market-bars cluster.
fn kafka_cluster(
    brokers: &str,
    (topic, bars): (&str, &str),
    out: &Path,
    processes: usize,
    threads: usize,
) -> (Vec<String>, Vec<Proc>) {
    let spec = repo().join(KAFKA_SPEC);
    let peers = free_ports(processes);
    let env = kafka_env(brokers, topic, bars, out);
    let procs = (0..processes)
        .map(|i| start_with(&spec, &peers, i, threads, out, &env, &["--bounded"]))
        .collect();
    (peers, procs)
}

#[test]
fn kafka_with_checkpoints_across_processes_equals_the_oracle_and_survives_kill_9() {
    use crate::kafka;
    let Some(brokers) = kafka::brokers() else {
        return;
    };
    let topic = kafka::create_topic(&brokers, 4);
    kafka::produce_trades(&brokers, &topic, 200_000);
    let dir = tempfile::tempdir().unwrap();

    // The reference: one process, two threads; and the oracle over the records as stored.
    let (reference, reference_dead) = crate::kafka::reference_run(&brokers, &topic, dir.path());
    let records = kafka::read_topic(&brokers, &topic, 4);
    let (expected, _, _) = kafka::kafka_oracle(&records, 2_000);

    // 2 and 4 processes x 1 thread, checkpointing every 300 ms: the same bars, equal to the
    // oracle. One manifest per epoch, written by the leader: followers' files are in it too,
    // and the transactions of their Kafka sinks (each bar in the topic once).
    for processes in [2, 4] {
        let out = dir.path().join(format!("{processes}x1"));
        let bars = kafka::create_topic(&brokers, 3);
        let (_, mut procs) = kafka_cluster(&brokers, (&topic, &bars), &out, processes, 1);
        for (i, p) in procs.iter_mut().enumerate() {
            let status = wait(p, Duration::from_secs(180));
            assert!(status.success(), "process {i}: {}", p.stderr());
        }
        let (_, rows) = read_parquet_dir(&out.join("bars"));
        kafka::assert_bars_equal(
            &rows,
            &expected,
            &format!("{processes} processes x 1 thread"),
        );
        assert!(
            kafka::sorted_bars(&out.join("bars")) == reference,
            "{processes}x1 bars differ"
        );
        assert!(kafka::latest_checkpoint(&out.join("checkpoints")) >= 1);
        assert_eq!(
            kafka::sorted_dead_letters(&out.join("dead_letters")),
            reference_dead
        );
        crate::kafka_exactly_once::assert_topic_bars_exactly_once(
            &crate::kafka_exactly_once::read_with_isolation(&brokers, &bars, "read_committed"),
            &expected,
            &format!("{processes} processes x 1 thread: the bars topic"),
        );
    }

    // 3 processes; kill -9 one of them a random moment after a checkpoint: the others stop
    // with an error naming it within 30 s. Then 2 processes resume to the end.
    let crash = dir.path().join("crash");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let victim = (seed % 3) as usize;
    let bars = kafka::create_topic(&brokers, 3);
    let (peers, mut procs) = kafka_cluster(&brokers, (&topic, &bars), &crash, 3, 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    while kafka::latest_checkpoint(&crash.join("checkpoints")) < 1
        && procs[victim].child.try_wait().unwrap().is_none()
    {
        assert!(
            Instant::now() < deadline,
            "no checkpoint: {}",
            procs[0].stderr()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(seed / 7 % 500));
    assert!(
        procs[victim].child.try_wait().unwrap().is_none(),
        "seed {seed}: process {victim} ended before it was killed: {}",
        procs[victim].stderr()
    );
    procs[victim].child.kill().unwrap(); // SIGKILL
    let _ = procs[victim].child.wait();
    // NB: as in a_killed_process_ends_every_other_process_with_a_message_naming_it, a survivor
    // may see the other survivor's exit first and name that one; the first to notice names the
    // killed process.
    let mut named = 0;
    for i in (0..3).filter(|i| *i != victim) {
        let status = wait(&mut procs[i], Duration::from_secs(30));
        let stderr = procs[i].stderr();
        assert_eq!(status.code(), Some(3), "seed {seed}, process {i}: {stderr}");
        let other = (0..3)
            .find(|p| *p != victim && *p != i)
            .expect("three processes");
        let names = |p: usize| stderr.contains(&format!("lost process {p} ({})", peers[p]));
        assert!(
            names(victim) || names(other),
            "seed {seed}, process {i}: {stderr}"
        );
        named += names(victim) as usize;
    }
    assert!(named >= 1, "seed {seed}: no process named the killed one");
    let (_, mut procs) = kafka_cluster(&brokers, (&topic, &bars), &crash, 2, 1);
    for (i, p) in procs.iter_mut().enumerate() {
        let status = wait(p, Duration::from_secs(180));
        assert!(status.success(), "seed {seed}, process {i}: {}", p.stderr());
    }
    assert!(procs[0].stderr().contains("restored from checkpoint"));
    let recovered = kafka::sorted_bars(&crash.join("bars"));
    assert_eq!(
        recovered.len(),
        reference.len(),
        "seed {seed}: duplicates or losses"
    );
    assert!(
        recovered == reference,
        "seed {seed}: bars differ from the uninterrupted run"
    );
    assert!(
        kafka::sorted_dead_letters(&crash.join("dead_letters")) == reference_dead,
        "seed {seed}: dead letters differ"
    );
    crate::kafka_exactly_once::assert_topic_bars_exactly_once(
        &crate::kafka_exactly_once::read_with_isolation(&brokers, &bars, "read_committed"),
        &expected,
        &format!("seed {seed}: the bars topic after kill -9 of process {victim}"),
    );
}

/// Starts process `index` of a market-bars cluster whose membership is the file `peers_file`.
fn start_member(
    brokers: &str,
    (topic, bars): (&str, &str),
    out: &Path,
    peers_file: &Path,
    index: usize,
    extra: &[&str],
) -> Proc {
    let log = out.with_extension(format!("member{index}.log"));
    let child = Command::new(bin())
        .args(["run", KAFKA_SPEC, "--bounded", "--workers", "1"])
        .args(["--process", &index.to_string()])
        .arg("--peers-file")
        .arg(peers_file)
        .args(extra)
        .current_dir(repo())
        .envs(kafka_env(brokers, topic, bars, out))
        .env("OUT_URL", out)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn tickflow");
    Proc { child, log }
}

/// GET /metrics.
fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Waits until `what` holds, at most `limit`.
fn wait_until(limit: Duration, mut what: impl FnMut() -> bool, context: &dyn Fn() -> String) {
    let deadline = Instant::now() + limit;
    while !what() {
        assert!(Instant::now() < deadline, "timed out: {}", context());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn rescaling_2_3_1_through_a_peers_file_mid_stream_gives_exactly_the_uninterrupted_output() {
    use crate::kafka;
    let Some(brokers) = kafka::brokers() else {
        return;
    };
    let topic = kafka::create_topic(&brokers, 4);
    kafka::produce_trades(&brokers, &topic, 600_000);
    let bars = kafka::create_topic(&brokers, 3);
    let dir = tempfile::tempdir().unwrap();

    let (reference, reference_dead) = crate::kafka::reference_run(&brokers, &topic, dir.path());

    let out = dir.path().join("rescaled");
    let chk = out.join("checkpoints");
    let ports = free_ports(3);
    let peers_file = dir.path().join("peers");
    std::fs::write(
        &peers_file,
        format!("# the cluster\n{}\n{}\n", ports[0], ports[1]),
    )
    .unwrap();
    let metrics = free_ports(1).remove(0);
    let mut p0 = start_member(
        &brokers,
        (&topic, &bars),
        &out,
        &peers_file,
        0,
        &["--metrics-addr", &metrics],
    );
    let mut p1 = start_member(&brokers, (&topic, &bars), &out, &peers_file, 1, &[]);
    let logs = |procs: &[&Proc]| {
        procs
            .iter()
            .map(|p| p.stderr())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };

    // 2 → 3: a new process joins (it stands by until the file lists it).
    wait_until(
        Duration::from_secs(120),
        || kafka::latest_checkpoint(&chk) >= 1,
        &|| logs(&[&p0, &p1]),
    );
    let mut p2 = start_member(&brokers, (&topic, &bars), &out, &peers_file, 2, &[]);
    std::fs::write(
        &peers_file,
        format!("{}\n{}\n{}\n", ports[0], ports[1], ports[2]),
    )
    .unwrap();
    wait_until(
        Duration::from_secs(60),
        || p2.stderr().contains("cluster formed"),
        &|| logs(&[&p0, &p1, &p2]),
    );
    let after_first = kafka::latest_checkpoint(&chk);
    wait_until(
        Duration::from_secs(60),
        || kafka::latest_checkpoint(&chk) > after_first,
        &|| logs(&[&p0, &p1, &p2]),
    );
    assert!(
        p0.child.try_wait().unwrap().is_none(),
        "process 0 is still the same process"
    );
    assert!(
        p1.child.try_wait().unwrap().is_none(),
        "the stream was still running"
    );

    // The rescale shows in process 0's metrics.
    let scraped = scrape(&metrics);
    let value = |name: &str| -> f64 {
        scraped
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{scraped}"))
    };
    assert_eq!(value("tickflow_cluster_processes"), 3.0);
    assert_eq!(value("tickflow_rescales_total"), 1.0);
    let pause = value("tickflow_rescale_pause_seconds");
    assert!(pause > 0.0 && pause < 60.0, "{pause}");

    // 3 → 1: two processes leave after the final checkpoint (exit 0); process 0 goes on alone.
    std::fs::write(&peers_file, format!("{}\n", ports[0])).unwrap();
    for (i, p) in [(1, &mut p1), (2, &mut p2)] {
        let status = wait(p, Duration::from_secs(60));
        assert!(status.success(), "process {i}: {}", p.stderr());
        assert!(
            p.stderr().contains("no longer in the cluster"),
            "{}",
            p.stderr()
        );
    }
    let status = wait(&mut p0, Duration::from_secs(180));
    let log = p0.stderr();
    assert!(status.success(), "{log}");
    assert_eq!(
        log.matches("rescaled: the new cluster is formed").count(),
        2,
        "{log}"
    );

    let recovered = kafka::sorted_bars(&out.join("bars"));
    assert_eq!(recovered.len(), reference.len(), "duplicates or losses");
    assert!(
        recovered == reference,
        "bars differ from the uninterrupted run"
    );
    assert!(
        kafka::sorted_dead_letters(&out.join("dead_letters")) == reference_dead,
        "dead letters differ"
    );
    // The Kafka sink's transactions through both rescales (3 → 1 fences the ids of the workers
    // that left): a read_committed consumer reads every bar once.
    let records = kafka::read_topic(&brokers, &topic, 4);
    let (expected, _, _) = kafka::kafka_oracle(&records, 2_000);
    crate::kafka_exactly_once::assert_topic_bars_exactly_once(
        &crate::kafka_exactly_once::read_with_isolation(&brokers, &bars, "read_committed"),
        &expected,
        "rescaled 2 → 3 → 1: the bars topic",
    );
}

#[test]
fn the_finnhub_source_keeps_one_connection_and_shares_its_trades_by_symbol() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live");
    let peers = free_ports(2);
    let spec = repo().join("specs/quickstart.yaml");
    let mut procs: Vec<Proc> = (0..2)
        .map(|i| start_with(&spec, &peers, i, 1, &out, &[], &["--for", "25s"]))
        .collect();
    for (i, p) in procs.iter_mut().enumerate() {
        let status = wait(p, Duration::from_secs(90));
        assert!(status.success(), "process {i}: {}", p.stderr());
    }
    // One simulator, one connection: in process 0 only.
    assert!(procs[0].stderr().contains("built-in Finnhub simulator"));
    assert!(!procs[1].stderr().contains("built-in Finnhub simulator"));
    // Trades are exchanged by symbol: both processes' workers wrote bars.
    let mut files = Vec::new();
    crate::support::collect_files(&out.join("bars_10s"), "parquet", &mut files);
    let writers: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let name = f.file_name()?.to_str()?;
            Some(name.split('-').find(|p| p.starts_with('w'))?.to_string())
        })
        .collect();
    assert!(
        writers.contains("w000") && writers.contains("w001"),
        "{writers:?} from {files:?}"
    );
    // Each symbol's bars come from one worker, and no window twice.
    let rows = sorted_rows(&out.join("bars_10s"));
    let mut keys: Vec<String> = rows.iter().map(|r| format!("{:?}", &r[..2])).collect();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "a window was written twice");
    assert!(n >= 10, "{n} bars");
}

#[test]
fn an_archive_in_a_bucket_replays_on_a_cluster_exactly_like_the_local_file() {
    use object_store::ObjectStoreExt;
    let dir = tempfile::tempdir().unwrap();
    let trades = big_replay(dir.path());
    let emulator = crate::gcs::Emulator::start();
    emulator.bucket("archive");
    let store = emulator.store("archive");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(store.put(
        &object_store::path::Path::from("2026/trades.jsonl"),
        std::fs::read(&trades).unwrap().into(),
    ))
    .unwrap();

    let local = dir.path().join("local");
    replay_alone(&trades, &local, 1);

    let spec = repo().join("specs/replay.yaml");
    let env = [
        ("TRADES_FILE", "gs://archive/2026/trades.jsonl".to_string()),
        ("GCS_EMULATOR_URL", emulator.url()),
    ];
    let (local_dead, _) = read_dead_letters(&local.join("dead_letters"));
    for (processes, threads) in [(1, 2), (2, 1), (4, 1)] {
        let out = dir.path().join(format!("gs-{processes}x{threads}"));
        let peers = free_ports(processes);
        let mut procs: Vec<Proc> = (0..processes)
            .map(|i| start_with(&spec, &peers, i, threads, &out, &env, &[]))
            .collect();
        for (i, p) in procs.iter_mut().enumerate() {
            let status = wait(p, Duration::from_secs(120));
            assert!(status.success(), "process {i}: {}", p.stderr());
        }
        assert_eq!(
            sorted_rows(&out.join("bars")),
            sorted_rows(&local.join("bars")),
            "{processes}x{threads}"
        );
        let (dead, _) = read_dead_letters(&out.join("dead_letters"));
        assert_eq!(dead, local_dead, "{processes}x{threads}");
    }

    // A missing object is an error naming it.
    let missing = Command::new(bin())
        .args(["run", "specs/replay.yaml"])
        .current_dir(repo())
        .env("TRADES_FILE", "gs://archive/2026/nope.jsonl")
        .env("OUT_URL", dir.path().join("missing"))
        .env("GCS_EMULATOR_URL", emulator.url())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("gs://archive/2026/nope.jsonl") && stderr.contains("no such object"),
        "{stderr}"
    );
}

/// Two network namespaces joined by a veth pair, each with its own address and a hosts file
/// naming both (like two pods behind a headless Service). Removed on drop.
struct Pods {
    names: [String; 2],
    ips: [String; 2],
    veth: String,
}

impl Pods {
    fn ip(args: &[&str]) -> bool {
        Command::new("ip")
            .args(args)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// None where namespaces cannot be made (not root): the test says so and skips, except
    /// under CI.
    fn create() -> Option<Pods> {
        let tag = std::process::id() % 10_000;
        let names = [format!("tfa{tag}"), format!("tfb{tag}")];
        let subnet = 1 + tag % 250;
        let ips = [format!("10.213.{subnet}.1"), format!("10.213.{subnet}.2")];
        let veth = format!("tfv{tag}");
        let pods = Pods { names, ips, veth };
        let [a, b] = &pods.names;
        let peer = format!("{}p", pods.veth);
        let ok = Self::ip(&["netns", "add", a])
            && Self::ip(&["netns", "add", b])
            && Self::ip(&[
                "link", "add", &pods.veth, "type", "veth", "peer", "name", &peer,
            ])
            && Self::ip(&["link", "set", &pods.veth, "netns", a])
            && Self::ip(&["link", "set", &peer, "netns", b])
            && [(a, &pods.veth, &pods.ips[0]), (b, &peer, &pods.ips[1])]
                .iter()
                .all(|(ns, dev, ip)| {
                    Self::ip(&["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev])
                        && Self::ip(&["-n", ns, "link", "set", dev, "up"])
                        && Self::ip(&["-n", ns, "link", "set", "lo", "up"])
                });
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot create network namespaces (ip netns add needs root)"
            );
            eprintln!("skipping: cannot create network namespaces (needs root)");
            return None;
        }
        for ns in &pods.names {
            let dir = Path::new("/etc/netns").join(ns);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("hosts"),
                format!(
                    "127.0.0.1 localhost\n{} tickflow-0.tickflow\n{} tickflow-1.tickflow\n",
                    pods.ips[0], pods.ips[1]
                ),
            )
            .unwrap();
        }
        Some(pods)
    }

    /// `tickflow ARGS` as process `i`, inside pod `i`.
    fn command(&self, i: usize) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i], bin()]);
        c
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for ns in &self.names {
            Self::ip(&["netns", "del", ns]);
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
    }
}

#[test]
fn processes_in_their_own_network_namespaces_form_a_cluster_by_name() {
    let Some(pods) = Pods::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let trades = big_replay(dir.path());
    let peers = "tickflow-0.tickflow:7400,tickflow-1.tickflow:7400";
    let spawn = |i: usize, spec: &Path, out: &Path, extra: &[&str]| {
        let log = out.with_extension(format!("pod{i}.log"));
        let child = pods
            .command(i)
            .arg("run")
            .arg(spec)
            .args(["--process", &i.to_string(), "--peers", peers])
            .args(extra)
            .current_dir(repo())
            .env("TRADES_FILE", &trades)
            .env("OUT_URL", out)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Proc { child, log }
    };

    // Every process binds its entry's port on its own address and finds the other by name.
    let out = dir.path().join("pods");
    let spec = repo().join("specs/replay.yaml");
    let mut procs = [spawn(0, &spec, &out, &[]), spawn(1, &spec, &out, &[])];
    for (i, p) in procs.iter_mut().enumerate() {
        let status = wait(p, Duration::from_secs(120));
        assert!(status.success(), "pod {i}: {}", p.stderr());
    }
    let single = dir.path().join("single");
    replay_alone(&trades, &single, 2);
    assert_eq!(
        sorted_rows(&out.join("bars")),
        sorted_rows(&single.join("bars"))
    );

    // The link between the pods goes down mid-run: no reset, no error, only silence. Both
    // sides' watchdogs end the cluster.
    let slow = slow_spec(dir.path());
    let out = dir.path().join("partitioned");
    let args = ["--peer-timeout", "3s"];
    let mut procs = [spawn(0, &slow, &out, &args), spawn(1, &slow, &out, &args)];
    let formed = Instant::now();
    while !procs.iter().all(|p| p.stderr().contains("cluster formed")) {
        assert!(
            formed.elapsed() < Duration::from_secs(60),
            "{}",
            procs[0].stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(Pods::ip(&[
        "-n",
        &pods.names[0],
        "link",
        "set",
        &pods.veth,
        "down"
    ]));
    for (i, p) in procs.iter_mut().enumerate() {
        let status = wait(p, Duration::from_secs(30));
        let stderr = p.stderr();
        assert_eq!(status.code(), Some(3), "pod {i}: {stderr}");
        let other = 1 - i;
        assert!(
            stderr.contains(&format!("process {other} (tickflow-{other}.tickflow:7400)")),
            "pod {i}: {stderr}"
        );
    }
}

#[test]
fn sigterm_to_any_process_stops_the_cluster_with_a_final_checkpoint() {
    use crate::kafka;
    let Some(brokers) = kafka::brokers() else {
        return;
    };
    let topic = kafka::create_topic(&brokers, 4);
    kafka::produce_trades(&brokers, &topic, 300_000);
    let dir = tempfile::tempdir().unwrap();
    let (reference, _) = crate::kafka::reference_run(&brokers, &topic, dir.path());

    // Not bounded: it would run forever. SIGTERM to the follower after a checkpoint.
    let out = dir.path().join("stopped");
    let spec = repo().join(KAFKA_SPEC);
    let bars = kafka::create_topic(&brokers, 3);
    let peers = free_ports(2);
    let env = kafka_env(&brokers, &topic, &bars, &out);
    let mut procs: Vec<Proc> = (0..2)
        .map(|i| start_with(&spec, &peers, i, 1, &out, &env, &[]))
        .collect();
    wait_until(
        Duration::from_secs(120),
        || kafka::latest_checkpoint(&out.join("checkpoints")) >= 1,
        &|| procs[0].stderr(),
    );
    let pid = procs[1].child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    for (i, p) in procs.iter_mut().enumerate() {
        let status = wait(p, Duration::from_secs(30));
        assert!(status.success(), "process {i}: {}", p.stderr());
    }
    let stopped_at = kafka::latest_checkpoint(&out.join("checkpoints"));
    // Resumed (bounded) from that final checkpoint: exactly the uninterrupted output.
    let (_, mut procs) = kafka_cluster(&brokers, (&topic, &bars), &out, 2, 1);
    for (i, p) in procs.iter_mut().enumerate() {
        let status = wait(p, Duration::from_secs(180));
        assert!(status.success(), "process {i}: {}", p.stderr());
    }
    assert!(
        procs[0].stderr().contains(&format!("epoch={stopped_at}")),
        "{}",
        procs[0].stderr()
    );
    let recovered = kafka::sorted_bars(&out.join("bars"));
    assert_eq!(recovered.len(), reference.len(), "duplicates or losses");
    assert!(
        recovered == reference,
        "bars differ from the uninterrupted run"
    );
    // The final checkpoint's transactions were committed before the processes exited.
    let records = kafka::read_topic(&brokers, &topic, 4);
    let (expected, _, _) = kafka::kafka_oracle(&records, 2_000);
    crate::kafka_exactly_once::assert_topic_bars_exactly_once(
        &crate::kafka_exactly_once::read_with_isolation(&brokers, &bars, "read_committed"),
        &expected,
        "stopped by SIGTERM, then resumed: the bars topic",
    );
}

#[test]
fn processes_replaying_different_files_stop_with_an_error_instead_of_different_watermarks() {
    let dir = tempfile::tempdir().unwrap();
    let trades = big_replay(dir.path());
    let other = dir.path().join("other.jsonl");
    write_frames(
        &Frames {
            seed: 5,
            trades: 2000,
            ..Frames::default()
        },
        &other,
    );
    let spec = repo().join("specs/replay.yaml");
    let peers = free_ports(2);
    let out = dir.path().join("out");
    let mut procs = [
        start(&spec, &peers, 0, 1, &out, &trades, &[]),
        start(&spec, &peers, 1, 1, &out, &other, &[]),
    ];
    let mut said = false;
    for (i, p) in procs.iter_mut().enumerate() {
        let status = wait(p, Duration::from_secs(60));
        let stderr = p.stderr();
        assert!(!status.success(), "process {i}: {stderr}");
        said |= stderr.contains("every process must replay the same file");
    }
    assert!(said, "{}\n{}", procs[0].stderr(), procs[1].stderr());
}

/// Processes of one cluster that run different pipelines (a rolling update that reached only
/// some pods) or different flags are refused at the handshake, every one of them, with a
/// message that names what differs, instead of computing mixed results or hanging.
#[test]
fn processes_with_different_pipelines_or_flags_are_refused_naming_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    write_frames(
        &Frames {
            seed: 8,
            trades: 3000,
            ..Frames::default()
        },
        &trades,
    );
    let replay = repo().join("specs/replay.yaml");
    let half_minute = dir.path().join("30s.yaml");
    std::fs::write(
        &half_minute,
        std::fs::read_to_string(&replay)
            .unwrap()
            .replace("size: 1m", "size: 30s"),
    )
    .unwrap();
    for (case, spec1, threads1, extra1, want) in [
        (
            "window size",
            &half_minute,
            1,
            &[][..],
            "its steps (windows, aggregates, expressions, models) differ",
        ),
        ("--workers", &replay, 2, &[][..], "it runs --workers"),
        ("--bounded", &replay, 1, &["--bounded"][..], "--bounded"),
    ] {
        let peers = free_ports(2);
        let out = dir.path().join(format!("out-{}", case.replace(' ', "-")));
        let mut procs = [
            start(&replay, &peers, 0, 1, &out, &trades, &[]),
            start(spec1, &peers, 1, threads1, &out, &trades, extra1),
        ];
        for (i, p) in procs.iter_mut().enumerate() {
            let status = wait(p, Duration::from_secs(60));
            let stderr = p.stderr();
            assert!(
                !status.success(),
                "{case}: process {i} should refuse: {stderr}"
            );
            assert!(
                stderr.contains("runs a different pipeline") && stderr.contains(want),
                "{case}: process {i}: {stderr}"
            );
        }
        assert!(
            !out.join("bars").exists() || read_parquet_dir(&out.join("bars")).1.is_empty(),
            "{case}: nothing written"
        );
    }
}

/// Without checkpoints a new cluster cannot resume where the old one stopped: a membership
/// change stops every process with an error that says so, instead of replaying the input again
/// (duplicates) and exiting 0.
#[test]
fn a_membership_change_without_checkpoints_stops_with_an_error_instead_of_duplicating() {
    let dir = tempfile::tempdir().unwrap();
    let trades = big_replay(dir.path());
    let spec = slow_spec(dir.path());
    let mut peers = free_ports(3);
    let third = peers.pop().unwrap();
    let peers_file = dir.path().join("peers");
    std::fs::write(&peers_file, peers.join("\n")).unwrap();
    let out = dir.path().join("out");
    let mut procs: Vec<Proc> = (0..2)
        .map(|i| {
            let log = out.with_extension(format!("p{i}.log"));
            let child = Command::new(bin())
                .arg("run")
                .arg(&spec)
                .args([
                    "--workers",
                    "1",
                    "--process",
                    &i.to_string(),
                    "--peers-file",
                ])
                .arg(&peers_file)
                .current_dir(repo())
                .env("TRADES_FILE", &trades)
                .env("OUT_URL", &out)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            Proc { child, log }
        })
        .collect();
    let formed = Instant::now() + Duration::from_secs(60);
    while !procs[0].stderr().contains("cluster formed") {
        assert!(Instant::now() < formed, "{}", procs[0].stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        procs[0]
            .stderr()
            .contains("will stop the cluster with an error instead of rescaling")
    );
    std::fs::write(
        &peers_file,
        [peers.clone(), vec![third]].concat().join("\n"),
    )
    .unwrap();
    for (i, p) in procs.iter_mut().enumerate() {
        let status = wait(p, Duration::from_secs(60));
        let stderr = p.stderr();
        assert!(!status.success(), "process {i}: {stderr}");
        assert!(
            stderr.contains(
                "membership changed (2 → 3 processes), but the spec has no `checkpoints:`"
            ),
            "process {i}: {stderr}"
        );
    }
}

/// SIGTERM (or Ctrl-C) while the cluster is still forming stops at once and cleanly, for the
/// process waiting to accept a peer (process 0) and for the one retrying to connect (process
/// 1), instead of waiting out `--join-timeout`.
#[test]
fn sigterm_while_the_cluster_forms_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    write_frames(&Frames::default(), &trades);
    let spec = repo().join("specs/replay.yaml");
    // Process 0 waits for 1 and 2; process 2 waits to connect to 1, which never comes.
    let peers = free_ports(3);
    let out = dir.path().join("out");
    let mut procs: Vec<Proc> = [0, 2]
        .iter()
        .map(|&i| {
            start(
                &spec,
                &peers,
                i,
                1,
                &out,
                &trades,
                &["--join-timeout", "10m"],
            )
        })
        .collect();
    wait_until(
        Duration::from_secs(30),
        || {
            procs
                .iter()
                .all(|p| p.stderr().contains("joining the cluster"))
        },
        &|| procs[0].stderr() + &procs[1].stderr(),
    );
    std::thread::sleep(Duration::from_millis(500));
    for p in &procs {
        let pid = p.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }
    for p in procs.iter_mut() {
        let status = wait(p, Duration::from_secs(20));
        let stderr = p.stderr();
        assert!(status.success(), "{stderr}");
        assert!(
            stderr.contains("stopped before the cluster formed: nothing ran"),
            "{stderr}"
        );
    }
}

/// A peers file that names an address nobody serves, corrected while the cluster forms: the
/// waiting process reads the file again, forms the cluster with the corrected list, and the
/// run gives exactly the single-process bars (instead of failing after `--join-timeout`).
#[test]
fn a_peers_file_corrected_while_the_cluster_forms_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    write_frames(&Frames::default(), &trades);
    let single = dir.path().join("single");
    replay_alone(&trades, &single, 2);
    let ports = free_ports(3);
    let (p0, bogus, p1) = (&ports[0], &ports[1], &ports[2]);
    let peers_file = dir.path().join("peers");
    std::fs::write(&peers_file, format!("{p0}\n{bogus}\n")).unwrap();
    let out = dir.path().join("out");
    let member = |index: usize| {
        let log = out.with_extension(format!("member{index}.log"));
        let child = Command::new(bin())
            .args(["run", "specs/replay.yaml", "--workers", "1"])
            .args(["--process", &index.to_string(), "--join-timeout", "10m"])
            .arg("--peers-file")
            .arg(&peers_file)
            .current_dir(repo())
            .env("TRADES_FILE", &trades)
            .env("OUT_URL", &out)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn tickflow");
        Proc { child, log }
    };
    let mut first = member(0);
    wait_until(
        Duration::from_secs(30),
        || first.stderr().contains("joining the cluster"),
        &|| first.stderr(),
    );
    std::thread::sleep(Duration::from_secs(1));
    // Corrected: process 1 is at another address, and starts there.
    let tmp = dir.path().join("peers.tmp");
    std::fs::write(&tmp, format!("{p0}\n{p1}\n")).unwrap();
    std::fs::rename(&tmp, &peers_file).unwrap();
    let mut second = member(1);
    for p in [&mut first, &mut second] {
        let status = wait(p, Duration::from_secs(60));
        assert!(status.success(), "{}", p.stderr());
    }
    assert!(
        first
            .stderr()
            .contains("the membership changed while the cluster formed"),
        "{}",
        first.stderr()
    );
    assert_eq!(
        sorted_rows(&out.join("bars")),
        sorted_rows(&single.join("bars"))
    );
}

/// An emptied peers file while the cluster runs is taken as a mistake, said once in the log,
/// and the run goes on to exactly the single-process bars.
#[test]
fn an_emptied_peers_file_is_a_warning_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    write_frames(
        &Frames {
            trades: 6000,
            gap_ms: 300,
            ..Frames::default()
        },
        &trades,
    );
    let single = dir.path().join("single");
    replay_alone(&trades, &single, 1);
    let spec = dir.path().join("paced.yaml");
    std::fs::write(
        &spec,
        std::fs::read_to_string(repo().join("specs/replay.yaml"))
            .unwrap()
            .replace("type: replay", "type: replay\n    speed: 600"),
    )
    .unwrap();
    let peers_file = dir.path().join("peers");
    std::fs::write(&peers_file, format!("{}\n", free_ports(1)[0])).unwrap();
    let out = dir.path().join("out");
    let log = dir.path().join("member.log");
    let mut p = Proc {
        child: Command::new(bin())
            .arg("run")
            .arg(&spec)
            .args(["--workers", "1", "--process", "0", "--peers-file"])
            .arg(&peers_file)
            .current_dir(repo())
            .env("TRADES_FILE", &trades)
            .env("OUT_URL", &out)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        log,
    };
    wait_until(
        Duration::from_secs(30),
        || p.stderr().contains("starting"),
        &|| p.stderr(),
    );
    std::thread::sleep(Duration::from_millis(800));
    std::fs::write(&peers_file, "").unwrap();
    let status = wait(&mut p, Duration::from_secs(60));
    let stderr = p.stderr();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("lists no process (an emptied peers file?)")
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        sorted_rows(&out.join("bars")),
        sorted_rows(&single.join("bars"))
    );
}
