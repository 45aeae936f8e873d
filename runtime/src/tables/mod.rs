//! Tables: reference data (symbol → sector, exchange, currency) that `lookup` steps join to
//! streams by key. A table is not a stream: it has no event time and no watermark, so it is
//! declared under `tables:`, read before the run starts, and (with `reload`) read again when
//! its file changes.

pub mod config;
pub mod kafka;
pub mod load;
pub mod reload;

use std::sync::Arc;

use self::config::ColumnType;
pub use self::config::TableConfig;
pub use self::load::TableData;
use crate::base::record::{Field, Schema};

/// A table as the planner knows it, with the content read at start.
#[derive(Debug)]
pub struct Table {
    pub name: String,
    /// The declared columns, in order (all may be NULL but the key).
    pub schema: Schema,
    /// The key column in `schema`.
    pub key: usize,
    pub config: TableConfig,
    /// The content read at start.
    pub data: Arc<TableData>,
}

/// Checks `cfg` and reads its file. Problems go to `err(path, message)`.
pub fn plan(
    name: &str,
    cfg: &TableConfig,
    err: &mut dyn FnMut(String, String),
) -> Option<Arc<Table>> {
    let p = format!("tables.{name}");
    let mut ok = true;
    if cfg.columns.is_empty() {
        err(
            format!("{p}.columns"),
            "a table needs its columns (name: type), the key among them".into(),
        );
        return None;
    }
    for col in cfg.columns.keys() {
        if !crate::base::record::valid_column_name(col) {
            err(
                format!("{p}.columns.{col}"),
                format!("invalid column name `{col}`: use letters, digits and `_`"),
            );
            ok = false;
        }
    }
    let key = match (
        cfg.columns.get_index_of(&cfg.key),
        cfg.columns.get(&cfg.key),
    ) {
        (Some(i), Some(ColumnType::String)) => Some(i),
        (Some(_), Some(ty)) => {
            err(
                format!("{p}.key"),
                format!(
                    "the key must be a string column; `{}` is {}",
                    cfg.key,
                    ty.field_type().name()
                ),
            );
            None
        }
        _ => {
            err(
                format!("{p}.key"),
                format!(
                    "`{}` is not among the columns{}",
                    cfg.key,
                    crate::base::diagnostic::suggest(
                        &cfg.key,
                        cfg.columns.keys().map(String::as_str)
                    )
                ),
            );
            None
        }
    };
    if let Some(d) = cfg.reload
        && d.as_millis() < 1000
    {
        err(
            format!("{p}.reload"),
            format!("must be at least 1s, got {d}"),
        );
        ok = false;
    }
    if load::format_of(cfg).is_none() {
        err(
            format!("{p}.format"),
            format!(
                "cannot tell the format of `{}` from its extension: add `format: csv | jsonl | parquet`",
                cfg.path
            ),
        );
        return None;
    }
    let key = key?;
    if !ok {
        return None;
    }
    let data = match load::load(cfg) {
        Ok(d) => d,
        Err(e) => {
            err(
                format!("{p}.path"),
                format!("table `{name}` ({}): {e}", cfg.path),
            );
            return None;
        }
    };
    let schema = Schema {
        fields: cfg
            .columns
            .iter()
            .enumerate()
            .map(|(i, (n, ty))| Field::new(n, ty.field_type(), i != key))
            .collect(),
    };
    Some(Arc::new(Table {
        name: name.to_string(),
        schema,
        key,
        config: cfg.clone(),
        data: Arc::new(data),
    }))
}
