//! The stock onnx plugin: a scikit-learn gradient-boosted tree ensemble and a logistic
//! regression, 1 M rows in batches, scored three ways in one invocation — through the wasmtime
//! host (the plugin as tickflow runs it), natively (the same crate and tract, outside
//! WebAssembly), and by onnxruntime in Python (an independent engine); rows/s and the latency of
//! one call. The models are trained here by Python (scikit-learn, skl2onnx) on random features.
//!
//!     plugins/build onnx
//!     TICKFLOW_BENCH_PYTHON=.venv-test/bin/python cargo bench --bench onnx [-- --rows 1000000 --batch 4096 --model gbt|logit]

use std::process::Command;
use std::time::Instant;

use tickflow::plugins::host_types::{Column, text_column};
use tickflow::plugins::{Instance, Limits};
use tickflow_plugin::Model;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Trains both models on random features and writes them to `dir`; then times onnxruntime on
/// `rows` rows of the same features in batches of `batch`, printing rows/s per model.
const PYTHON: &str = r#"
import sys, time, numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
import onnxruntime as ort
dir, rows, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(3)
x = rng.normal(size=(20000, 4)).astype(np.float32)
y = np.digitize(x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(scale=0.5, size=len(x)), [-0.5, 0.5])
for name, m in (("gbt", GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=1)),
                ("logit", LogisticRegression(max_iter=1000))):
    m.fit(x, y)
    onx = to_onnx(m, initial_types=[("features", FloatTensorType([None, 4]))],
                  options={id(m): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    open(f"{dir}/{name}.onnx", "wb").write(onx.SerializeToString())
feats = np.fromfile(f"{dir}/features.f64").reshape(-1, 4).astype(np.float32)[:rows]
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1; opts.inter_op_num_threads = 1
for name in ("gbt", "logit"):
    s = ort.InferenceSession(f"{dir}/{name}.onnx", opts, providers=["CPUExecutionProvider"])
    t = time.perf_counter()
    total = 0.0
    for i in range(0, rows, batch):
        total += float(s.run(["probabilities"], {"features": feats[i:i + batch]})[0][:, 2].sum())
    secs = time.perf_counter() - t
    print(f"onnxruntime {name} {rows / secs:.0f} {total:.6f}")
"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = arg(&args, "--rows")
        .map(|s| s.parse().unwrap())
        .unwrap_or(1_000_000);
    let batch: usize = arg(&args, "--batch")
        .map(|s| s.parse().unwrap())
        .unwrap_or(4096);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let plugin = tickflow::plugins::load(&repo.join("plugins/dist/onnx.wasm"))
        .unwrap_or_else(|e| panic!("{e}\n(build it first: plugins/build onnx)"));
    let python = std::env::var("TICKFLOW_BENCH_PYTHON")
        .unwrap_or_else(|_| repo.join(".venv-test/bin/python").display().to_string());
    let dir = tempfile::tempdir().unwrap();

    // Features: a random walk's return, range, VWAP gap and log volume, 500 symbols.
    let mut state = 11u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let mut feats = Vec::with_capacity(rows * 4);
    for _ in 0..rows {
        feats.extend([next(), next().abs(), next() * 0.5, 3.0 * next()]);
    }
    let bytes: Vec<u8> = feats.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(dir.path().join("features.f64"), bytes).unwrap();
    let keys: Vec<String> = (0..rows).map(|i| format!("S{:03}", i % 500)).collect();
    let column = |c: usize, range: std::ops::Range<usize>| -> Vec<f64> {
        range.map(|r| feats[r * 4 + c]).collect()
    };

    println!(
        "{rows} rows of 4 features, batches of {batch} rows; models from scikit-learn via skl2onnx"
    );
    let out = Command::new(&python)
        .args(["-c", PYTHON])
        .arg(dir.path())
        .args([rows.to_string(), batch.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e} (set TICKFLOW_BENCH_PYTHON)"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ort: Vec<(String, f64, f64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let p: Vec<&str> = l.split_whitespace().collect();
            (p.len() == 4).then(|| {
                (
                    p[1].to_string(),
                    p[2].parse().unwrap(),
                    p[3].parse().unwrap(),
                )
            })
        })
        .collect();

    let names = ["key", "f0", "f1", "f2", "f3"];
    let config = r#"{"inputs": ["f0", "f1", "f2", "f3"], "outputs": {"probabilities": {"p_down": 0, "p_flat": 1, "p_up": 2}}}"#;
    let only = arg(&args, "--model");
    for model in ["gbt", "logit"] {
        if only.as_deref().is_some_and(|m| m != model) {
            continue;
        }
        let artifact = std::fs::read(dir.path().join(format!("{model}.onnx"))).unwrap();

        // Natively: the plugin's crate called directly (tract outside WebAssembly).
        let mut native = onnx::Onnx::init_with_artifact(config, &artifact).unwrap();
        let started = Instant::now();
        let mut sum_native = 0.0;
        for start in (0..rows).step_by(batch) {
            let end = (start + batch).min(rows);
            let mut columns = vec![tickflow_plugin::Column::Text(keys[start..end].to_vec())];
            columns.extend((0..4).map(|c| tickflow_plugin::Column::Float64(column(c, start..end))));
            let b = tickflow_plugin::Batch {
                names: names.iter().map(|n| n.to_string()).collect(),
                columns,
            };
            if let tickflow_plugin::Column::Float64(v) = &native.process(&b).unwrap()[2] {
                sum_native += v.iter().sum::<f64>();
            }
        }
        let native_rate = rows as f64 / started.elapsed().as_secs_f64();

        // Through the host, as a model step calls it.
        let mut instance = Instance::new(
            std::sync::Arc::clone(&plugin),
            config.into(),
            artifact.into(),
            Limits {
                timeout: std::time::Duration::from_secs(5),
                max_memory: 256 << 20,
            },
        )
        .unwrap();
        let started = Instant::now();
        let mut sum_wasm = 0.0;
        for start in (0..rows).step_by(batch) {
            let end = (start + batch).min(rows);
            let mut columns = vec![text_column(keys[start..end].iter().map(String::as_str))];
            columns.extend((0..4).map(|c| Column::Float64(column(c, start..end))));
            if let Column::Float64(v) = &instance.process(columns, end - start).unwrap()[2] {
                sum_wasm += v.iter().sum::<f64>();
            }
        }
        let wasm_rate = rows as f64 / started.elapsed().as_secs_f64();
        assert!(
            (sum_native - sum_wasm).abs() <= 1e-6 * sum_native.abs().max(1.0),
            "{model}: native and plugin disagree: {sum_native} vs {sum_wasm}"
        );

        // One call of one row: the latency a single bar sees.
        let calls = 2_000;
        let started = Instant::now();
        for i in 0..calls {
            let mut columns = vec![text_column([keys[i].as_str()])];
            columns.extend((0..4).map(|c| Column::Float64(column(c, i..i + 1))));
            instance.process(columns, 1).unwrap();
        }
        let per_call = started.elapsed().as_secs_f64() / calls as f64;

        let (ort_rate, ort_sum) = ort
            .iter()
            .find(|(n, _, _)| n == model)
            .map(|(_, r, s)| (*r, *s))
            .unwrap_or((f64::NAN, f64::NAN));
        assert!(
            (ort_sum - sum_wasm).abs() <= 1e-4 * ort_sum.abs().max(1.0),
            "{model}: onnxruntime and the plugin disagree: {ort_sum} vs {sum_wasm}"
        );
        println!(
            "{model:<6} plugin {wasm_rate:>10.0} rows/s ({:.0}% of native)   native {native_rate:>10.0} rows/s   onnxruntime (Python, 1 thread) {ort_rate:>10.0} rows/s   one-row call {:.0} µs",
            100.0 * wasm_rate / native_rate,
            per_call * 1e6
        );
    }
}
