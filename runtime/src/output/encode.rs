//! Rows → one Parquet file (zstd, UTC millisecond timestamps), batch by batch, into a
//! [`SpillBuffer`]: in memory while small, on disk beyond that.

use std::sync::Arc;

use anyhow::Result;
use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field as ArrowField, Schema as ArrowSchema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::base::record::{FieldType, Row, Schema, Value};
use crate::base::storage::spill::{Encoded, SpillBuffer};

/// Rows buffered in column builders before they are handed to the Parquet writer.
const BATCH_ROWS: usize = 8192;

/// Rows per row group (DuckDB's default). The writer holds the row group being written
/// uncompressed-side state (dictionaries, pages) in memory, so this bounds a file's working set:
/// with the writer's default (1 Mi rows) a large file was one row group, all of it in progress.
const ROW_GROUP_ROWS: usize = 122_880;

/// The Arrow schema for a tickflow schema.
pub fn arrow_schema(schema: &Schema) -> Arc<ArrowSchema> {
    let fields: Vec<ArrowField> = schema
        .fields
        .iter()
        .map(|f| {
            let ty = match f.ty {
                FieldType::Utf8 => DataType::Utf8,
                FieldType::Float64 => DataType::Float64,
                FieldType::Int64 => DataType::Int64,
                FieldType::Timestamp => {
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
                }
                FieldType::Utf8List => {
                    DataType::List(Arc::new(ArrowField::new("item", DataType::Utf8, true)))
                }
                FieldType::Boolean => DataType::Boolean,
            };
            ArrowField::new(&f.name, ty, f.nullable)
        })
        .collect();
    Arc::new(ArrowSchema::new(fields))
}

enum Column {
    Utf8(StringBuilder),
    F64(Float64Builder),
    I64(Int64Builder),
    Ts(TimestampMillisecondBuilder),
    List(ListBuilder<StringBuilder>),
    Bool(BooleanBuilder),
}

impl Column {
    fn new(ty: FieldType) -> Column {
        match ty {
            FieldType::Utf8 => Column::Utf8(StringBuilder::new()),
            FieldType::Float64 => Column::F64(Float64Builder::new()),
            FieldType::Int64 => Column::I64(Int64Builder::new()),
            FieldType::Timestamp => {
                Column::Ts(TimestampMillisecondBuilder::new().with_timezone("UTC"))
            }
            FieldType::Utf8List => Column::List(ListBuilder::new(StringBuilder::new())),
            FieldType::Boolean => Column::Bool(BooleanBuilder::new()),
        }
    }

    fn push(&mut self, v: &Value) {
        self.push_all(std::iter::once(v));
    }

    /// Appends each value (NULL for a value of another type), the column's type matched once.
    fn push_all<'v>(&mut self, values: impl Iterator<Item = &'v Value>) {
        match self {
            Column::F64(b) => values.for_each(|v| match v {
                Value::F64(x) => b.append_value(*x),
                _ => b.append_null(),
            }),
            Column::I64(b) => values.for_each(|v| match v {
                Value::I64(x) => b.append_value(*x),
                _ => b.append_null(),
            }),
            Column::Ts(b) => values.for_each(|v| match v {
                Value::Ts(x) => b.append_value(*x),
                _ => b.append_null(),
            }),
            Column::Utf8(b) => values.for_each(|v| match v {
                Value::Str(s) => b.append_value(s),
                _ => b.append_null(),
            }),
            Column::Bool(b) => values.for_each(|v| match v {
                Value::Bool(x) => b.append_value(*x),
                _ => b.append_null(),
            }),
            Column::List(b) => values.for_each(|v| match v {
                Value::StrList(items) => {
                    for s in items {
                        b.values().append_value(s);
                    }
                    b.append(true);
                }
                _ => b.append(false),
            }),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Utf8(b) => Arc::new(b.finish()),
            Column::F64(b) => Arc::new(b.finish()),
            Column::I64(b) => Arc::new(b.finish()),
            Column::Ts(b) => Arc::new(b.finish()),
            Column::List(b) => Arc::new(b.finish()),
            Column::Bool(b) => Arc::new(b.finish()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Utf8(b) => b.len(),
            Column::F64(b) => b.len(),
            Column::I64(b) => b.len(),
            Column::Ts(b) => b.len(),
            Column::List(b) => b.len(),
            Column::Bool(b) => b.len(),
        }
    }
}

/// One Parquet file being written.
pub struct ParquetEncoder {
    schema: Arc<ArrowSchema>,
    columns: Vec<Column>,
    writer: ArrowWriter<SpillBuffer>,
    rows: u64,
}

impl ParquetEncoder {
    pub fn new(schema: &Schema, zstd_level: i32) -> Result<ParquetEncoder> {
        let arrow = arrow_schema(schema);
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(zstd_level)?))
            .set_created_by(format!("tickflow {}", env!("CARGO_PKG_VERSION")))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        // Timestamps are nearly all distinct: a dictionary costs time (about 6% of a join's
        // run) and, given up at its size limit, saves nothing. zstd compresses them instead.
        for f in schema
            .fields
            .iter()
            .filter(|f| f.ty == FieldType::Timestamp)
        {
            props = props.set_column_dictionary_enabled(
                parquet::schema::types::ColumnPath::from(f.name.as_str()),
                false,
            );
        }
        let props = props.build();
        let writer = ArrowWriter::try_new(SpillBuffer::default(), Arc::clone(&arrow), Some(props))?;
        Ok(ParquetEncoder {
            schema: arrow,
            columns: schema.fields.iter().map(|f| Column::new(f.ty)).collect(),
            writer,
            rows: 0,
        })
    }

    pub fn push(&mut self, row: &Row) -> Result<()> {
        for (col, v) in self.columns.iter_mut().zip(row) {
            col.push(v);
        }
        self.rows += 1;
        if self.columns.first().map(Column::len).unwrap_or(0) >= BATCH_ROWS {
            self.write_batch()?;
        }
        Ok(())
    }

    /// Pushes `rows` column by column (one type dispatch per column, not per value).
    pub fn push_rows(&mut self, rows: &[Row]) -> Result<()> {
        for (c, col) in self.columns.iter_mut().enumerate() {
            col.push_all(rows.iter().map(|r| r.get(c).unwrap_or(&Value::Null)));
        }
        self.rows += rows.len() as u64;
        if self.rows_buffered() >= BATCH_ROWS {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<()> {
        if self.columns.first().map(Column::len).unwrap_or(0) == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)?;
        self.writer.write(&batch)?;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Approximate size of the file so far (encoded bytes plus what is buffered).
    pub fn approx_bytes(&self) -> usize {
        self.writer.bytes_written() + self.writer.in_progress_size() + self.rows_buffered() * 32
    }

    fn rows_buffered(&self) -> usize {
        self.columns.first().map(Column::len).unwrap_or(0)
    }

    /// Finishes the file and returns its bytes.
    pub fn finish(mut self) -> Result<Encoded> {
        self.write_batch()?;
        Ok(self.writer.into_inner()?.finish()?)
    }
}
