//! Partitioned, rolling output files: rows go to the open file of their partition folder
//! (`date=2026-11-27/`); a file is published when it reaches `max_rows`/`max_bytes`, when it has
//! been open for `max_age`, and at the end of a run. Each worker writes its own files.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use anyhow::Result;
use foldhash::HashMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::encode::ParquetEncoder;
use crate::base::calendar::Align;
use crate::base::record::{FieldType, Row, Schema, Value, format_date, format_ts};
use crate::base::storage::Storage;
use crate::base::storage::spill::Encoded;
use crate::base::units::{ByteSize, Duration};
use crate::checkpoint::PendingFile;
use crate::metrics::Metrics;

/// A file is closed and published when any limit is reached, and always at the end of a run.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollingSpec {
    /// Maximum rows per file.
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    /// Maximum (encoded) bytes per file (Parquet: estimated every 256 rows, so a file can pass it
    /// by up to 256 rows).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Maximum time a file stays open (wall clock) before it is published.
    #[serde(default = "default_max_age")]
    pub max_age: Duration,
}

impl Default for RollingSpec {
    fn default() -> Self {
        RollingSpec {
            max_rows: default_max_rows(),
            max_bytes: default_max_bytes(),
            max_age: default_max_age(),
        }
    }
}

pub const fn default_max_rows() -> u64 {
    1_000_000
}
pub const fn default_max_bytes() -> ByteSize {
    ByteSize(128 << 20)
}
pub const fn default_max_age() -> Duration {
    Duration::secs(60)
}

/// Output file format.
#[derive(Debug, Clone, Copy)]
pub enum Format {
    Parquet { zstd_level: i32 },
    Jsonl,
}

/// How a row's partition folder is derived.
#[derive(Debug, Clone)]
pub enum Partition {
    /// `date=` of a timestamp column: its UTC date, or its market date.
    Date(usize, Option<Arc<Align>>),
    Hour(usize),
    Field(String, usize),
}

impl Partition {
    /// Resolves `partition_by` names against `schema`; `time_index` serves `date`/`hour`, and
    /// `market` (a market-time window's) reckons the dates.
    pub fn resolve(
        names: &[String],
        schema: &Schema,
        time_index: Option<usize>,
        market: Option<&Arc<Align>>,
    ) -> Vec<Partition> {
        names
            .iter()
            .filter_map(|n| match n.as_str() {
                "date" => time_index.map(|i| Partition::Date(i, market.cloned())),
                "hour" => time_index.map(Partition::Hour),
                other => schema
                    .index_of(other)
                    .map(|i| Partition::Field(other.to_string(), i)),
            })
            .collect()
    }

    /// Appends the folder name of `row` to `out`; `day` caches the last UTC date rendered.
    fn render(&self, row: &Row, out: &mut String, day: &mut (i64, String)) {
        let ts = |i: usize| match row.get(i) {
            Some(Value::Ts(t)) => Some(*t),
            _ => None,
        };
        match self {
            Partition::Date(i, market) => {
                out.push_str("date=");
                match (ts(*i), market) {
                    (Some(t), Some(m)) => {
                        use std::fmt::Write;
                        let _ = write!(out, "{}", m.date_of(t));
                    }
                    (Some(t), None) => {
                        let d = t.div_euclid(86_400_000);
                        if day.1.is_empty() || day.0 != d {
                            *day = (d, format_date(t));
                        }
                        out.push_str(&day.1);
                    }
                    (None, _) => out.push_str("unknown"),
                }
            }
            Partition::Hour(i) => {
                out.push_str("hour=");
                out.push_str(
                    &ts(*i)
                        .map(|t| format!("{:02}", t.rem_euclid(86_400_000) / 3_600_000))
                        .unwrap_or_else(|| "unknown".into()),
                );
            }
            Partition::Field(name, i) => {
                out.push_str(name);
                out.push('=');
                match row.get(*i) {
                    Some(Value::Str(s)) => hive_escape(s, out),
                    _ => out.push_str(HIVE_NULL),
                }
            }
        }
    }
}

/// Hive's folder name for a null or empty partition value (what Spark, Hive and DuckDB read
/// back as null).
pub const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// The longest partition value written as is (escaped); longer ones are cut and suffixed with
/// a hash so that a folder name stays within file-system limits (255 bytes).
const MAX_PARTITION_VALUE: usize = 200;

/// Appends `value` escaped as Hive escapes partition folder names (`FileUtils.escapePathName`):
/// `%XX` for control characters and `"#%'*/:=?\{[]^`. Readers with Hive partitioning (DuckDB,
/// Spark, pyarrow) decode it back to the exact value: `BINANCE:BTCUSDT` → `BINANCE%3ABTCUSDT`.
pub fn hive_escape(value: &str, out: &mut String) {
    use std::fmt::Write;
    if value.is_empty() {
        out.push_str(HIVE_NULL);
        return;
    }
    let start = out.len();
    // Readers take these folder names for NULL (DuckDB: any case of `null`): escaping the first
    // letter keeps them the strings they are.
    let reads_as_null = value.eq_ignore_ascii_case("null") || value == HIVE_NULL;
    for (i, c) in value.chars().enumerate() {
        if i == 0 && reads_as_null {
            let _ = write!(out, "%{:02X}", c as u32);
            continue;
        }
        match c {
            '\u{0}'..='\u{1f}'
            | '\u{7f}'
            | '"'
            | '#'
            | '%'
            | '\''
            | '*'
            | '/'
            | ':'
            | '='
            | '?'
            | '\\'
            | '{'
            | '['
            | ']'
            | '^' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    if out.len() - start > MAX_PARTITION_VALUE {
        // NB: only reachable for free-text fields; symbols are at most 64 bytes.
        let mut cut = start + MAX_PARTITION_VALUE - 20;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        let _ = write!(out, "~{:016x}", crate::base::keys::key_hash(value));
    }
}

enum Encoder {
    Parquet(ParquetEncoder),
    Jsonl { buf: Vec<u8>, rows: u64 },
}

struct OpenFile {
    encoder: Encoder,
    opened: Instant,
}

pub struct RollingWriter {
    storage: Storage,
    schema: Schema,
    format: Format,
    rolling: RollingSpec,
    partitions: Vec<Partition>,
    open: HashMap<String, OpenFile>,
    file_prefix: String,
    seq: u64,
    metrics: Arc<Metrics>,
    count_rows: bool,
    /// Exactly-once mode: closed files stay pending until a checkpoint publishes them.
    two_phase: Option<String>,
    pending: Vec<PendingFile>,
    /// The partition folder of the row being pushed (kept to reuse its buffer).
    key: String,
    /// The last UTC date a `date=` partition rendered.
    day: (i64, String),
}

impl RollingWriter {
    pub fn new(
        storage: Storage,
        schema: Schema,
        format: Format,
        rolling: RollingSpec,
        partitions: Vec<Partition>,
        file_prefix: String,
        metrics: Arc<Metrics>,
        count_rows: bool,
    ) -> Self {
        RollingWriter {
            storage,
            schema,
            format,
            rolling,
            partitions,
            open: HashMap::default(),
            file_prefix,
            seq: 0,
            metrics,
            count_rows,
            two_phase: None,
            pending: Vec::new(),
            key: String::new(),
            day: (0, String::new()),
        }
    }

    /// Keeps closed files pending (for checkpoints); `path` is the sink's configured path.
    pub fn two_phase(mut self, path: &str) -> Self {
        self.two_phase = Some(path.to_string());
        self
    }

    /// Closes every open file and hands over the pending ones.
    pub fn precommit(&mut self) -> Result<Vec<PendingFile>> {
        self.flush_all()?;
        Ok(std::mem::take(&mut self.pending))
    }

    pub fn push(&mut self, row: &Row) -> Result<()> {
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        for (i, p) in self.partitions.iter().enumerate() {
            if i > 0 {
                key.push('/');
            }
            p.render(row, &mut key, &mut self.day);
        }
        let file = match self.open.get_mut(&key) {
            Some(file) => file,
            None => {
                let encoder = match self.format {
                    Format::Parquet { zstd_level } => {
                        Encoder::Parquet(ParquetEncoder::new(&self.schema, zstd_level)?)
                    }
                    Format::Jsonl => Encoder::Jsonl {
                        buf: Vec::new(),
                        rows: 0,
                    },
                };
                self.open.entry(key.clone()).or_insert(OpenFile {
                    encoder,
                    opened: Instant::now(),
                })
            }
        };
        let full = match &mut file.encoder {
            Encoder::Parquet(enc) => {
                enc.push(row)?;
                // The size estimate walks every column writer: checked every 256 rows.
                enc.rows() >= self.rolling.max_rows
                    || (enc.rows() % 256 == 0
                        && enc.approx_bytes() as u64 >= self.rolling.max_bytes.0)
            }
            Encoder::Jsonl { buf, rows } => {
                write_json_row(&self.schema, row, buf);
                *rows += 1;
                *rows >= self.rolling.max_rows || buf.len() as u64 >= self.rolling.max_bytes.0
            }
        };
        if full {
            self.close(&key)?;
        }
        self.key = key;
        Ok(())
    }

    /// Publishes files that have been open longer than `max_age`.
    pub fn roll_aged(&mut self) -> Result<()> {
        let max_age = self.rolling.max_age.to_std();
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= max_age)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.close(&key)?;
        }
        Ok(())
    }

    /// When the oldest open file becomes due, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|f| f.opened + self.rolling.max_age.to_std())
            .min()
    }

    /// Publishes every open file.
    pub fn flush_all(&mut self) -> Result<()> {
        let mut keys: Vec<String> = self.open.keys().cloned().collect();
        keys.sort();
        for key in keys {
            self.close(&key)?;
        }
        Ok(())
    }

    fn close(&mut self, key: &str) -> Result<()> {
        let Some(file) = self.open.remove(key) else {
            return Ok(());
        };
        let (bytes, rows, ext) = match file.encoder {
            Encoder::Parquet(enc) => {
                let rows = enc.rows();
                (enc.finish()?, rows, "parquet")
            }
            Encoder::Jsonl { buf, rows } => (Encoded::Memory(buf), rows, "jsonl"),
        };
        if rows == 0 {
            return Ok(());
        }
        self.seq += 1;
        let name = format!("{}-{:05}.{ext}", self.file_prefix, self.seq);
        let rel = if key.is_empty() {
            name
        } else {
            format!("{key}/{name}")
        };
        let len = bytes.len();
        match &self.two_phase {
            Some(path) => {
                let pending = self.storage.write_pending(&rel, bytes)?;
                self.pending.push(PendingFile {
                    sink: path.clone(),
                    pending,
                    file: rel.clone(),
                });
            }
            None => {
                self.storage.publish(&rel, bytes)?;
                self.metrics.files_published.fetch_add(1, Relaxed);
            }
        }
        self.metrics.bytes_published.fetch_add(len, Relaxed);
        if self.count_rows {
            self.metrics.rows_written.fetch_add(rows, Relaxed);
        }
        tracing::debug!(file = %rel, rows, bytes = len, "published");
        Ok(())
    }
}

/// One row as a JSON object line (`{"column": value, ...}\n`), timestamps as RFC 3339 UTC.
pub fn write_json_row(schema: &Schema, row: &Row, buf: &mut Vec<u8>) {
    let mut obj = serde_json::Map::with_capacity(schema.fields.len());
    for (f, v) in schema.fields.iter().zip(row) {
        let jv = match v {
            Value::Null => serde_json::Value::Null,
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::F64(x) => serde_json::Number::from_f64(*x)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::I64(x) => serde_json::Value::from(*x),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Ts(t) if f.ty == FieldType::Timestamp => {
                serde_json::Value::String(format_ts(*t))
            }
            Value::Ts(t) => serde_json::Value::from(*t),
            Value::StrList(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|s| serde_json::Value::String(s.to_string()))
                    .collect(),
            ),
        };
        obj.insert(f.name.clone(), jv);
    }
    serde_json::to_writer(&mut *buf, &obj).expect("writing JSON to a Vec cannot fail");
    buf.push(b'\n');
}

impl crate::checkpoint::output::TwoPhase for RollingWriter {
    fn precommit(&mut self) -> Result<crate::checkpoint::output::Precommit> {
        RollingWriter::precommit(self).map(Into::into)
    }
    fn publish(&mut self) -> Result<()> {
        self.flush_all()
    }
}
