use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The repository root. (The manifest folder as cargo gives it when it runs the tests: a test
/// binary reused from a build cache shared with a checkout elsewhere holds that checkout's path.)
pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .expect("runtime/ has a parent")
        .to_path_buf()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tickflow")
}

/// What the test generator puts into a replay file.
#[derive(Clone, Debug)]
pub struct Frames {
    pub seed: u64,
    pub trades: usize,
    pub symbols: usize,
    /// Mean gap between trades (ms).
    pub gap_ms: i64,
    pub disorder_rate: f64,
    pub disorder_ms: i64,
    pub invalid_rate: f64,
    pub malformed_rate: f64,
    /// Symbol names to draw from (empty: `S0`, `S1`, ... up to `symbols`).
    pub names: &'static [&'static str],
    /// The first trade's time (ms since the epoch).
    pub start_ms: i64,
}

impl Default for Frames {
    fn default() -> Self {
        Frames {
            seed: 1,
            trades: 3000,
            symbols: 5,
            gap_ms: 150,
            disorder_rate: 0.1,
            disorder_ms: 20_000,
            invalid_rate: 0.03,
            malformed_rate: 0.01,
            names: &[],
            start_ms: 1_764_000_000_000,
        }
    }
}

/// Writes Finnhub frames (JSONL) with disorder, invalid trades, pings, error frames and
/// malformed lines, independently of tickflow's own generator.
pub fn write_frames(f: &Frames, path: &Path) {
    let mut rng = SmallRng::seed_from_u64(f.seed);
    let mut out = String::new();
    let mut clock: i64 = f.start_ms;
    let mut written = 0;
    while written < f.trades {
        let roll: f64 = rng.random();
        if roll < 0.02 {
            out.push_str("{\"type\":\"ping\"}\n");
            continue;
        }
        if roll < 0.025 {
            out.push_str("{\"msg\":\"Invalid symbol XYZ\",\"type\":\"error\"}\n");
            continue;
        }
        if roll < 0.025 + f.malformed_rate {
            out.push_str(
                [
                    "{\"data\":[{\"p\":1",
                    "not json",
                    "{\"data\":{},\"type\":\"trade\"}",
                    "[]",
                    "{\"data\":[]}",
                ][rng.random_range(0..5)],
            );
            out.push('\n');
            continue;
        }
        let n = rng.random_range(1..=4usize);
        let mut items = Vec::new();
        for _ in 0..n {
            clock += rng.random_range(0..=2 * f.gap_ms);
            let mut t = clock;
            if rng.random::<f64>() < f.disorder_rate {
                t -= rng.random_range(0..=f.disorder_ms);
            }
            // Coarse timestamps: event-time ties and watermarks exactly on window ends are common.
            t -= t.rem_euclid(250);
            let sym = if f.names.is_empty() {
                format!("S{}", rng.random_range(0..f.symbols))
            } else {
                f.names[rng.random_range(0..f.names.len())].to_string()
            };
            // Prices with few digits and volumes that make ties and zero volumes likely.
            let p = rng.random_range(1..=400) as f64 / 4.0;
            let v = [0.0, 0.5, 1.0, 2.0, 100.0, 0.001][rng.random_range(0..6)];
            let item = if rng.random::<f64>() < f.invalid_rate {
                match rng.random_range(0..8) {
                    // A clock gone wrong (year 9999) and a symbol too long to be one.
                    6 => format!("{{\"p\":{p},\"s\":\"{sym}\",\"t\":253402300799999,\"v\":{v}}}"),
                    7 => format!(
                        "{{\"p\":{p},\"s\":\"{}\",\"t\":{t},\"v\":{v}}}",
                        "S".repeat(65)
                    ),
                    0 => format!("{{\"p\":-{p},\"s\":\"{sym}\",\"t\":{t},\"v\":{v}}}"),
                    1 => format!("{{\"p\":{p},\"t\":{t},\"v\":{v}}}"),
                    2 => format!("{{\"p\":{p},\"s\":\"{sym}\",\"t\":\"{t}\",\"v\":{v}}}"),
                    3 => format!("{{\"p\":{p},\"s\":\"{sym}\",\"t\":{t},\"v\":-1}}"),
                    4 => format!("{{\"p\":0,\"s\":\"{sym}\",\"t\":{t},\"v\":{v}}}"),
                    _ => "17".to_string(),
                }
            } else {
                let c = ["", "\"c\":null,", "\"c\":[],", "\"c\":[\"1\",\"12\"],"]
                    [rng.random_range(0..4)];
                format!("{{{c}\"p\":{p},\"s\":\"{sym}\",\"t\":{t},\"v\":{v}}}")
            };
            items.push(item);
            written += 1;
        }
        out.push_str(&format!(
            "{{\"data\":[{}],\"type\":\"trade\"}}\n",
            items.join(",")
        ));
    }
    std::fs::write(path, out).expect("write frames");
}

/// A row read back from Parquet, with every column as a comparable value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Str(String),
    F64(f64),
    I64(i64),
    List(Vec<String>),
    Bool(bool),
}

/// Reads every `*.parquet` below `dir` (recursively): column names and rows.
pub fn read_parquet_dir(dir: &Path) -> (Vec<String>, Vec<Vec<Cell>>) {
    let mut files = Vec::new();
    collect_files(dir, "parquet", &mut files);
    files.sort();
    let mut names = Vec::new();
    let mut rows = Vec::new();
    for file in files {
        let (n, mut r) = read_parquet_file(&file);
        if !n.is_empty() {
            names = n;
        }
        rows.append(&mut r);
    }
    (names, rows)
}

/// One Parquet file: column names and rows.
pub fn read_parquet_file(file: &Path) -> (Vec<String>, Vec<Vec<Cell>>) {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut names = Vec::new();
    let mut rows = Vec::new();
    for batch in reader {
        let batch: RecordBatch = batch.unwrap();
        names = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        for r in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| cell(c.as_ref(), r))
                    .collect(),
            );
        }
    }
    (names, rows)
}

fn cell(col: &dyn Array, r: usize) -> Cell {
    use arrow_schema::DataType::*;
    if col.is_null(r) {
        return Cell::Null;
    }
    match col.data_type() {
        Utf8 => Cell::Str(col.as_string::<i32>().value(r).to_string()),
        Float64 => Cell::F64(col.as_primitive::<Float64Type>().value(r)),
        Int64 => Cell::I64(col.as_primitive::<Int64Type>().value(r)),
        Timestamp(_, _) => Cell::I64(col.as_primitive::<TimestampMillisecondType>().value(r)),
        Boolean => Cell::Bool(col.as_boolean().value(r)),
        List(_) => {
            let items = col.as_list::<i32>().value(r);
            let strings = items.as_string::<i32>();
            Cell::List(
                (0..strings.len())
                    .map(|i| strings.value(i).to_string())
                    .collect(),
            )
        }
        other => panic!("unexpected column type {other}"),
    }
}

pub fn collect_files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// Dead letters (JSONL) below `dir`: reason code → count, and all records.
pub fn read_dead_letters(dir: &Path) -> (HashMap<String, usize>, Vec<serde_json::Value>) {
    let mut files = Vec::new();
    collect_files(dir, "jsonl", &mut files);
    let mut counts = HashMap::new();
    let mut all = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            *counts
                .entry(v["reason"].as_str().unwrap().to_string())
                .or_default() += 1;
            all.push(v);
        }
    }
    (counts, all)
}

/// Runs a spec (text) in-process with `workers` threads and a small replay block size (so that
/// several workers really share the file).
pub fn run_spec(
    spec: &str,
    env: &[(&str, String)],
    workers: usize,
    block_size: usize,
) -> tickflow::metrics::Metrics {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let loaded = tickflow::spec::load_str("test.yaml", spec, &|k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = tickflow::plan::build(&loaded).unwrap_or_else(|e| panic!("{e}"));
    let mut opts = tickflow::dataflow::RunOptions::new(workers);
    opts.block_size = Some(block_size);
    let metrics = std::sync::Arc::clone(&opts.metrics);
    tickflow::dataflow::run(plan, opts).expect("run");
    std::sync::Arc::try_unwrap(metrics).expect("the run is over")
}

/// Builds every example plugin with `plugins/build` (once per test run) and returns
/// `plugins/dist`.
pub fn plugins() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = std::process::Command::new(repo().join("plugins/build"))
                .current_dir(repo())
                .output()
                .expect("running plugins/build");
            assert!(
                out.status.success(),
                "plugins/build failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            repo().join("plugins/dist")
        })
        .clone()
}

/// Runs `cmd` with `input` on its standard input; its standard output and error are captured.
pub fn run_with_input(cmd: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// A spawned run whose stderr is collected as it comes (a reader thread), so a test can wait
/// for a log line while it runs.
pub struct LoggedChild {
    pub child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl LoggedChild {
    pub fn spawn(cmd: &mut std::process::Command) -> LoggedChild {
        let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
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
        LoggedChild {
            child,
            log,
            reader: Some(reader),
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until the log holds `what` `times` times; panics if the run ends
    /// first or the time runs out.
    pub fn wait_for_log(&mut self, what: &str, times: usize, limit: std::time::Duration) {
        let started = std::time::Instant::now();
        while self.log.lock().unwrap().matches(what).count() < times {
            assert!(
                started.elapsed() < limit && self.child.try_wait().unwrap().is_none(),
                "waiting for `{what}` in the log: {}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Waits (at most `limit`, else kills it and panics) for the run to end: its status and log.
    pub fn wait(mut self, limit: std::time::Duration) -> (std::process::ExitStatus, String) {
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the run did not end within {limit:?}: {}", self.log());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.log())
    }

    /// kill -9, then the log.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.log()
    }
}
