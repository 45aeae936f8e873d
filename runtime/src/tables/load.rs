//! Reading a table file into rows by key, every value checked against its declared type.

use std::collections::HashMap;

use compact_str::CompactString;

use super::config::{ColumnType, TableConfig, TableFormat};
use crate::base::record::{Row, Value};

/// The largest table file read (a documented cap: reference data, not a stream).
pub const MAX_BYTES: usize = 256 << 20;
/// The most rows a table holds.
pub const MAX_ROWS: usize = 1_000_000;

/// One version of a table's content.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TableData {
    /// A hash of the file's bytes: a reload that reads the same bytes changes nothing.
    pub fingerprint: u64,
    /// key → the row (the declared columns, in order).
    pub rows: HashMap<CompactString, Row>,
}

/// The format of `cfg`'s file: given, or from its extension.
pub fn format_of(cfg: &TableConfig) -> Option<TableFormat> {
    if cfg.path.trim().starts_with("kafka://") {
        return Some(TableFormat::Jsonl);
    }
    cfg.format.or_else(|| {
        let lower = cfg.path.to_ascii_lowercase();
        let ext = lower.rsplit('.').next().unwrap_or_default();
        match ext {
            "csv" => Some(TableFormat::Csv),
            "jsonl" | "ndjson" | "json" => Some(TableFormat::Jsonl),
            "parquet" => Some(TableFormat::Parquet),
            _ => None,
        }
    })
}

/// The bytes of `url` (a local path, `file://` or `gs://`), at most [`MAX_BYTES`].
pub fn read_bytes(url: &str) -> Result<Vec<u8>, String> {
    crate::base::storage::read_file(url, MAX_BYTES, "a table")
}

pub fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Reads and checks the table of `cfg`.
pub fn load(cfg: &TableConfig) -> Result<TableData, String> {
    read_if_changed(cfg, None).map(|d| d.expect("no fingerprint to match"))
}

/// Reads the table of `cfg` (a file, or a compacted Kafka topic) and checks it, unless its
/// content's fingerprint is `known` (`Ok(None)`: unchanged).
pub fn read_if_changed(cfg: &TableConfig, known: Option<u64>) -> Result<Option<TableData>, String> {
    let (bytes, origins) = match super::kafka::parse_url(&cfg.path) {
        Some(url) => {
            let (brokers, topic) = url?;
            let (bytes, origins) = super::kafka::read(&brokers, &topic)?;
            (bytes, Some(origins))
        }
        None => (read_bytes(&cfg.path)?, None),
    };
    if known == Some(fingerprint(&bytes)) {
        return Ok(None);
    }
    parse(cfg, &bytes).map(Some).map_err(|e| match &origins {
        Some(o) => super::kafka::locate(&e, o),
        None => e,
    })
}

/// The rows of `bytes`, by key. Errors name the line (or row) and the column.
pub fn parse(cfg: &TableConfig, bytes: &[u8]) -> Result<TableData, String> {
    let format = format_of(cfg).ok_or_else(|| {
        format!("cannot tell the format of `{}` from its extension: add `format: csv | jsonl | parquet`", cfg.path)
    })?;
    let types: Vec<ColumnType> = cfg.columns.values().copied().collect();
    let names: Vec<&str> = cfg.columns.keys().map(String::as_str).collect();
    let key = names
        .iter()
        .position(|n| *n == cfg.key)
        .ok_or_else(|| format!("the key `{}` is not among the columns", cfg.key))?;
    let mut rows: HashMap<CompactString, Row> = HashMap::new();
    let mut first_seen: HashMap<CompactString, u64> = HashMap::new();
    let mut add = |row: Row, at: u64| -> Result<(), String> {
        let k = match &row[key] {
            Value::Str(s) => s.clone(),
            Value::Null => {
                return Err(format!(
                    "{}: the key `{}` is empty",
                    place(format, at),
                    cfg.key
                ));
            }
            _ => return Err(format!("the key `{}` must be a string column", cfg.key)),
        };
        if let Some(first) = first_seen.get(&k) {
            return Err(format!(
                "{}: the key `{}` = `{k}` appears again (first at {})",
                place(format, at),
                cfg.key,
                place(format, *first)
            ));
        }
        if rows.len() >= MAX_ROWS {
            return Err(format!(
                "more than {MAX_ROWS} rows: a table holds at most {MAX_ROWS}"
            ));
        }
        first_seen.insert(k.clone(), at);
        rows.insert(k, row);
        Ok(())
    };
    match format {
        TableFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(bytes);
            let header = reader
                .headers()
                .map_err(|e| format!("line 1: {e}"))?
                .clone();
            let at: Vec<usize> = names
                .iter()
                .map(|n| {
                    header.iter().position(|h| h.trim() == *n).ok_or_else(|| {
                        let have: Vec<&str> = header.iter().collect();
                        format!("the header has no column `{n}` (it has {})", quoted(&have))
                    })
                })
                .collect::<Result<_, _>>()?;
            for record in reader.records() {
                let record = record.map_err(|e| match e.position() {
                    Some(p) => format!("line {}: {e}", p.line()),
                    None => e.to_string(),
                })?;
                let line = record.position().map_or(0, |p| p.line());
                let mut row = Vec::with_capacity(at.len());
                for ((&i, ty), name) in at.iter().zip(&types).zip(&names) {
                    let text = record.get(i).unwrap_or("");
                    row.push(
                        from_text(text, *ty)
                            .map_err(|why| format!("line {line}, column `{name}`: {why}"))?,
                    );
                }
                add(row, line)?;
            }
        }
        TableFormat::Jsonl => {
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                let n = i as u64 + 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let v: serde_json::Value =
                    serde_json::from_slice(line).map_err(|e| format!("line {n}: {e}"))?;
                let obj = v
                    .as_object()
                    .ok_or_else(|| format!("line {n}: a JSON object per line is expected"))?;
                let mut row = Vec::with_capacity(names.len());
                for (name, ty) in names.iter().zip(&types) {
                    let value = obj.get(*name).unwrap_or(&serde_json::Value::Null);
                    row.push(
                        from_json(value, *ty)
                            .map_err(|why| format!("line {n}, column `{name}`: {why}"))?,
                    );
                }
                add(row, n)?;
            }
        }
        TableFormat::Parquet => {
            use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
                    .map_err(|e| format!("not a Parquet file: {e}"))?;
            let reader = builder.build().map_err(|e| e.to_string())?;
            let mut n = 0u64;
            for batch in reader {
                let batch = batch.map_err(|e| format!("row {}: {e}", n + 1))?;
                let mut columns = Vec::with_capacity(names.len());
                for (name, ty) in names.iter().zip(&types) {
                    let Some(col) = batch.column_by_name(name) else {
                        let have: Vec<&str> = batch
                            .schema_ref()
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect();
                        return Err(format!(
                            "the file has no column `{name}` (it has {})",
                            quoted(&have)
                        ));
                    };
                    let (target, expr_ty) = arrow_target(*ty);
                    let cast = arrow_cast::cast(col, &target).map_err(|e| {
                        format!(
                            "column `{name}` ({}) does not read as {}: {e}",
                            col.data_type(),
                            ty_name(*ty)
                        )
                    })?;
                    columns.push(crate::expr::values_of(&cast, expr_ty).into_iter());
                }
                for _ in 0..batch.num_rows() {
                    n += 1;
                    let row: Row = columns
                        .iter_mut()
                        .map(|c| c.next().unwrap_or(Value::Null))
                        .collect();
                    add(row, n)?;
                }
            }
        }
    }
    Ok(TableData {
        fingerprint: fingerprint(bytes),
        rows,
    })
}

fn place(format: TableFormat, at: u64) -> String {
    match format {
        TableFormat::Parquet => format!("row {at}"),
        _ => format!("line {at}"),
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ty_name(ty: ColumnType) -> &'static str {
    ty.field_type().name()
}

fn arrow_target(ty: ColumnType) -> (arrow_schema::DataType, crate::expr::types::Type) {
    use crate::expr::types::Type;
    use arrow_schema::{DataType, TimeUnit};
    match ty {
        ColumnType::String => (DataType::Utf8, Type::Str),
        ColumnType::Double => (DataType::Float64, Type::Float),
        ColumnType::Int64 => (DataType::Int64, Type::Int),
        ColumnType::Boolean => (DataType::Boolean, Type::Bool),
        ColumnType::Timestamp => (
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Type::Ts,
        ),
    }
}

fn from_text(text: &str, ty: ColumnType) -> Result<Value, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(Value::Null);
    }
    let bad = || {
        format!(
            "`{}` is not a {}",
            crate::base::diagnostic::visible(t),
            ty_name(ty)
        )
    };
    Ok(match ty {
        ColumnType::String => Value::Str(CompactString::from(text)),
        ColumnType::Double => Value::F64(t.parse::<f64>().map_err(|_| bad())?),
        ColumnType::Int64 => Value::I64(t.parse::<i64>().map_err(|_| bad())?),
        ColumnType::Boolean => match t.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Value::Bool(true),
            "false" | "f" | "0" | "no" => Value::Bool(false),
            _ => return Err(bad()),
        },
        ColumnType::Timestamp => match t.parse::<i64>() {
            Ok(ms) => Value::Ts(ms),
            Err(_) => Value::Ts(crate::expr::parse_timestamp(t).ok_or_else(bad)?),
        },
    })
}

fn from_json(v: &serde_json::Value, ty: ColumnType) -> Result<Value, String> {
    use serde_json::Value as J;
    let bad = || format!("{v} is not a {}", ty_name(ty));
    Ok(match (ty, v) {
        (_, J::Null) => Value::Null,
        (ColumnType::String, J::String(s)) => Value::Str(CompactString::from(s.as_str())),
        (ColumnType::String, J::Number(n)) => Value::Str(CompactString::from(n.to_string())),
        (ColumnType::Double, J::Number(n)) => Value::F64(n.as_f64().ok_or_else(bad)?),
        (ColumnType::Int64, J::Number(n)) => Value::I64(n.as_i64().ok_or_else(bad)?),
        (ColumnType::Boolean, J::Bool(b)) => Value::Bool(*b),
        (ColumnType::Timestamp, J::Number(n)) => Value::Ts(n.as_i64().ok_or_else(bad)?),
        (ColumnType::Timestamp, J::String(s)) => {
            Value::Ts(crate::expr::parse_timestamp(s).ok_or_else(bad)?)
        }
        _ => return Err(bad()),
    })
}
