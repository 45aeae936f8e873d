use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::base::record::FieldType;
use crate::base::units::Duration;

/// Reference data joined to streams by key (`lookup` steps): a CSV, JSONL or Parquet file with
/// one row per key, e.g. symbol → sector. Loaded before the run starts (a missing, malformed or
/// too large file is an error then); with `reload`, read again when it changes and applied from
/// the point the change was seen.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The file: a local path, `file:///abs/path` or `gs://bucket/path`; or a compacted Kafka
    /// topic, `kafka://HOST:PORT/TOPIC`: the latest value (one JSON object) of each record key,
    /// a record without a value deleting its key.
    pub path: String,
    /// `csv` (a header line, then one row per line), `jsonl` (one object per line) or
    /// `parquet`. Default: from the file's extension (a Kafka topic: JSON values).
    #[serde(default)]
    pub format: Option<TableFormat>,
    /// The column whose value each row is found by (unique).
    pub key: String,
    /// Column → type, in the order the lookup adds them. Other columns of the file are ignored.
    pub columns: IndexMap<String, ColumnType>,
    /// How often to check the file (or read the topic again) for changes (e.g. `30s`); without
    /// it the table is read once.
    #[serde(default)]
    pub reload: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    Csv,
    Jsonl,
    Parquet,
}

/// The type of a table column. Empty CSV fields and JSON `null` are NULL.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    String,
    Double,
    Int64,
    Boolean,
    /// RFC 3339 (`2026-12-01T14:30:00Z`) or milliseconds since the epoch.
    Timestamp,
}

impl ColumnType {
    pub fn field_type(self) -> FieldType {
        match self {
            ColumnType::String => FieldType::Utf8,
            ColumnType::Double => FieldType::Float64,
            ColumnType::Int64 => FieldType::Int64,
            ColumnType::Boolean => FieldType::Boolean,
            ColumnType::Timestamp => FieldType::Timestamp,
        }
    }
}
