//! The types an expression computes with, and how they map onto the spec's field types and
//! Arrow's data types.

use std::sync::Arc;

use arrow_schema::{DataType, Field as ArrowField, TimeUnit};

use crate::base::record::FieldType;

/// The type of an expression's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Bool,
    /// 64-bit signed integer (SQL `BIGINT`).
    Int,
    /// 64-bit IEEE float (SQL `DOUBLE`).
    Float,
    Str,
    /// Milliseconds since the Unix epoch, UTC.
    Ts,
    /// A duration in milliseconds (`INTERVAL '5 minutes'`): only in `timestamp ± interval`.
    Interval,
    /// A list of strings (a trade's `conditions`): can be selected, not computed with.
    StrList,
    /// The type of a bare `NULL`: takes the type its context needs.
    Null,
}

impl Type {
    pub fn of_field(ty: FieldType) -> Type {
        match ty {
            FieldType::Utf8 => Type::Str,
            FieldType::Float64 => Type::Float,
            FieldType::Int64 => Type::Int,
            FieldType::Timestamp => Type::Ts,
            FieldType::Utf8List => Type::StrList,
            FieldType::Boolean => Type::Bool,
        }
    }

    /// The field type a column of this type is written as (`None`: not a column type).
    pub fn field_type(self) -> Option<FieldType> {
        Some(match self {
            Type::Bool => FieldType::Boolean,
            Type::Int => FieldType::Int64,
            Type::Float => FieldType::Float64,
            Type::Str => FieldType::Utf8,
            Type::Ts => FieldType::Timestamp,
            Type::StrList => FieldType::Utf8List,
            // A column that is always NULL is written as a nullable string.
            Type::Null => FieldType::Utf8,
            Type::Interval => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Type::Bool => "boolean",
            Type::Int => "bigint",
            Type::Float => "double",
            Type::Str => "varchar",
            Type::Ts => "timestamp",
            Type::Interval => "interval",
            Type::StrList => "varchar[]",
            Type::Null => "null",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, Type::Int | Type::Float)
    }

    /// The Arrow type values of this type are evaluated as.
    pub fn arrow(self) -> DataType {
        match self {
            Type::Bool => DataType::Boolean,
            Type::Int | Type::Interval => DataType::Int64,
            Type::Float => DataType::Float64,
            Type::Str | Type::Null => DataType::Utf8,
            Type::Ts => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Type::StrList => {
                DataType::List(Arc::new(ArrowField::new("item", DataType::Utf8, true)))
            }
        }
    }
}

/// The type both of `a` and `b` can be converted to without loss of meaning (numbers widen to
/// double, NULL takes the other's type), or `None`.
pub fn common(a: Type, b: Type) -> Option<Type> {
    match (a, b) {
        _ if a == b => Some(a),
        (Type::Null, t) | (t, Type::Null) => Some(t),
        (Type::Int, Type::Float) | (Type::Float, Type::Int) => Some(Type::Float),
        _ => None,
    }
}
