//! Batches of records as Arrow columns (only the columns an expression reads), and results back
//! as row values.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use compact_str::CompactString;

use super::eval::Batch;
use super::types::Type;
use crate::base::record::{FieldType, Row, Schema, Trade, Value};

/// The columns `needed` of `rows` (laid out as `schema`).
pub fn from_rows(rows: &[Row], schema: &Schema, needed: &[usize]) -> Batch {
    let mut columns: Vec<Option<ArrayRef>> = vec![None; schema.fields.len()];
    for &i in needed {
        let ty = schema.fields[i].ty;
        let col = rows.iter().map(|r| &r[i]);
        columns[i] = Some(match ty {
            FieldType::Utf8 => Arc::new(
                col.map(|v| match v {
                    Value::Str(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect::<StringArray>(),
            ) as ArrayRef,
            FieldType::Float64 => Arc::new(
                col.map(|v| match v {
                    Value::F64(x) => Some(*x),
                    _ => None,
                })
                .collect::<Float64Array>(),
            ),
            FieldType::Int64 => Arc::new(
                col.map(|v| match v {
                    Value::I64(x) => Some(*x),
                    _ => None,
                })
                .collect::<Int64Array>(),
            ),
            FieldType::Timestamp => Arc::new(
                col.map(|v| match v {
                    Value::Ts(x) => Some(*x),
                    _ => None,
                })
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
            ),
            FieldType::Boolean => Arc::new(
                col.map(|v| match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<BooleanArray>(),
            ),
            FieldType::Utf8List => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for v in col {
                    match v {
                        Value::StrList(items) => {
                            for s in items {
                                b.values().append_value(s);
                            }
                            b.append(true);
                        }
                        _ => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
        });
    }
    Batch {
        columns,
        rows: rows.len(),
    }
}

/// The columns `needed` of trades (laid out as [`Schema::trades`]: symbol, price, volume,
/// timestamp, conditions), straight from the trade structs.
pub fn from_trades(trades: &[Trade], needed: &[usize]) -> Batch {
    let mut columns: Vec<Option<ArrayRef>> = vec![None; 5];
    for &i in needed {
        columns[i] = Some(match i {
            0 => Arc::new(StringArray::from_iter_values(
                trades.iter().map(|t| t.symbol.as_str()),
            )) as ArrayRef,
            1 => Arc::new(Float64Array::from_iter_values(
                trades.iter().map(|t| t.price),
            )),
            2 => Arc::new(Float64Array::from_iter_values(
                trades.iter().map(|t| t.volume),
            )),
            3 => Arc::new(
                TimestampMillisecondArray::from_iter_values(trades.iter().map(|t| t.ts))
                    .with_timezone("UTC"),
            ),
            _ => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for t in trades {
                    if !t.conditions.is_empty() {
                        for c in t.conditions.split(',') {
                            b.values().append_value(c);
                        }
                    }
                    b.append(true);
                }
                Arc::new(b.finish())
            }
        });
    }
    Batch {
        columns,
        rows: trades.len(),
    }
}

/// The values of an evaluated column, in row order.
pub fn values_of(a: &ArrayRef, ty: Type) -> Vec<Value> {
    let n = a.len();
    let mut out = Vec::with_capacity(n);
    macro_rules! each {
        ($arr:expr, $wrap:expr) => {{
            let arr = $arr;
            for i in 0..n {
                out.push(if arr.is_null(i) {
                    Value::Null
                } else {
                    $wrap(arr.value(i))
                });
            }
        }};
    }
    match ty {
        Type::Bool => each!(a.as_boolean(), Value::Bool),
        Type::Int | Type::Interval => each!(a.as_primitive::<Int64Type>(), Value::I64),
        Type::Float => each!(a.as_primitive::<Float64Type>(), Value::F64),
        Type::Str => each!(a.as_string::<i32>(), |s: &str| Value::Str(
            CompactString::from(s)
        )),
        Type::Ts => each!(a.as_primitive::<TimestampMillisecondType>(), Value::Ts),
        Type::Null => out.resize(n, Value::Null),
        Type::StrList => {
            let l = a.as_list::<i32>();
            for i in 0..n {
                out.push(if l.is_null(i) {
                    Value::Null
                } else {
                    let items = l.value(i);
                    let s = items.as_string::<i32>();
                    Value::StrList(
                        s.iter()
                            .map(|x| CompactString::from(x.unwrap_or("")))
                            .collect(),
                    )
                });
            }
        }
    }
    out
}
