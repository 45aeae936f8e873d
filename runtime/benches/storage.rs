//! Parquet publish throughput: the sink's writer (Parquet encoding, put under `_pending/`, rename
//! into place) to the local filesystem and to the GCS emulator, against a plain put of the same
//! bytes in objects of the same size (object_store's raw put: the ceiling).
//!
//!     cargo bench --bench storage [-- --rows 2000000 --file-rows 250000]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use compact_str::CompactString;
use tickflow::base::record::{Field, FieldType, Row, Schema, Value};
use tickflow::base::storage::Storage;
use tickflow::metrics::Metrics;
use tickflow::output::rolling::RollingSpec;
use tickflow::output::rolling::{Format, RollingWriter};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn bars(n: usize) -> (Schema, Vec<Row>) {
    let f = |name: &str, ty| Field::new(name, ty, true);
    let schema = Schema {
        fields: vec![
            f("symbol", FieldType::Utf8),
            f("window_start", FieldType::Timestamp),
            f("open", FieldType::Float64),
            f("high", FieldType::Float64),
            f("low", FieldType::Float64),
            f("close", FieldType::Float64),
            f("volume", FieldType::Float64),
            f("vwap", FieldType::Float64),
            f("trades", FieldType::Int64),
        ],
    };
    let symbols: Vec<CompactString> = (0..500)
        .map(|i| CompactString::from(format!("S{i:03}")))
        .collect();
    let mut state = 1u64;
    let rows = (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let p = 100.0 + (state >> 40) as f64 / (1u64 << 24) as f64;
            vec![
                Value::Str(symbols[i % 500].clone()),
                Value::Ts(1_764_000_000_000 + (i / 500) as i64 * 60_000),
                Value::F64(p),
                Value::F64(p * 1.001),
                Value::F64(p * 0.999),
                Value::F64(p * 1.0005),
                Value::F64((state >> 50) as f64),
                Value::F64(p * 1.0002),
                Value::I64((state >> 56) as i64),
            ]
        })
        .collect();
    (schema, rows)
}

/// The project's GCS emulator on a free port.
fn emulator(repo: &std::path::Path) -> (std::process::Child, u16) {
    let dir = std::env::temp_dir().join(format!("tickflow-bench-gcs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port_file = dir.join("port");
    let _ = std::fs::remove_file(&port_file);
    let child = Command::new("python3")
        .arg(repo.join("deploy/local/gcs_emulator.py"))
        .args(["--port", "0", "--bucket", "bench", "--port-file"])
        .arg(&port_file)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 runs the GCS emulator");
    for _ in 0..200 {
        if let Some(port) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return (child, port);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the GCS emulator did not start");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(&args, "--rows")
        .map(|s| s.parse().unwrap())
        .unwrap_or(2_000_000);
    let file_rows: u64 = arg(&args, "--file-rows")
        .map(|s| s.parse().unwrap())
        .unwrap_or(250_000);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let (schema, rows) = bars(n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut emu, port) = emulator(repo);
    // SAFETY: set before any thread reads the environment (the runtime's threads do not).
    unsafe { std::env::set_var("GCS_EMULATOR_URL", format!("http://127.0.0.1:{port}")) };
    let local = tempfile_dir();
    println!("{n} bar rows (9 columns), files of {file_rows} rows, zstd level 3");
    for (name, url) in [
        ("local filesystem", local.display().to_string()),
        ("GCS emulator", "gs://bench/run".to_string()),
    ] {
        let storage = Storage::open(&url, rt.handle().clone()).unwrap();
        let metrics = Arc::new(Metrics::default());
        let rolling = RollingSpec {
            max_rows: file_rows,
            ..RollingSpec::default()
        };
        let mut writer = RollingWriter::new(
            storage.clone(),
            schema.clone(),
            Format::Parquet { zstd_level: 3 },
            rolling,
            Vec::new(),
            "bench".into(),
            Arc::clone(&metrics),
            true,
        );
        let started = Instant::now();
        for row in &rows {
            writer.push(row).unwrap();
        }
        writer.flush_all().unwrap();
        let secs = started.elapsed().as_secs_f64();
        let bytes = Metrics::get(&metrics.bytes_published) as f64;
        let files = Metrics::get(&metrics.files_published).max(1);
        println!(
            "{name:<17} publish  {:>10.0} rows/s  {:>7.1} MB/s  ({files} files, {:.1} MB)",
            n as f64 / secs,
            bytes / secs / 1e6,
            bytes / 1e6
        );
        // The ceiling: the same bytes as plain puts of objects of the same size.
        let size = (bytes / files as f64) as usize;
        let payload = vec![7u8; size];
        let started = Instant::now();
        for i in 0..files {
            storage.put(&format!("raw/{i}"), payload.clone()).unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name:<17} raw put  {:>10}          {:>7.1} MB/s",
            "",
            bytes / secs / 1e6
        );
    }
    let _ = emu.kill();
    let _ = std::fs::remove_dir_all(&local);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tickflow-bench-local-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
