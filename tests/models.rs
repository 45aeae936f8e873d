//! Models trained in Python, scored by the stock `onnx` plugin: the training loop of
//! examples/train/ on the features a pipeline wrote, and every scored row checked against
//! onnxruntime (an independent ONNX engine) on the same features.

use std::path::Path;
use std::process::Command;

use crate::support::{bin, plugins, repo};

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

    // 3. tickflow scores with each model, on 1 and 2 workers; onnxruntime checks every row.
    for model in ["updown-gbt", "updown-logit"] {
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
    let (trades, models) = train(dir.path(), &python);
    let (a, b) = (
        models.join("updown-gbt.onnx"),
        models.join("updown-logit.onnx"),
    );
    let current = dir.path().join("current.onnx");
    std::fs::copy(&a, &current).unwrap();
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
    let mut child = Command::new(bin())
        .args(["run", "--no-status", "--workers", "2"])
        .arg(&spec)
        .env("TRADES_FILE", &trades)
        .env("OUT_URL", &out)
        .env("MODEL", &current)
        .env("TICKFLOW_PLUGINS", plugins())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The log, read as it comes: the swaps start once the pipeline runs (planning compiles the
    // plugin, which takes seconds when it is not cached yet).
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (log, mut stderr) = (std::sync::Arc::clone(&log), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stderr, &mut buf) {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let started = std::time::Instant::now();
    while !log.lock().unwrap().contains("starting pipeline") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120)
                && child.try_wait().unwrap().is_none(),
            "the run did not start: {}",
            log.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let replace = |from: &[u8]| {
        let tmp = dir.path().join("next.onnx");
        std::fs::write(&tmp, from).unwrap();
        std::fs::rename(&tmp, &current).unwrap();
    };
    std::thread::sleep(std::time::Duration::from_secs(2));
    replace(b"not a model at all");
    std::thread::sleep(std::time::Duration::from_secs(2));
    replace(&std::fs::read(&b).unwrap());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("the run did not end within 2 minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
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
