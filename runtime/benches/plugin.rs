//! Model plugin throughput: the `forecast` plugin (RLS regression) through the wasmtime host
//! against the same model compiled natively, and the per-call overhead.
//!
//!     plugins/build forecast
//!     cargo bench --bench plugin [-- --rows 2000000 --batch 4096]

use std::time::Instant;

use tickflow::plugins::host_types::{Column, text_column};
use tickflow::plugins::{Instance, Limits};
use tickflow_plugin::Model;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = arg(&args, "--rows")
        .map(|s| s.parse().unwrap())
        .unwrap_or(2_000_000);
    let batch: usize = arg(&args, "--batch")
        .map(|s| s.parse().unwrap())
        .unwrap_or(4096);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let path = repo.join("plugins/dist/forecast.wasm");
    let plugin = tickflow::plugins::load(&path)
        .unwrap_or_else(|e| panic!("{e}\n(build the plugins first: plugins/build forecast)"));

    // 500 symbols, bars in key order within each batch, a random walk per symbol.
    let symbols: Vec<String> = (0..500).map(|i| format!("S{i:03}")).collect();
    let mut state = 7u64;
    let mut price = vec![100.0f64; symbols.len()];
    let mut keys = Vec::with_capacity(rows);
    let mut close = Vec::with_capacity(rows);
    let mut vwap = Vec::with_capacity(rows);
    for i in 0..rows {
        let s = i % symbols.len();
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        price[s] *= 1.0 + ((state >> 33) % 2001) as f64 / 1e6 - 0.001;
        keys.push(symbols[s].clone());
        close.push(price[s]);
        vwap.push(price[s] * 0.9995);
    }
    println!("{rows} rows, 500 symbols, batches of {batch} rows, forecast (RLS, 4 features)");

    // Native: the same crate, called directly.
    let mut native = forecast::Forecast::init("{}").unwrap();
    let started = Instant::now();
    let mut checksum = 0.0;
    for start in (0..rows).step_by(batch) {
        let end = (start + batch).min(rows);
        let b = tickflow_plugin::Batch {
            names: vec!["key".into(), "close".into(), "vwap".into()],
            columns: vec![
                tickflow_plugin::Column::Text(keys[start..end].to_vec()),
                tickflow_plugin::Column::Float64(close[start..end].to_vec()),
                tickflow_plugin::Column::Float64(vwap[start..end].to_vec()),
            ],
        };
        let out = native.process(&b).unwrap();
        if let tickflow_plugin::Column::Float64(v) = &out[0] {
            checksum += v.iter().filter(|x| x.is_finite()).sum::<f64>();
        }
    }
    let native_secs = started.elapsed().as_secs_f64();

    // Through the host: columns built, call, output checked.
    let mut instance =
        Instance::new(plugin, "{}".into(), Vec::new().into(), Limits::default()).unwrap();
    let started = Instant::now();
    let mut checksum_wasm = 0.0;
    for start in (0..rows).step_by(batch) {
        let end = (start + batch).min(rows);
        let columns = vec![
            text_column(keys[start..end].iter().map(String::as_str)),
            Column::Float64(close[start..end].to_vec()),
            Column::Float64(vwap[start..end].to_vec()),
        ];
        let out = instance.process(columns, end - start).unwrap();
        if let Column::Float64(v) = &out[0] {
            checksum_wasm += v.iter().filter(|x| x.is_finite()).sum::<f64>();
        }
    }
    let wasm_secs = started.elapsed().as_secs_f64();
    assert!(
        (checksum - checksum_wasm).abs() <= 1e-9 * checksum.abs().max(1.0),
        "native and plugin disagree: {checksum} vs {checksum_wasm}"
    );
    let (n, w) = (rows as f64 / native_secs, rows as f64 / wasm_secs);
    println!("native   {n:>12.0} rows/s");
    println!(
        "plugin   {w:>12.0} rows/s   ({:.0}% of native)",
        100.0 * w / n
    );

    // Per-call overhead: one-row calls.
    let calls = 20_000;
    let started = Instant::now();
    for i in 0..calls {
        let columns = vec![
            text_column([keys[i].as_str()]),
            Column::Float64(vec![close[i]]),
            Column::Float64(vec![vwap[i]]),
        ];
        instance.process(columns, 1).unwrap();
    }
    let per_call = started.elapsed().as_secs_f64() / calls as f64;
    println!("per call (1 row) {:.1} µs", per_call * 1e6);
}
