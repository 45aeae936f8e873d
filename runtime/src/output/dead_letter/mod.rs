//! Dead letters: every rejected frame, invalid trade and late trade, with the reason, the raw
//! input and its line, written to the configured folder (JSONL or Parquet, partitioned by date).
//! Without a `dead_letters:` section they are counted, and the first few are logged.

pub mod config;

use std::sync::Arc;

use anyhow::Result;
use compact_str::CompactString;

use self::config::{DeadLetterFormat, DeadLetterSpec};
use super::rolling::{Format, Partition, RollingWriter};
use crate::base::record::{Field, FieldType, Schema, Value};
use crate::base::reject::RejectReason;
use crate::base::storage::Storage;
use crate::checkpoint::PendingFile;
use crate::metrics::Metrics;

/// How many rejects are logged when no dead-letter output is configured.
const LOG_LIMIT: u64 = 10;

pub struct DeadLetter<'a> {
    pub source: &'a str,
    pub reason: RejectReason,
    pub detail: String,
    pub raw: String,
    /// 1-based input line (0 when unknown).
    pub line: u64,
}

/// The dead-letter schema.
pub fn schema() -> Schema {
    Schema {
        fields: vec![
            Field::new("source", FieldType::Utf8, false),
            Field::new("reason", FieldType::Utf8, false),
            Field::new("detail", FieldType::Utf8, false),
            Field::new("raw", FieldType::Utf8, false),
            Field::new("line", FieldType::Int64, false),
            Field::new("received_at", FieldType::Timestamp, false),
        ],
    }
}

/// One worker's dead-letter output.
pub struct DeadLetters {
    writer: Option<RollingWriter>,
    metrics: Arc<Metrics>,
    logged: u64,
    server_errors_logged: u64,
    /// The first write error; reported by [`DeadLetters::flush`].
    error: Option<anyhow::Error>,
}

impl DeadLetters {
    pub fn new(
        spec: Option<&DeadLetterSpec>,
        rt: tokio::runtime::Handle,
        file_prefix: String,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let writer = match spec {
            None => None,
            Some(spec) => {
                let storage = Storage::open(&spec.path, rt)?;
                let schema = schema();
                let partitions = Partition::resolve(
                    &["date".to_string()],
                    &schema,
                    schema.index_of("received_at"),
                    None,
                );
                let format = match spec.format {
                    DeadLetterFormat::Jsonl => Format::Jsonl,
                    DeadLetterFormat::Parquet => Format::Parquet { zstd_level: 3 },
                };
                Some(RollingWriter::new(
                    storage,
                    schema,
                    format,
                    spec.rolling.clone(),
                    partitions,
                    file_prefix,
                    Arc::clone(&metrics),
                    false,
                ))
            }
        };
        Ok(DeadLetters {
            writer,
            metrics,
            logged: 0,
            server_errors_logged: 0,
            error: None,
        })
    }

    /// Records one dead letter. A write error is kept and reported by [`DeadLetters::flush`].
    pub fn push(&mut self, dl: DeadLetter<'_>) {
        if let Err(e) = self.try_push(dl)
            && self.error.is_none()
        {
            self.error = Some(e);
        }
    }

    fn try_push(&mut self, dl: DeadLetter<'_>) -> Result<()> {
        self.metrics.reject(dl.reason, 1);
        match &mut self.writer {
            Some(w) => {
                let now = crate::base::time::now_ms();
                w.push(&vec![
                    Value::Str(CompactString::from(dl.source)),
                    Value::Str(CompactString::from(dl.reason.code())),
                    Value::Str(CompactString::from(dl.detail)),
                    Value::Str(CompactString::from(dl.raw)),
                    Value::I64(dl.line as i64),
                    Value::Ts(now),
                ])?;
                // Rejected and kept: without `dead_letters:` a reject is only counted and logged.
                self.metrics.dead_lettered[dl.reason as usize]
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            None => {
                self.logged += 1;
                if self.logged <= LOG_LIMIT {
                    tracing::warn!(source = dl.source, line = dl.line, reason = dl.reason.code(), detail = %dl.detail, "rejected input (configure `dead_letters:` to keep it)");
                }
            }
        }
        Ok(())
    }

    /// An error message sent by the server (e.g. `Invalid symbol X`): logged, counted elsewhere.
    pub fn log_server_error(&mut self, source: &str, msg: &str) {
        self.server_errors_logged += 1;
        if self.server_errors_logged <= LOG_LIMIT {
            let message = crate::base::text::quote(msg, 200);
            tracing::warn!(source, message = %message, "error frame from the server");
        }
    }

    pub fn roll_aged(&mut self) {
        if let Some(Err(e)) = self.writer.as_mut().map(RollingWriter::roll_aged)
            && self.error.is_none()
        {
            self.error = Some(e);
        }
    }

    /// Exactly-once mode: files stay pending until a checkpoint publishes them.
    pub fn two_phase(mut self, path: &str) -> Self {
        self.writer = self.writer.map(|w| w.two_phase(path));
        self
    }

    /// Closes every open file and hands over the pending ones (exactly-once mode).
    pub fn precommit(&mut self) -> Result<Vec<PendingFile>> {
        if let Some(e) = self.error.take() {
            return Err(e.context("writing dead letters"));
        }
        self.writer
            .as_mut()
            .map_or(Ok(Vec::new()), RollingWriter::precommit)
    }

    /// Publishes what is buffered; reports the first error seen since the start.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e.context("writing dead letters"));
        }
        self.writer
            .as_mut()
            .map_or(Ok(()), RollingWriter::flush_all)
    }
}

impl crate::checkpoint::output::TwoPhase for DeadLetters {
    fn precommit(&mut self) -> Result<crate::checkpoint::output::Precommit> {
        DeadLetters::precommit(self).map(Into::into)
    }
    fn publish(&mut self) -> Result<()> {
        self.flush()
    }
}

/// A row as the `raw` of its dead letter: a JSON object, timestamps as ms since the epoch.
pub fn row_json(schema: &Schema, row: &[Value]) -> String {
    let mut m = serde_json::Map::new();
    for (f, v) in schema.fields.iter().zip(row) {
        let v = match v {
            Value::Null => serde_json::Value::Null,
            Value::Str(s) => serde_json::Value::from(s.as_str()),
            Value::F64(x) => serde_json::Value::from(*x),
            Value::I64(x) | Value::Ts(x) => serde_json::Value::from(*x),
            Value::StrList(l) => l.iter().map(|s| s.as_str()).collect::<Vec<_>>().into(),
            Value::Bool(b) => serde_json::Value::Bool(*b),
        };
        m.insert(f.name.clone(), v);
    }
    serde_json::Value::Object(m).to_string()
}
