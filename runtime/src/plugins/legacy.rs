//! Plugins built for `tickflow:model@0.2.0`: their types, converted to and from the current
//! contract's (the same shapes under another package version).

use super::host::wit02::tickflow::model::types as v02;
use super::host::{Column, ColumnType, Field, ModelInfo, TextColumn};

fn column_type(t: v02::ColumnType) -> ColumnType {
    match t {
        v02::ColumnType::Float64 => ColumnType::Float64,
        v02::ColumnType::Int64 => ColumnType::Int64,
        v02::ColumnType::Text => ColumnType::Text,
        v02::ColumnType::TimestampMs => ColumnType::TimestampMs,
    }
}

fn fields(fields: Vec<v02::Field>) -> Vec<Field> {
    fields
        .into_iter()
        .map(|f| Field {
            name: f.name,
            ty: column_type(f.ty),
        })
        .collect()
}

pub(super) fn info(i: v02::ModelInfo) -> ModelInfo {
    ModelInfo {
        name: i.name,
        version: i.version,
        inputs: fields(i.inputs),
        outputs: fields(i.outputs),
    }
}

pub(super) fn column(c: v02::Column) -> Column {
    match c {
        v02::Column::Float64(v) => Column::Float64(v),
        v02::Column::Int64(v) => Column::Int64(v),
        v02::Column::Text(t) => Column::Text(TextColumn {
            data: t.data,
            ends: t.ends,
        }),
        v02::Column::TimestampMs(v) => Column::TimestampMs(v),
    }
}

pub(super) fn batch(b: super::host::wit::tickflow::model::types::Batch) -> v02::Batch {
    v02::Batch {
        columns: b
            .columns
            .into_iter()
            .map(|c| match c {
                Column::Float64(v) => v02::Column::Float64(v),
                Column::Int64(v) => v02::Column::Int64(v),
                Column::Text(t) => v02::Column::Text(v02::TextColumn {
                    data: t.data,
                    ends: t.ends,
                }),
                Column::TimestampMs(v) => v02::Column::TimestampMs(v),
            })
            .collect(),
    }
}
