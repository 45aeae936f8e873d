//! The Parquet sink behind the sink contract.

use std::sync::Arc;

use super::config::ParquetSinkConfig;
use super::parquet_sink;
use crate::base::calendar::Align;
use crate::base::record::{FieldType, Schema};
use crate::sinks::{SinkBuildCx, SinkConfig, SinkOp, SinkPlanCx};
use crate::base::diagnostic::suggest;
use crate::steps::AnyStream;

impl SinkConfig for ParquetSinkConfig {
    fn input(&self) -> &str {
        &self.input
    }
    fn folder(&self) -> Option<&str> {
        Some(&self.path)
    }
    fn plan(&self, cx: &mut SinkPlanCx<'_>) -> Option<Arc<dyn SinkOp>> {
        if self.path.trim().is_empty() {
            cx.error("path", "the output path is empty");
        }
        if !(1..=22).contains(&self.zstd_level) {
            cx.error(
                "zstd_level",
                format!(
                    "zstd level must be between 1 and 22, got {}",
                    self.zstd_level
                ),
            );
        }
        if self.rolling.max_rows == 0 {
            cx.error("rolling.max_rows", "must be at least 1");
        }
        if self.rolling.max_bytes.0 == 0 {
            cx.error("rolling.max_bytes", "must be at least 1B (e.g. 128MiB)");
        }
        if self.rolling.max_age.as_millis() <= 0 {
            cx.error("rolling.max_age", "must be positive");
        }
        let stream = cx.input?;
        let schema = &stream.schema;
        let time_field = self
            .partition_time_field
            .clone()
            .or_else(|| stream.time_name().map(str::to_string))
            .unwrap_or_else(|| "timestamp".to_string());
        let mut partition_time_index = None;
        for (k, part) in self.partition_by.iter().enumerate() {
            if self.partition_by[..k].contains(part) {
                cx.error(
                    &format!("partition_by.{k}"),
                    format!("`{part}` is listed twice: a folder level per partition"),
                );
                continue;
            }
            if matches!(part.as_str(), "date" | "hour")
                && let Some(f) = schema.fields.iter().find(|f| f.name.eq_ignore_ascii_case(part))
            {
                cx.error(
                    &format!("partition_by.{k}"),
                    format!(
                        "the rows have a column `{}`: readers with Hive partitioning (DuckDB, Spark, pyarrow) would read the `{part}=` folder's value in its place; rename the column (a `select`) or leave `{part}` out of `partition_by`",
                        f.name
                    ),
                );
                continue;
            }
            match part.as_str() {
                "date" | "hour" => match schema.field(&time_field) {
                    Some(f) if f.ty == FieldType::Timestamp => {
                        partition_time_index = schema.index_of(&time_field)
                    }
                    Some(f) => cx.error(
                        "partition_time_field",
                        format!(
                            "`{time_field}` is a {}, `date`/`hour` partitions need a timestamp field",
                            f.ty.name()
                        ),
                    ),
                    None => cx.error(
                        "partition_time_field",
                        format!(
                            "unknown field `{time_field}`{}",
                            suggest(&time_field, schema.names())
                        ),
                    ),
                },
                other => match schema.field(other) {
                    Some(f) if f.ty == FieldType::Utf8 => {}
                    Some(f) => cx.error(
                        &format!("partition_by.{k}"),
                        format!(
                            "cannot partition by `{other}` ({}): use `date`, `hour` or a string field",
                            f.ty.name()
                        ),
                    ),
                    None => cx.error(
                        &format!("partition_by.{k}"),
                        format!(
                            "unknown partition `{other}`{}",
                            suggest(other, ["date", "hour"].into_iter().chain(schema.names()))
                        ),
                    ),
                },
            }
        }
        let market_dates = stream
            .dates
            .as_ref()
            .filter(|d| Some(d.column) == partition_time_index)
            .map(|d| Arc::clone(&d.align));
        Some(Arc::new(ParquetSink {
            name: cx.name.to_string(),
            config: self.clone(),
            schema: schema.clone(),
            partition_time_index,
            market_dates,
        }))
    }
}

/// A planned Parquet sink.
#[derive(Debug)]
pub(super) struct ParquetSink {
    pub name: String,
    pub config: ParquetSinkConfig,
    /// The rows it writes.
    pub schema: Schema,
    /// The timestamp column `date`/`hour` partitions read.
    pub partition_time_index: Option<usize>,
    /// How `date` is reckoned when that column is a market-time window's start: the session's
    /// (or the local) date; UTC otherwise.
    pub market_dates: Option<Arc<Align>>,
}

impl SinkOp for ParquetSink {
    fn describe(&self) -> String {
        let dates = match &self.market_dates {
            Some(a) if self.config.partition_by.iter().any(|p| p == "date") => {
                format!(" (dates {})", a.describe())
            }
            _ => String::new(),
        };
        format!("parquet, partitions {}{dates}", self.config.partition_by.join("/"))
    }
    fn staged_folder(&self) -> Option<&str> {
        Some(&self.config.path)
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &SinkBuildCx<'_>) {
        parquet_sink(input.rows(), cx, self);
    }
}
