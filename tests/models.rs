//! Models trained in Python, scored by the stock `onnx` plugin: the training loop of
//! examples/train/ on the features a pipeline wrote, and every scored row checked against
//! onnxruntime (an independent ONNX engine) on the same features.

use std::path::Path;
use std::process::Command;

use crate::support::{bin, plugins, repo};

fn python() -> Option<String> {
    std::env::var("TICKFLOW_TEST_PYTHON").ok()
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

/// onnxruntime scores the feature columns of every row tickflow scored; both must agree.
const ORACLE: &str = r#"
import glob, sys
import numpy as np, pyarrow.parquet as pq, onnxruntime as ort
model, folder = sys.argv[1], sys.argv[2]
rows = []
for f in sorted(glob.glob(folder + "/**/*.parquet", recursive=True)):
    rows.extend(pq.read_table(f).to_pylist())
x = np.array([[np.nan if r[c] is None else r[c] for c in ("ret", "range", "vwap_gap", "log_volume")]
              for r in rows], dtype=np.float32)
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
label, prob = sess.run(["label", "probabilities"], {"features": x})
worst, bad, nulls = 0.0, 0, 0
for r, l, p in zip(rows, label, prob):
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
print(f"{len(rows)} rows, classes {classes}, {nulls} NULL scores, worst relative difference {worst:.2e}, {bad} disagreements")
sys.exit(1 if bad or len(rows) < 200 or len(classes) < 2 else 0)
"#;

#[test]
fn models_trained_in_python_score_in_the_stream_as_onnxruntime_scores_them() {
    let Some(python) = python() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs this test: set TICKFLOW_TEST_PYTHON (scripts/test does)"
        );
        eprintln!("skipped: TICKFLOW_TEST_PYTHON is not set (scripts/test sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    generate_trades(&trades);

    // 1. The pipeline writes the features; 2. Python trains and exports the models.
    let lake = dir.path().join("lake");
    run(
        "specs/examples/updown-features.yaml",
        &trades,
        &lake,
        "2",
        None,
    );
    let models = dir.path().join("models");
    let out = Command::new(&python)
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
            let check = Command::new(&python)
                .args(["-c", ORACLE])
                .arg(&file)
                .arg(scored.join("scored"))
                .output()
                .unwrap();
            assert!(
                check.status.success(),
                "{model}, {workers} worker(s): {}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
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
        assert!(
            std::env::var("CI").is_err(),
            "CI runs this test: set TICKFLOW_TEST_PYTHON"
        );
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
