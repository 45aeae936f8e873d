//! Expression evaluation: a `derive` of 5 expressions over 10 M bar rows, tickflow against DuckDB
//! evaluating the same expressions over the same rows (read from one Parquet file) in the same
//! invocation.
//!
//!     cargo bench --bench expressions                  # 10 M rows
//!     cargo bench --bench expressions -- --rows 2000000
//!
//! tickflow is timed twice, on one thread: the expressions over Arrow columns (what the kernels
//! cost), and the derive step's whole path (rows → columns → expressions → rows). DuckDB is timed
//! from an in-memory table to a materialized result (`CREATE TABLE r AS SELECT ...`), with 1 and
//! with 2 threads. Prints rows/s and the ratios.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use compact_str::CompactString;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tickflow::base::record::{Field, FieldType, Row, Schema, Value};
use tickflow::expr::{Batch, Expr, from_rows, values_of};

const EXPRS: &[&str] = &[
    "close / open - 1",
    "high - low",
    "vwap * volume",
    "close > open AND volume > 0",
    "CASE WHEN trades > 10 THEN 'busy' ELSE 'quiet' END",
];
const BATCH: usize = 8192;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn schema() -> Schema {
    Schema {
        fields: vec![
            Field::new("symbol", FieldType::Utf8, false),
            Field::new("window_start", FieldType::Timestamp, false),
            Field::new("open", FieldType::Float64, false),
            Field::new("high", FieldType::Float64, false),
            Field::new("low", FieldType::Float64, false),
            Field::new("close", FieldType::Float64, false),
            Field::new("volume", FieldType::Float64, false),
            Field::new("vwap", FieldType::Float64, true),
            Field::new("trades", FieldType::Int64, false),
        ],
    }
}

fn batches(rows: usize) -> Vec<Vec<ArrayRef>> {
    let mut rng = SmallRng::seed_from_u64(7);
    let symbols: Vec<String> = (0..500).map(|i| format!("SYM{i:04}")).collect();
    let mut out = Vec::new();
    let mut done = 0;
    while done < rows {
        let n = BATCH.min(rows - done);
        let open: Vec<f64> = (0..n).map(|_| rng.random_range(10.0..500.0)).collect();
        let close: Vec<f64> = open
            .iter()
            .map(|o| o * rng.random_range(0.98..1.02))
            .collect();
        let high: Vec<f64> = open
            .iter()
            .zip(&close)
            .map(|(o, c)| o.max(*c) * 1.01)
            .collect();
        let low: Vec<f64> = open
            .iter()
            .zip(&close)
            .map(|(o, c)| o.min(*c) * 0.99)
            .collect();
        let volume: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..10_000.0)).collect();
        let vwap: Vec<f64> = open
            .iter()
            .zip(&close)
            .map(|(o, c)| (o + c) / 2.0)
            .collect();
        let trades: Vec<i64> = (0..n).map(|_| rng.random_range(1..40)).collect();
        out.push(vec![
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| &symbols[(done + i) % 500]),
            )) as ArrayRef,
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    (0..n).map(|i| 1_764_000_000_000 + ((done + i) / 500) as i64 * 60_000),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from(open)),
            Arc::new(Float64Array::from(high)),
            Arc::new(Float64Array::from(low)),
            Arc::new(Float64Array::from(close)),
            Arc::new(Float64Array::from(volume)),
            Arc::new(Float64Array::from(vwap)),
            Arc::new(Int64Array::from(trades)),
        ]);
        done += n;
    }
    out
}

fn to_rows(cols: &[ArrayRef], schema: &Schema) -> Vec<Row> {
    let values: Vec<Vec<Value>> = cols
        .iter()
        .zip(&schema.fields)
        .map(|(c, f)| values_of(c, tickflow::expr::types::Type::of_field(f.ty)))
        .collect();
    (0..cols[0].len())
        .map(|r| values.iter().map(|v| v[r].clone()).collect())
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = arg(&args, "--rows")
        .map(|s| s.parse().unwrap())
        .unwrap_or(10_000_000);
    let schema = schema();
    let exprs: Vec<Expr> = EXPRS
        .iter()
        .map(|t| Expr::compile(t, &schema).unwrap())
        .collect();
    let data = batches(rows);
    println!(
        "{rows} rows of bars, {} expressions: {}",
        EXPRS.len(),
        EXPRS.join(" | ")
    );

    // 1. Over Arrow columns.
    let started = Instant::now();
    let mut checksum = 0usize;
    for cols in &data {
        let batch = Batch {
            columns: cols.iter().cloned().map(Some).collect(),
            rows: cols[0].len(),
        };
        for e in &exprs {
            checksum += arrow_array::Array::null_count(&e.eval(&batch).unwrap());
        }
    }
    let columnar = started.elapsed().as_secs_f64();

    // 2. The derive step's path: rows → columns → expressions → values into the rows.
    let row_batches: Vec<Vec<Row>> = data.iter().map(|c| to_rows(c, &schema)).collect();
    let needed: Vec<usize> = (0..schema.fields.len()).collect();
    let started = Instant::now();
    for rows_in in row_batches {
        let batch = from_rows(&rows_in, &schema, &needed);
        let mut out = rows_in;
        for e in &exprs {
            let a = e.eval(&batch).unwrap();
            for (row, v) in out.iter_mut().zip(values_of(&a, e.ty())) {
                row.push(v);
            }
        }
        checksum += out.len();
    }
    let derive = started.elapsed().as_secs_f64();
    let _ = (checksum, CompactString::from(""));

    // 3. DuckDB on the same rows.
    let dir = std::env::temp_dir().join(format!("tickflow-bench-expr-{rows}"));
    std::fs::create_dir_all(&dir).unwrap();
    let parquet = dir.join("bars.parquet");
    {
        let arrow_schema = tickflow::output::encode::arrow_schema(&schema);
        let file = std::fs::File::create(&parquet).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, arrow_schema.clone(), None).unwrap();
        for cols in &data {
            w.write(&RecordBatch::try_new(arrow_schema.clone(), cols.clone()).unwrap())
                .unwrap();
        }
        w.close().unwrap();
    }
    let python = duckdb_python();
    let script = format!(
        r#"
import duckdb, time
for threads in (1, 2):
    con = duckdb.connect()
    con.execute(f"set threads = {{threads}}")
    con.execute("create table t as select * from read_parquet('{}')")
    best = None
    for _ in range(3):
        con.execute("drop table if exists r")
        t0 = time.perf_counter()
        con.execute("create table r as select {} from t")
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    print(threads, best)
"#,
        parquet.display(),
        EXPRS
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{e} as e{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let out = Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let duck: Vec<f64> = text
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    let rate = |secs: f64| rows as f64 / secs / 1e6;
    println!(
        "tickflow, Arrow columns, 1 thread     {:>8.1} M rows/s   {columnar:.3} s",
        rate(columnar)
    );
    println!(
        "tickflow, derive path (rows), 1 thread {:>7.1} M rows/s   {derive:.3} s",
        rate(derive)
    );
    println!(
        "DuckDB, 1 thread                       {:>7.1} M rows/s   {:.3} s",
        rate(duck[0]),
        duck[0]
    );
    println!(
        "DuckDB, 2 threads                      {:>7.1} M rows/s   {:.3} s",
        rate(duck[1]),
        duck[1]
    );
    println!(
        "ratios: columns / DuckDB 1 thread = {:.2}, derive path / DuckDB 1 thread = {:.2}, columns / DuckDB 2 threads = {:.2} (target ≥ 1.0)",
        duck[0] / columnar,
        duck[0] / derive,
        duck[1] / columnar
    );
}

/// A Python with DuckDB: the benches' own venv (as `pipeline --peers`).
fn duckdb_python() -> PathBuf {
    let venv = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/tickflow/peers-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        assert!(
            Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status()
                .unwrap()
                .success()
        );
    }
    if !Command::new(&python)
        .args(["-c", "import duckdb"])
        .status()
        .unwrap()
        .success()
    {
        assert!(
            Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "duckdb"
                ])
                .status()
                .unwrap()
                .success()
        );
    }
    python
}
