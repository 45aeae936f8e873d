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

/// A Parquet file's size estimate walks every column writer: it is checked every this many rows.
const SIZE_CHECK_ROWS: u64 = 256;

/// Whether the Parquet file `enc` is due to close (after a push).
fn parquet_full(enc: &ParquetEncoder, rolling: &RollingSpec) -> bool {
    enc.rows() >= rolling.max_rows
        || (enc.rows().is_multiple_of(SIZE_CHECK_ROWS)
            && enc.approx_bytes() as u64 >= rolling.max_bytes.0)
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

    /// Whether `a` and `b` go to the same folder, without rendering either: if this says so,
    /// [`Self::render`] writes the same name for both (the converse may fail only for a value
    /// written like the NULL folder, which costs a second run into the same file, nothing else).
    fn same(&self, a: &Row, b: &Row) -> bool {
        const DAY: i64 = 86_400_000;
        let ts = |r: &Row, i: usize| match r.get(i) {
            Some(Value::Ts(t)) => Some(*t),
            _ => None,
        };
        match self {
            Partition::Date(i, None) => {
                ts(a, *i).map(|t| t.div_euclid(DAY)) == ts(b, *i).map(|t| t.div_euclid(DAY))
            }
            Partition::Date(i, Some(m)) => match (ts(a, *i), ts(b, *i)) {
                (Some(x), Some(y)) => x == y || m.date_of(x) == m.date_of(y),
                (x, y) => x.is_none() && y.is_none(),
            },
            Partition::Hour(i) => {
                let hour = |r| ts(r, *i).map(|t| t.rem_euclid(DAY) / 3_600_000);
                hour(a) == hour(b)
            }
            Partition::Field(_, i) => match (a.get(*i), b.get(*i)) {
                (Some(Value::Str(x)), Some(Value::Str(y))) => x == y,
                (Some(Value::Str(_)), _) | (_, Some(Value::Str(_))) => false,
                _ => true,
            },
        }
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

    /// Pushes `rows` in order, as [`Self::push`] one by one would: runs of rows of one partition
    /// go to its file together, column by column, in pieces that stop where a file may roll.
    pub fn push_all(&mut self, rows: &[Row]) -> Result<()> {
        if !matches!(self.format, Format::Parquet { .. }) {
            return rows.iter().try_for_each(|r| self.push(r));
        }
        let mut i = 0;
        while i < rows.len() {
            let mut key = std::mem::take(&mut self.key);
            self.render(&rows[i], &mut key);
            let mut end = i + 1;
            while end < rows.len() && self.partitions.iter().all(|p| p.same(&rows[i], &rows[end])) {
                end += 1;
            }
            while i < end {
                let file = Self::file(&mut self.open, self.format, &self.schema, &key)?;
                let Encoder::Parquet(enc) = &mut file.encoder else {
                    unreachable!("a Parquet writer's files are Parquet")
                };
                // Up to the next row count where `push` checks whether the file is full.
                let rows_now = enc.rows();
                let piece = (end - i)
                    .min(self.rolling.max_rows.saturating_sub(rows_now) as usize)
                    .min((SIZE_CHECK_ROWS - rows_now % SIZE_CHECK_ROWS) as usize)
                    .max(1);
                enc.push_rows(&rows[i..i + piece])?;
                i += piece;
                if parquet_full(enc, &self.rolling) {
                    self.close(&key)?;
                }
            }
            self.key = key;
        }
        Ok(())
    }

    /// The partition folder of `row`, into `out` (cleared first).
    fn render(&mut self, row: &Row, out: &mut String) {
        out.clear();
        for (i, p) in self.partitions.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            p.render(row, out, &mut self.day);
        }
    }

    /// The open file of partition `key` in `open`, opened if it is not.
    fn file<'o>(
        open: &'o mut HashMap<String, OpenFile>,
        format: Format,
        schema: &Schema,
        key: &str,
    ) -> Result<&'o mut OpenFile> {
        if !open.contains_key(key) {
            let encoder = match format {
                Format::Parquet { zstd_level } => {
                    Encoder::Parquet(ParquetEncoder::new(schema, zstd_level)?)
                }
                Format::Jsonl => Encoder::Jsonl {
                    buf: Vec::new(),
                    rows: 0,
                },
            };
            let opened = Instant::now();
            open.insert(key.to_string(), OpenFile { encoder, opened });
        }
        Ok(open.get_mut(key).expect("opened above"))
    }

    pub fn push(&mut self, row: &Row) -> Result<()> {
        let mut key = std::mem::take(&mut self.key);
        self.render(row, &mut key);
        let file = Self::file(&mut self.open, self.format, &self.schema, &key)?;
        let full = match &mut file.encoder {
            Encoder::Parquet(enc) => {
                enc.push(row)?;
                parquet_full(enc, &self.rolling)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::record::Field;
    use arrow_array::RecordBatch;
    use compact_str::CompactString;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn schema() -> Schema {
        Schema {
            fields: vec![
                Field::new("symbol", FieldType::Utf8, true),
                Field::new("ts", FieldType::Timestamp, false),
                Field::new("price", FieldType::Float64, true),
                Field::new("n", FieldType::Int64, true),
                Field::new("codes", FieldType::Utf8List, true),
                Field::new("flag", FieldType::Boolean, true),
            ],
        }
    }

    /// Runs of rows over three days (each run one partition), with NULLs of every type.
    fn rows() -> Vec<Row> {
        let runs = [
            (0, 300),
            (1, 5),
            (0, 700),
            (2, 1),
            (1, 513),
            (0, 256),
            (2, 1000),
        ];
        let mut rows = Vec::new();
        for (day, len) in runs {
            for _ in 0..len {
                let i = rows.len() as i64;
                let some = i % 7 != 3;
                rows.push(vec![
                    if some {
                        Value::Str(CompactString::from(format!("S{}", i % 13)))
                    } else {
                        Value::Null
                    },
                    Value::Ts(day * 86_400_000 + i),
                    if some {
                        Value::F64(i as f64 * 0.25)
                    } else {
                        Value::Null
                    },
                    if some { Value::I64(i) } else { Value::Null },
                    if some {
                        Value::StrList(vec![CompactString::from("I")])
                    } else {
                        Value::Null
                    },
                    if some {
                        Value::Bool(i % 2 == 0)
                    } else {
                        Value::Null
                    },
                ]);
            }
        }
        rows
    }

    /// Every file under `dir` (relative name → its rows as one batch).
    fn read(dir: &std::path::Path) -> std::collections::BTreeMap<String, RecordBatch> {
        let mut files = std::collections::BTreeMap::new();
        for day in std::fs::read_dir(dir).unwrap() {
            let day = day.unwrap().path();
            for f in std::fs::read_dir(&day).unwrap() {
                let f = f.unwrap().path();
                let reader =
                    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
                        .unwrap()
                        .build()
                        .unwrap();
                let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
                let batch =
                    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
                let name = f.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                files.insert(name, batch);
            }
        }
        files
    }

    fn write(
        dir: &std::path::Path,
        rt: &tokio::runtime::Runtime,
        push: impl Fn(&mut RollingWriter),
    ) {
        let storage = Storage::open(dir.to_str().unwrap(), rt.handle().clone()).unwrap();
        let schema = schema();
        let partitions = Partition::resolve(&["date".to_string()], &schema, Some(1), None);
        let rolling = RollingSpec {
            max_rows: 300,
            max_bytes: default_max_bytes(),
            max_age: default_max_age(),
        };
        let mut w = RollingWriter::new(
            storage,
            schema,
            Format::Parquet { zstd_level: 3 },
            rolling,
            partitions,
            "part".into(),
            Arc::new(Metrics::default()),
            true,
        );
        push(&mut w);
        w.flush_all().unwrap();
    }

    /// `same` never puts two rows together that `render` would part, and parts none it would
    /// put together but for a value written like the NULL folder.
    #[test]
    fn same_partition_agrees_with_the_rendered_folder() {
        let schema = schema();
        let names = ["date", "hour", "symbol"].map(String::from);
        let partitions = Partition::resolve(&names, &schema, Some(1), None);
        assert_eq!(partitions.len(), 3);
        let mut rows = Vec::new();
        for ts in [
            None,
            Some(-1),
            Some(0),
            Some(3_599_999),
            Some(3_600_000),
            Some(86_399_999),
            Some(86_400_000),
            Some(90_000_000),
        ] {
            for symbol in [None, Some(""), Some("AAPL"), Some("MSFT"), Some("a/b=c")] {
                rows.push(vec![
                    symbol.map_or(Value::Null, |s| Value::Str(CompactString::from(s))),
                    ts.map_or(Value::Null, Value::Ts),
                ]);
            }
        }
        let (mut joined, mut parted) = (0, 0);
        for p in &partitions {
            for a in &rows {
                for b in &rows {
                    let (mut x, mut y, mut day) =
                        (String::new(), String::new(), (0, String::new()));
                    p.render(a, &mut x, &mut day);
                    p.render(b, &mut y, &mut day);
                    let same = p.same(a, b);
                    assert!(
                        !same || x == y,
                        "{p:?}: {a:?} and {b:?} joined as {x} / {y}"
                    );
                    assert!(
                        same || x != y || x.contains(HIVE_NULL),
                        "{p:?}: {a:?} and {b:?} parted, both {x}"
                    );
                    if same { joined += 1 } else { parted += 1 }
                }
            }
        }
        assert!(joined > 0 && parted > 0);
    }

    /// Pushing a batch writes the same files, row for row, as pushing its rows one by one, and
    /// those hold the rows of each day in order, at most `max_rows` per file.
    #[test]
    fn push_all_writes_what_push_writes() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let rows = rows();
        let (one, all) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(one.path(), &rt, |w| {
            rows.iter().for_each(|r| w.push(r).unwrap())
        });
        write(all.path(), &rt, |w| {
            // Batches of uneven sizes, as exchanges deliver them.
            let mut at = 0;
            for size in [1, 1000, 37, 255, 1024].iter().cycle() {
                if at >= rows.len() {
                    break;
                }
                let end = (at + size).min(rows.len());
                w.push_all(&rows[at..end]).unwrap();
                at = end;
            }
        });
        let (one, all) = (read(one.path()), read(all.path()));
        assert_eq!(
            one.keys().collect::<Vec<_>>(),
            all.keys().collect::<Vec<_>>()
        );
        for (name, batch) in &one {
            assert_eq!(batch, &all[name], "{name}");
            assert!(batch.num_rows() <= 300, "{name}: {} rows", batch.num_rows());
        }
        // The oracle: each day's rows, in order, are the files' rows in the order written.
        for day in 0..3i64 {
            let want: Vec<i64> = rows
                .iter()
                .filter_map(|r| match r[1] {
                    Value::Ts(t) if t.div_euclid(86_400_000) == day => Some(t),
                    _ => None,
                })
                .collect();
            let mut got = Vec::new();
            let mut files: Vec<_> = all
                .iter()
                .filter(|(n, _)| n.starts_with(&format!("date=1970-01-0{}", day + 1)))
                .collect();
            files.sort_by_key(|(n, _)| n.rsplit('-').next().unwrap().to_string());
            for (_, b) in files {
                let ts = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<arrow_array::TimestampMillisecondArray>()
                    .unwrap();
                got.extend(ts.values().iter().copied());
            }
            assert_eq!(got, want, "day {day}");
        }
    }
}
