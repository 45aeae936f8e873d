use std::path::Path;
use std::process::Command;

use crate::support::{Cell, bin, plugins, read_dead_letters, read_parquet_dir, repo};

fn check(file: &Path) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(["plugin", "check"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `bytes` with every occurrence of `from` replaced by `to` (same length).
fn patched(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut found = false;
    for i in 0..out.len().saturating_sub(from.len()) {
        if &out[i..i + from.len()] == from.as_bytes() {
            out[i..i + from.len()].copy_from_slice(to.as_bytes());
            found = true;
        }
    }
    assert!(found, "`{from}` not in the component");
    out
}

#[test]
fn plugin_check_describes_plugins_and_refuses_what_is_not_one() {
    let dist = plugins();
    let (code, stdout, stderr) = check(&dist.join("forecast.wasm"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("name:    forecast\nversion: 0.1.0\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("inputs:  key: text, close: float64, vwap: float64\n")
            && stdout.contains("outputs: forecast_return: float64, forecast_close: float64\n")
            && stdout.contains("imports: tickflow:model/types@0.3.0 (types only)"),
        "{stdout}"
    );
    for p in ["anomaly", "updown", "hostile"] {
        let (code, stdout, stderr) = check(&dist.join(format!("{p}.wasm")));
        assert_eq!(code, 0, "{p}: {stderr}");
        assert!(stdout.contains(&format!("name:    {p}\n")), "{stdout}");
    }

    let dir = tempfile::tempdir().unwrap();
    let refused = |name: &str, bytes: &[u8], want: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, _, stderr) = check(&path);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: {stderr}");
    };
    refused(
        "readme.wasm",
        b"# not wasm at all",
        "is not a WebAssembly file",
    );
    let core_module = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo().join("target"))
        .join("wasm32-unknown-unknown/plugin/forecast.wasm");
    refused(
        "core.wasm",
        &std::fs::read(core_module).unwrap(),
        "is a core WebAssembly module, not a component",
    );
    let forecast = std::fs::read(dist.join("forecast.wasm")).unwrap();
    refused(
        "future.wasm",
        &patched(
            &forecast,
            "tickflow:model/types@0.3.0",
            "tickflow:model/types@0.9.0",
        ),
        "was built for tickflow:model@0.9.0; this tickflow runs tickflow:model@0.3.0 and tickflow:model@0.2.0",
    );
    refused(
        "no-process.wasm",
        &patched(&forecast, "process", "procesz"),
        "does not export `process`",
    );
    let wasi = std::fs::read(dist.join("hostile-wasi.wasm")).unwrap();
    refused("wasi.wasm", &wasi, "imports WASI (`wasi:");
    refused("wasi.wasm", &wasi, "plugins get no WASI capability");
}

fn generate_trades(path: &Path, trades: u64) {
    let out = Command::new(bin())
        .args([
            "generate",
            "--trades",
            &trades.to_string(),
            "--symbols",
            "12",
            "--seed",
            "5",
            "--mean-gap-ms",
            "100",
        ])
        .arg("--out")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_forecast(trades: &Path, out: &Path, workers: &str) {
    let result = Command::new(bin())
        .args([
            "run",
            "specs/forecast.yaml",
            "--no-status",
            "--workers",
            workers,
        ])
        .current_dir(repo())
        .env("TRADES_FILE", trades)
        .env("OUT_URL", out)
        .env("PLUGINS", plugins())
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

fn f64_of(c: &Cell) -> Option<f64> {
    match c {
        Cell::F64(x) => Some(*x),
        Cell::Null => None,
        other => panic!("{other:?}"),
    }
}

#[test]
fn forecast_spec_scores_bars_identically_for_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    generate_trades(&trades, 60_000);
    run_forecast(&trades, &dir.path().join("one"), "1");
    run_forecast(&trades, &dir.path().join("two"), "2");
    let (names, mut one) = read_parquet_dir(&dir.path().join("one/scored"));
    let (_, mut two) = read_parquet_dir(&dir.path().join("two/scored"));
    let key = |r: &Vec<Cell>| format!("{:?}{:?}", r[0], r[1]);
    one.sort_by_key(key);
    two.sort_by_key(key);
    assert!(one.len() > 100, "{}", one.len());
    assert_eq!(
        format!("{one:?}"),
        format!("{two:?}"),
        "1 and 2 workers differ"
    );
    for col in [
        "close",
        "forecast_return",
        "forecast_close",
        "volume_z",
        "return_z",
        "anomaly",
    ] {
        assert!(
            names.iter().any(|n| n == col),
            "{col} missing from {names:?}"
        );
    }

    // Oracle for the anomaly plugin's volume_z: EWMA mean/variance per symbol over the bars in
    // window order, each bar scored against the bars before it (alpha 0.1, warmup 5).
    let at = |n: &str| names.iter().position(|c| c == n).unwrap();
    let (sym, volume, vz, close, fc, fr) = (
        at("symbol"),
        at("volume"),
        at("volume_z"),
        at("close"),
        at("forecast_close"),
        at("forecast_return"),
    );
    let mut state: std::collections::HashMap<String, (f64, f64, u64)> = Default::default();
    let mut checked = 0;
    for r in &one {
        let Cell::Str(s) = &r[sym] else { panic!() };
        let x = f64_of(&r[volume]).unwrap();
        let (mean, var, n) = state.entry(s.clone()).or_insert((0.0, 0.0, 0));
        let want = (*n >= 5 && *var > 0.0).then(|| (x - *mean) / var.sqrt());
        match (want, f64_of(&r[vz])) {
            (Some(w), Some(got)) => {
                assert!(
                    (w - got).abs() <= 1e-9 * w.abs().max(1.0),
                    "{s}: {w} vs {got}"
                );
                checked += 1;
            }
            (None, None) => {}
            other => panic!("{s}: volume_z {other:?}"),
        }
        if *n == 0 {
            *mean = x;
        } else {
            let d = x - *mean;
            *mean += 0.1 * d;
            *var = 0.9 * (*var + 0.1 * d * d);
        }
        *n += 1;
        // forecast_close = close · (1 + forecast_return), both null until a symbol's third bar.
        if let (Some(c), Some(r_), Some(f)) = (f64_of(&r[close]), f64_of(&r[fr]), f64_of(&r[fc])) {
            assert!((f - c * (1.0 + r_)).abs() < 1e-9 * c);
        }
    }
    assert!(checked > 50, "{checked}");
}

/// A spec scoring the sample's bars with the hostile plugin.
fn hostile_spec(mode: u32, trigger: Option<f64>, on_error: &str) -> String {
    let trigger = trigger
        .map(|t| format!(", trigger: {t}"))
        .unwrap_or_default();
    // A short deadline for the endless loop (mode 1); a roomy one for the others, so that on a
    // busy machine the failure under test (a memory cap, a trap, bad output) comes first.
    let timeout = if mode == 1 { "50ms" } else { "5s" };
    format!(
        "name: hostile
sources:
  trades: {{ type: replay, path: {sample} }}
steps:
  bars:
    type: window
    input: trades
    window: {{ type: tumbling, size: 1m }}
    aggregates:
      close: {{ fn: last, field: price }}
  score:
    type: model
    input: bars
    plugin: {plugin}
    config: {{ mode: {mode}{trigger} }}
    on_error: {on_error}
    timeout: {timeout}
    max_memory: 16MiB
sinks:
  out: {{ type: parquet, input: score, path: OUT/scored }}
dead_letters: {{ path: OUT/dead }}
",
        sample = repo().join("specs/sample/trades.jsonl").display(),
        plugin = plugins().join("hostile.wasm").display(),
    )
}

fn run_hostile(spec: &str, dir: &Path) -> std::process::Output {
    let path = dir.join("spec.yaml");
    std::fs::write(&path, spec.replace("OUT", &dir.display().to_string())).unwrap();
    crate::hardening::output_within(
        Command::new(bin())
            .args(["run", "--no-status", "--workers", "2"])
            .arg(&path),
        std::time::Duration::from_secs(120),
    )
}

#[test]
fn hostile_plugins_are_contained_and_the_pipeline_goes_on() {
    // The well-behaved run gives every bar; pick one close value to trigger the misbehaviour.
    let dir = tempfile::tempdir().unwrap();
    let good = run_hostile(&hostile_spec(0, None, "fail"), dir.path());
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let (names, rows) = read_parquet_dir(&dir.path().join("scored"));
    let close = names.iter().position(|n| n == "close").unwrap();
    let total = rows.len();
    assert!(total > 10);
    let trigger = f64_of(&rows[total / 2][close]).unwrap();

    for (mode, kind) in [
        (1, "timeout: the call ran past its deadline"),
        (2, "memory_cap: memory cap of 16 MiB reached"),
        (3, "trap:"),
        (4, "bad_output: column `out` has"),
        (5, "memory_cap:"),
        (6, "bad_output: column `out` is text, declared float64"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = run_hostile(
            &hostile_spec(mode, Some(trigger), "dead_letter"),
            dir.path(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "mode {mode}: {stderr}");
        let (_, scored) = read_parquet_dir(&dir.path().join("scored"));
        let (counts, letters) = read_dead_letters(&dir.path().join("dead"));
        let failed = counts.get("plugin_error").copied().unwrap_or(0);
        assert!(failed >= 1, "mode {mode}: {counts:?}");
        assert_eq!(
            scored.len() + failed,
            total,
            "mode {mode}: every bar scored or dead-lettered"
        );
        let plugin_letters: Vec<_> = letters
            .iter()
            .filter(|l| l["reason"] == "plugin_error")
            .collect();
        assert!(
            plugin_letters
                .iter()
                .all(|l| l["detail"].as_str().unwrap().contains(kind)),
            "mode {mode}: {:?}",
            plugin_letters[0]
        );
        // The failed batch held the trigger; the instance was rebuilt for the next batches.
        assert!(
            scored.iter().all(|r| f64_of(&r[close]) != Some(trigger)),
            "mode {mode}"
        );
    }

    // skip: dropped and counted; fail: the run stops with the reason.
    let dir = tempfile::tempdir().unwrap();
    let out = run_hostile(&hostile_spec(3, Some(trigger), "skip"), dir.path());
    assert!(out.status.success());
    let (_, scored) = read_parquet_dir(&dir.path().join("scored"));
    assert!(scored.len() < total && !scored.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let out = run_hostile(&hostile_spec(1, Some(trigger), "fail"), dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("step `score`: plugin `hostile`: timeout: the call ran past its deadline"),
        "{stderr}"
    );
    // A trap on an early bar, with most of the input still to come: the run ends (exit 1,
    // the reason printed once) instead of holding its rows forever.
    let early = f64_of(&rows[1][close]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run_hostile(&hostile_spec(3, Some(early), "fail"), dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("plugin `hostile`: trap").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn a_plugin_whose_inputs_do_not_fit_is_refused_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hostile_spec(0, None, "fail")
        .replace(
            "close: { fn: last, field: price }",
            "last: { fn: last, field: price }",
        )
        .replace("OUT", &dir.path().display().to_string());
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, spec).unwrap();
    let out = Command::new(bin())
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("steps.score.inputs.close: plugin input `close` needs a field; `close` is not one of the incoming fields (symbol, window_start, window_end, last)"),
        "{stderr}"
    );
}

/// `graph` labels are one line each, whatever a plugin says about itself.
#[test]
fn graph_labels_of_model_steps_stay_on_one_line() {
    plugins();
    for format in ["dot", "mermaid"] {
        let out = Command::new(bin())
            .args(["graph", "specs/forecast.yaml", "--format", format])
            .current_dir(repo())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("model forecast"), "{text}");
        for line in text.lines().skip(1) {
            assert!(
                line.starts_with("  ") || line == "}",
                "{format}: a label broke the line: {line:?}\n{text}"
            );
        }
    }
}
