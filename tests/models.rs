//! Models trained in Python, scored by the stock `onnx` plugin: the training loop of
//! examples/train/ on the features a pipeline wrote, and every scored row checked against
//! onnxruntime (an independent ONNX engine) on the same features.

use std::path::Path;
use std::process::Command;

use std::time::Duration;

use crate::support::{Cell, LoggedChild, bin, plugins, read_parquet_dir, read_parquet_file, repo};

/// Replaces `file` at once (written beside it, then renamed over it), as a deployment would.
fn replace_file(file: &Path, bytes: &[u8]) {
    let tmp = file.with_extension("next");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// The Python with scikit-learn, skl2onnx and onnxruntime (`scripts/test` sets it); `None`
/// skips the test outside CI, and fails it under CI.
fn python() -> Option<String> {
    let python = std::env::var("TICKFLOW_TEST_PYTHON").ok();
    if python.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs this test: set TICKFLOW_TEST_PYTHON (scripts/test does)"
        );
        eprintln!("skipped: TICKFLOW_TEST_PYTHON is not set (scripts/test sets it)");
    }
    python
}

fn generate_trades(path: &Path) {
    let out = Command::new(bin())
        .args([
            "generate",
            "--trades",
            "40000",
            "--symbols",
            "20",
            "--seed",
            "11",
        ])
        .args([
            "--mean-gap-ms",
            "150",
            "--disorder-ms",
            "800",
            "--disorder-rate",
            "0.05",
        ])
        .args(["--invalid-rate", "0.01", "--out"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(spec: &str, trades: &Path, out: &Path, workers: &str, model: Option<&Path>) {
    let mut cmd = Command::new(bin());
    cmd.args(["run", spec, "--no-status", "--workers", workers])
        .current_dir(repo())
        .env("TRADES_FILE", trades)
        .env("OUT_URL", out)
        .env("TICKFLOW_PLUGINS", plugins());
    if let Some(m) = model {
        cmd.env("MODEL", m);
    }
    let result = cmd.output().unwrap();
    assert!(
        result.status.success(),
        "{spec}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// onnxruntime scores the feature columns of every row tickflow scored, with the model of the
/// row's `model_version` (the FNV-1a hash of the model file's bytes, computed here on its own);
/// both must agree. Arguments: the scored folder, then the model files. Prints the rows per
/// version.
const ORACLE: &str = r#"
import glob, sys
import numpy as np, pyarrow.parquet as pq, onnxruntime as ort
folder, models = sys.argv[1], sys.argv[2:]
def fnv(b):
    h = 0xcbf29ce484222325
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"
by_version = {fnv(open(m, "rb").read()): m for m in models}
rows = []
for f in sorted(glob.glob(folder + "/**/*.parquet", recursive=True)):
    rows.extend(pq.read_table(f).to_pylist())
worst, bad, nulls, per_version = 0.0, 0, 0, {}
for version in sorted(set(r["model_version"] for r in rows)):
    if version not in by_version:
        print(f"rows scored by a model that is none of the files: {version}")
        sys.exit(1)
    mine = [r for r in rows if r["model_version"] == version]
    per_version[by_version[version].rsplit("/", 1)[-1]] = len(mine)
    x = np.array([[np.nan if r[c] is None else r[c] for c in ("ret", "range", "vwap_gap", "log_volume")]
                  for r in mine], dtype=np.float32)
    sess = ort.InferenceSession(by_version[version], providers=["CPUExecutionProvider"])
    label, prob = sess.run(["label", "probabilities"], {"features": x})
    for r, l, p in zip(mine, label, prob):
        for got, want in ((r["p_down"], p[0]), (r["p_flat"], p[1]), (r["p_up"], p[2])):
            if got is None or np.isnan(want):  # a NaN score is written as NULL (on_nan: null)
                nulls += 1
                bad += not (got is None and np.isnan(want))
                continue
            rel = abs(got - float(want)) / max(abs(float(want)), 1e-30)
            worst = max(worst, rel)
            bad += rel > 1e-6
        bad += int(r["signal"]) != int(l)
classes = sorted(set(int(r["signal"]) for r in rows))
print(f"{len(rows)} rows {per_version}, classes {classes}, {nulls} NULL scores, worst relative difference {worst:.2e}, {bad} disagreements")
sys.exit(1 if bad or len(rows) < 200 or len(classes) < 2 else 0)
"#;

/// A random forest on 4 random features, 3 classes, exported as train.py exports its models;
/// argument: the folder.
const MORE_MODELS: &str = r#"
import sys, numpy as np
from sklearn.ensemble import RandomForestClassifier
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
rng = np.random.default_rng(5)
x = rng.normal(scale=[0.002, 0.003, 0.001, 1.0], size=(3000, 4)).astype(np.float32) + [0, 0.003, 0, 5]
y = np.digitize(x[:, 0] * 300 + x[:, 2] * 500 + rng.normal(scale=0.5, size=len(x)), [-0.5, 0.5])
for name, m in (("updown-forest", RandomForestClassifier(n_estimators=20, max_depth=6, random_state=1)),):
    m.fit(x, y)
    onx = to_onnx(m, initial_types=[("features", FloatTensorType([None, 4]))],
                  options={id(m): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    kinds = [n.op_type for n in onx.graph.node]
    print(name, kinds, [a.s for n in onx.graph.node for a in n.attribute if a.name == "post_transform"])
    open(f"{sys.argv[1]}/{name}.onnx", "wb").write(onx.SerializeToString())
"#;

/// Trades, their features written by the pipeline, and both models trained on them.
fn train(dir: &Path, python: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let trades = dir.join("trades.jsonl");
    generate_trades(&trades);
    let lake = dir.join("lake");
    run(
        "specs/examples/updown-features.yaml",
        &trades,
        &lake,
        "2",
        None,
    );
    let models = dir.join("models");
    let out = Command::new(python)
        .arg(repo().join("examples/train/train.py"))
        .arg("--features")
        .arg(lake.join("features"))
        .arg("--out")
        .arg(&models)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "train.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (trades, models)
}

/// For the swap tests: the trades and both trained models (A, the trees; B, the logistic
/// regression), and the file the spec reads, holding A.
fn swappable_models(
    dir: &Path,
    python: &str,
) -> (
    std::path::PathBuf,
    [std::path::PathBuf; 2],
    std::path::PathBuf,
) {
    let (trades, models) = train(dir, python);
    let (a, b) = (
        models.join("updown-gbt.onnx"),
        models.join("updown-logit.onnx"),
    );
    let current = dir.join("current.onnx");
    std::fs::copy(&a, &current).unwrap();
    (trades, [a, b], current)
}

fn oracle(python: &str, scored: &Path, models: &[&Path]) -> String {
    let check = Command::new(python)
        .args(["-c", ORACLE])
        .arg(scored)
        .args(models)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{report}");
    report
}

#[test]
fn models_trained_in_python_score_in_the_stream_as_onnxruntime_scores_them() {
    let Some(python) = python() else {
        return;
    };
    // 1. The pipeline writes the features; 2. Python trains and exports the models.
    let dir = tempfile::tempdir().unwrap();
    let (trades, models) = train(dir.path(), &python);

    // One more kind of scikit-learn graph the onnx plugin evaluates itself: a random forest (no
    // post transform, no base values); trained on random features, which is all the oracle
    // needs.
    let out = Command::new(&python)
        .args(["-c", MORE_MODELS])
        .arg(&models)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 3. tickflow scores with each model, on 1 and 2 workers; onnxruntime checks every row.
    for model in ["updown-gbt", "updown-logit", "updown-forest"] {
        let file = models.join(format!("{model}.onnx"));
        for workers in ["1", "2"] {
            let scored = dir.path().join(format!("{model}-{workers}"));
            run(
                "specs/examples/updown-score.yaml",
                &trades,
                &scored,
                workers,
                Some(&file),
            );
            oracle(&python, &scored.join("scored"), &[&file]);
        }
    }
}

/// A model file replaced while the pipeline runs: a file that is not a model is refused (the
/// old model keeps scoring), the next good one is swapped in; every row says which model scored
/// it, and onnxruntime with that model agrees.
#[test]
fn a_model_replaced_while_running_is_swapped_in_and_every_row_says_which_scored_it() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (trades, [a, b], current) = swappable_models(dir.path(), &python);
    // The example spec, paced (6000 s of trades at 600×: about 10 s) and checking its model
    // every 200 ms.
    let text = std::fs::read_to_string(repo().join("specs/examples/updown-score.yaml"))
        .unwrap()
        .replace(
            "max_out_of_orderness: 2s",
            "max_out_of_orderness: 2s\n    speed: 600",
        )
        .replace(
            "    model: ${MODEL:-specs/sample/updown-logit.onnx}",
            "    model: ${MODEL}\n    reload: 200ms",
        );
    let spec = dir.path().join("score.yaml");
    std::fs::write(&spec, text).unwrap();
    let out = dir.path().join("out");
    let mut run = LoggedChild::spawn(
        Command::new(bin())
            .args(["run", "--no-status", "--workers", "2"])
            .arg(&spec)
            .env("TRADES_FILE", &trades)
            .env("OUT_URL", &out)
            .env("MODEL", &current)
            .env("TICKFLOW_PLUGINS", plugins()),
    );
    // The swaps start once the pipeline runs (planning compiles the plugin, which takes seconds
    // when it is not cached yet).
    run.wait_for_log("starting pipeline", 1, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2));
    replace_file(&current, b"not a model at all");
    std::thread::sleep(Duration::from_secs(2));
    replace_file(&current, &std::fs::read(&b).unwrap());
    let (status, log) = run.wait(Duration::from_secs(120));
    assert!(status.success(), "{log}");
    assert!(
        log.contains("the new model is refused; the current model keeps scoring"),
        "{log}"
    );
    assert!(log.contains("model swapped"), "{log}");
    let report = oracle(&python, &out.join("scored"), &[&a, &b]);
    // Both models scored rows: the swap happened mid-run.
    assert!(
        report.contains("'updown-gbt.onnx'") && report.contains("'updown-logit.onnx'"),
        "{report}"
    );
}

const PACED_START: i64 = 1_764_000_000_000;

/// Where [`produce_paced`]'s `n` trades end (a minute after the last).
fn paced_stop_at(n: u64) -> i64 {
    PACED_START + 40 * n as i64 + 60_000
}

/// A model's version as rows carry it: the FNV-1a hash of its bytes, 16 hex digits.
fn version_of(model: &Path) -> String {
    let h = std::fs::read(model)
        .unwrap()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{h:016x}")
}

/// Trades as a feed writes them to `topic`, paced at `per_sec`: keyed by symbol (20), each
/// record's Kafka timestamp its trade time, out of order (5% up to 4 s back: some later than the
/// 2 s allowed), a malformed record now and then; then one record per partition at the returned
/// `stop_at` (after every trade), where a source with that `stop_at:` ends.
fn produce_paced(
    brokers: &str,
    topic: &str,
    partitions: i32,
    n: u64,
    per_sec: u64,
) -> (i64, std::thread::JoinHandle<()>) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let start = PACED_START;
    let stop_at = paced_stop_at(n);
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let topic = topic.to_string();
    let handle = std::thread::spawn(move || {
        let mut state = 7u64;
        let mut rnd = |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        let send = |record: BaseRecord<'_, str, str>| {
            let mut record = record;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        producer.poll(Duration::from_millis(10));
                        record = r;
                    }
                }
            }
        };
        let began = std::time::Instant::now();
        let mut clock = start;
        for i in 0..n {
            clock += rnd(40) as i64;
            let sym = format!("S{:02}", rnd(20));
            let mut t = clock;
            if rnd(20) == 0 {
                t -= rnd(4_000) as i64;
            }
            let value = if i % 997 == 500 {
                format!("garbage {i}")
            } else {
                format!(
                    "{{\"p\":{}.{},\"s\":\"{sym}\",\"t\":{t},\"v\":{}}}",
                    50 + rnd(20),
                    rnd(100),
                    1 + rnd(9)
                )
            };
            send(
                BaseRecord::to(&topic)
                    .key(sym.as_str())
                    .payload(value.as_str())
                    .timestamp(t),
            );
            // Paced: `per_sec` on average.
            if i % 100 == 0 {
                producer.poll(Duration::ZERO);
                let due = Duration::from_secs_f64(i as f64 / per_sec as f64);
                if let Some(wait) = due.checked_sub(began.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        for p in 0..partitions {
            send(
                BaseRecord::to(&topic)
                    .partition(p)
                    .payload("end")
                    .timestamp(stop_at),
            );
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    });
    (stop_at, handle)
}

/// A model replaced while a checkpointed pipeline reads a live topic: every worker swaps when
/// the next checkpoint completes, so no output file (one per worker and checkpoint) mixes two
/// models; killed (-9) after the swap and restarted on another worker count, the run writes
/// every bar exactly once, each symbol's bars by the old model and then by the new one, and
/// onnxruntime agrees with every score.
#[test]
fn a_model_swapped_at_a_checkpoint_survives_kill_9_with_every_row_once() {
    swap_at_a_checkpoint_then_kill_9(1, 2);
}

/// The same on a cluster of 2 processes: the process that reads the model file tells the other
/// when to swap, and sends it the model.
#[test]
fn a_model_swapped_at_a_checkpoint_on_a_cluster_survives_kill_9() {
    swap_at_a_checkpoint_then_kill_9(2, 1);
}

/// Run 1 on `processes` × `threads` workers, killed after the swap; run 2 on 1 worker.
fn swap_at_a_checkpoint_then_kill_9(processes: usize, threads: usize) {
    let Some(python) = python() else {
        return;
    };
    let Some(brokers) = crate::kafka::brokers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, [a, b], current) = swappable_models(dir.path(), &python);
    let topic = crate::kafka::create_topic(&brokers, 4);
    // 60,000 trades (20 minutes of trades: about 4,800 bars), produced over about 10 s once run
    // 1 runs: some 24 bars per symbol between two checkpoints.
    let trades = 60_000;
    let stop_at = jiff::Timestamp::from_millisecond(paced_stop_at(trades)).unwrap();
    let text = std::fs::read_to_string(repo().join("specs/examples/updown-score.yaml"))
        .unwrap()
        .replace(
            "    type: replay\n    path: ${TRADES_FILE:-specs/sample/trades.jsonl}\n",
            &format!("    type: kafka\n    brokers: ${{KAFKA_BROKERS}}\n    topic: ${{TRADES_TOPIC}}\n    stop_at: {stop_at}\n"),
        )
        .replace(
            "      vwap:   { fn: vwap }\n",
            "      vwap:   { fn: vwap }\n      trades: { fn: count }\n",
        )
        // 5-second bars: several batches per worker between two checkpoints, so a model
        // swapped anywhere but at a checkpoint would show in a file.
        .replace("window: { type: tumbling, size: 1m }", "window: { type: tumbling, size: 5s }")
        .replace(
            "    model: ${MODEL:-specs/sample/updown-logit.onnx}",
            "    model: ${MODEL}\n    reload: 100ms",
        )
        + "checkpoints:\n  path: ${OUT_URL}/checkpoints\n  interval: 1s\n";
    assert!(
        text.contains("type: kafka")
            && text.contains("trades: { fn: count }")
            && text.contains("size: 5s")
    );
    let spec = dir.path().join("swap.yaml");
    std::fs::write(&spec, text).unwrap();
    let out = dir.path().join("out");
    let peers: Vec<String> = (0..processes)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let run = |workers: usize, process: Option<usize>| {
        let mut cmd = Command::new(bin());
        cmd.args(["run", "--no-status", "--workers", &workers.to_string()])
            .arg(&spec)
            .env("KAFKA_BROKERS", &brokers)
            .env("TRADES_TOPIC", &topic)
            .env("OUT_URL", &out)
            .env("MODEL", &current)
            .env("TICKFLOW_PLUGINS", plugins());
        if let Some(p) = process {
            cmd.args(["--process", &p.to_string(), "--peers", &peers.join(",")]);
        }
        LoggedChild::spawn(&mut cmd)
    };
    let checkpoints = out.join("checkpoints");
    let wait_checkpoint = |runs: &mut [LoggedChild], after: u64| {
        let started = std::time::Instant::now();
        while crate::kafka::latest_checkpoint(&checkpoints) <= after {
            for run in runs.iter_mut() {
                assert!(
                    started.elapsed() < Duration::from_secs(60)
                        && run.child.try_wait().unwrap().is_none(),
                    "no checkpoint after {after}: {}",
                    run.log()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };

    // Run 1: model A; B replaces it once a checkpoint is in; every worker swaps; killed a random
    // moment after a checkpoint completed with B scoring.
    let mut first: Vec<LoggedChild> = if processes == 1 {
        vec![run(threads, None)]
    } else {
        (0..processes).map(|p| run(threads, Some(p))).collect()
    };
    for r in first.iter_mut() {
        r.wait_for_log("starting pipeline", 1, Duration::from_secs(120));
    }
    let (_, producer) = produce_paced(&brokers, &topic, 4, trades, 6_000);
    wait_checkpoint(&mut first, 1);
    replace_file(&current, &std::fs::read(&b).unwrap());
    for r in first.iter_mut() {
        r.wait_for_log("model swapped", threads, Duration::from_secs(30));
    }
    let swapped_at = crate::kafka::latest_checkpoint(&checkpoints);
    wait_checkpoint(&mut first, swapped_at);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    std::thread::sleep(Duration::from_millis(seed % 1000));
    for r in first.iter_mut() {
        assert!(
            r.child.try_wait().unwrap().is_none(),
            "run 1 ended before it was killed: {}",
            r.log()
        );
    }
    let logs: Vec<String> = first.into_iter().map(LoggedChild::kill).collect();
    // Only the first worker reads the file.
    assert!(
        logs[0].contains("every worker swaps to it when the next checkpoint completes"),
        "{}",
        logs[0]
    );
    assert!(
        logs[1..]
            .iter()
            .all(|l| !l.contains("every worker swaps to it")),
        "{logs:?}"
    );

    // Run 2, on 1 worker: restored, reads on to `stop_at`.
    producer.join().unwrap();
    let (status, log) = run(1, None).wait(Duration::from_secs(120));
    assert!(status.success(), "{log}");
    assert!(log.contains("restored from checkpoint"), "{log}");

    // Every bar exactly once, as computed from the topic's records independently.
    let records = crate::kafka::read_topic(&brokers, &topic, 4);
    let records: Vec<_> = records
        .into_iter()
        .filter(|(_, _, v)| v != b"end")
        .collect();
    let (expected, late, _) = crate::kafka::kafka_oracle_windows(&records, 2_000, 5_000);
    assert!(late > 0, "some trades are late");
    let scored = out.join("scored");
    let (names, rows) = read_parquet_dir(&scored);
    crate::kafka::assert_bars_equal(&rows, &expected, &format!("seed {seed}"));

    // No file mixes the two models; each symbol is scored by A, then by B.
    let version = names.iter().position(|n| n == "model_version").unwrap();
    let mut files = Vec::new();
    crate::support::collect_files(&scored, "parquet", &mut files);
    for f in &files {
        let (_, rows) = read_parquet_file(f);
        let versions: std::collections::BTreeSet<String> =
            rows.iter().map(|r| format!("{:?}", r[version])).collect();
        assert_eq!(versions.len(), 1, "{}: {versions:?}", f.display());
    }
    let mut by_symbol: std::collections::BTreeMap<String, Vec<(i64, String)>> = Default::default();
    for r in &rows {
        if let (Cell::Str(s), Cell::I64(t), Cell::Str(v)) = (&r[0], &r[1], &r[version]) {
            by_symbol
                .entry(s.clone())
                .or_default()
                .push((*t, v.clone()));
        }
    }
    let (va, vb) = (version_of(&a), version_of(&b));
    let mut seen = std::collections::BTreeSet::new();
    for (symbol, mut bars) in by_symbol {
        bars.sort();
        let b_from = bars
            .iter()
            .position(|(_, v)| *v == vb)
            .unwrap_or(bars.len());
        assert!(
            bars[..b_from].iter().all(|(_, v)| *v == va)
                && bars[b_from..].iter().all(|(_, v)| *v == vb),
            "seed {seed}: {symbol} is not scored by A ({va}) then B ({vb}): {bars:?}"
        );
        seen.extend(bars.into_iter().map(|(_, v)| v));
    }
    assert_eq!(seen.len(), 2, "both models scored: {seen:?}");
    // And onnxruntime agrees with every score, by the model each row names.
    let report = oracle(&python, &scored, &[&a, &b]);
    assert!(
        report.contains("'updown-gbt.onnx'") && report.contains("'updown-logit.onnx'"),
        "{report}"
    );
}

/// `tickflow validate` on a spec of bars → features → `model` (the step's lines given), with the
/// plugins of `plugins/dist`: (exit code, report).
fn validate_model(model_lines: &str, dir: &Path) -> (i32, String) {
    let spec = format!(
        "name: m\nsources:\n  trades: {{ type: replay, path: {trades} }}\nsteps:\n  bars:\n    type: window\n    input: trades\n    window: {{ type: tumbling, size: 1m }}\n    aggregates:\n      open: {{ fn: first, field: price }}\n      close: {{ fn: last, field: price }}\n      vwap: {{ fn: vwap }}\n  feats:\n    type: derive\n    input: bars\n    columns: {{ ret: \"close / open - 1\", gap: \"close / vwap - 1\" }}\n  scored:\n    type: model\n    input: feats\n{model_lines}\nsinks:\n  out: {{ type: parquet, input: scored, path: {out} }}\n",
        trades = repo().join("specs/sample/trades.jsonl").display(),
        out = dir.join("out").display(),
    );
    let path = dir.join("spec.yaml");
    std::fs::write(&path, spec).unwrap();
    let out = Command::new(bin())
        .arg("validate")
        .arg(&path)
        .env("TICKFLOW_PLUGINS", plugins())
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "spec.yaml");
    (out.status.code().unwrap(), report)
}

#[test]
fn validate_checks_a_plugins_config_and_model_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let dist = plugins();
    // A config the plugin's JSON Schema refuses: at the field, before any run.
    let (code, report) = validate_model(
        &format!(
            "    plugin: {}\n    inputs: {{ close: close, vwap: vwap }}\n    config: {{ weights: [1, 2, 3] }}",
            dist.join("updown.wasm").display()
        ),
        dir.path(),
    );
    assert_eq!(code, 2, "{report}");
    assert!(
        report
            .contains("spec.yaml:22:24: steps.scored.config.weights: value has less than 4 items")
            && report.contains("the plugin's config schema"),
        "{report}"
    );
    // The same plugin with 4 weights is fine.
    let (code, report) = validate_model(
        &format!(
            "    plugin: {}\n    inputs: {{ close: close, vwap: vwap }}\n    config: {{ weights: [0.1, 2, 3, -1] }}",
            dist.join("updown.wasm").display()
        ),
        dir.path(),
    );
    assert_eq!(code, 0, "{report}");

    // The onnx plugin: a model of another width, an output it does not have, no model at all.
    let model = repo().join("specs/sample/updown-logit.onnx");
    let onnx = |lines: &str| validate_model(&format!("    plugin: onnx\n{lines}"), dir.path());
    let (code, report) = onnx(&format!(
        "    model: {}\n    inputs: [ret, gap]\n    outputs: {{ probabilities: {{ p_down: 0 }} }}",
        model.display()
    ));
    assert_eq!(code, 2, "{report}");
    assert!(
        report.contains("steps.scored.model: plugin `onnx` refused it: init: the model's input `features` has 4 features, but `inputs` lists 2 columns"),
        "{report}"
    );
    let (code, report) = onnx(&format!(
        "    model: {}\n    inputs: [ret, gap, open, close]\n    outputs: {{ probability: p }}",
        model.display()
    ));
    assert_eq!(code, 2, "{report}");
    assert!(
        report
            .contains("the model has no output `probability` (its outputs: label, probabilities)"),
        "{report}"
    );
    let (code, report) = onnx("    inputs: [ret, gap]\n    outputs: { variable: score }");
    assert_eq!(code, 2, "{report}");
    assert!(report.contains("give the step a `model:` file"), "{report}");
    let (code, report) = onnx(&format!(
        "    model: {}\n    inputs: [ret, gap, open, close]\n    outputs: {{ probabilities: {{ p_down: 0, p_up: 5 }} }}",
        model.display()
    ));
    assert_eq!(code, 2, "{report}");
    assert!(
        report.contains(
            "`outputs.probabilities.p_up`: index 5, but the output has 3 values per row (0 to 2)"
        ),
        "{report}"
    );
    let (code, report) = onnx(&format!(
        "    model: {}\n    inputs: [ret, gap, open, close]\n    outputs: {{ probabilities: {{ p_down: 0, p_flat: 1, p_up: 2 }}, label: signal }}",
        model.display()
    ));
    assert_eq!(code, 0, "{report}");
}

#[test]
fn an_operator_the_onnx_runtime_lacks_is_named_at_validate() {
    let Some(python) = python() else {
        return;
    };
    // A scikit-learn classifier exported with its default ZipMap (a list of maps), which tract
    // does not run.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("zipmap.onnx");
    let script = r#"
import sys, numpy as np
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
x = np.array([[0, 1], [1, 0], [1, 1], [0, 0]], dtype=np.float32)
m = LogisticRegression().fit(x, [0, 1, 1, 0])
onx = to_onnx(m, initial_types=[("features", FloatTensorType([None, 2]))], target_opset={"": 17, "ai.onnx.ml": 3})
open(sys.argv[1], "wb").write(onx.SerializeToString())
"#;
    let out = Command::new(&python)
        .args(["-c", script])
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, report) = validate_model(
        &format!(
            "    plugin: onnx\n    model: {}\n    inputs: [ret, gap]\n    outputs: {{ label: signal }}",
            model.display()
        ),
        dir.path(),
    );
    assert_eq!(code, 2, "{report}");
    assert!(
        report.contains("the model uses operator `ZipMap`, which the onnx plugin's runtime (tract 0.23) does not implement (scikit-learn classifiers: export with skl2onnx's `options={'zipmap': False}`)"),
        "{report}"
    );
}

/// A plugin built for the previous contract (tickflow:model@0.2.0, no SDK) still scores rows.
#[test]
fn plugins_of_the_previous_contract_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = validate_model(
        &format!(
            "    plugin: {}\n    config: {{ factor: 3 }}",
            plugins().join("legacy-v02.wasm").display()
        ),
        dir.path(),
    );
    assert_eq!(code, 0, "{report}");
    let out = Command::new(bin())
        .args(["run", "--no-status"])
        .arg(dir.path().join("spec.yaml"))
        .env("TICKFLOW_PLUGINS", plugins())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (names, rows) = crate::support::read_parquet_dir(&dir.path().join("out"));
    let at = |n: &str| names.iter().position(|c| c == n).unwrap();
    assert!(rows.len() > 100, "{}", rows.len());
    for r in &rows {
        match (&r[at("close")], &r[at("scaled")]) {
            (crate::support::Cell::F64(c), crate::support::Cell::F64(s)) => {
                assert_eq!(*s, c * 3.0, "{r:?}")
            }
            other => panic!("{other:?}"),
        }
    }
}
