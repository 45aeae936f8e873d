//! The `derive` step: columns computed by SQL expressions.

pub mod config;

use std::sync::Arc;

pub use self::config::DeriveConfig;
use super::expressions::{BatchOf, Evaluated, compile_at};
use super::{AnyStream, BuildCx, PlanCx, Planned, StepConfig, StepOp, StreamInfo, StreamKind};
use crate::expr::Expr;
use crate::expr::types::Type;
use crate::base::record::{Field, Row, Schema, Trade, trade_row};

impl StepConfig for DeriveConfig {
    fn input(&self) -> &str {
        &self.input
    }
    fn plan(&self, cx: &mut PlanCx<'_>) -> Option<Planned> {
        if !cx.input_known {
            return None;
        }
        if self.columns.is_empty() {
            cx.error("columns", "a derive step needs at least one column (name: expression)");
            return None;
        }
        let input = cx.input.clone();
        let mut schema = input.schema.clone();
        let mut targets = Vec::new();
        let mut exprs = Vec::new();
        let mut ok = true;
        for (name, text) in &self.columns {
            let field = format!("columns.{name}");
            if !crate::base::record::valid_column_name(name) {
                cx.error(&field, format!("invalid column name `{name}`: use letters, digits and `_`"));
                ok = false;
                continue;
            }
            let Some(e) = compile_at(cx, &field, text) else {
                ok = false;
                continue;
            };
            let Some(ty) = e.ty().field_type() else {
                cx.error(&field, format!("`{text}` is an interval, which is not a column type (add it to a timestamp)"));
                ok = false;
                continue;
            };
            // A plain copy of a non-null column stays non-null; anything computed may be NULL.
            let nullable = e.as_column().is_none_or(|i| input.schema.fields[i].nullable) || e.ty() == Type::Null;
            let f = Field::new(name, ty, nullable);
            let at = match schema.index_of(name) {
                Some(i) => {
                    schema.fields[i] = f;
                    i
                }
                None => {
                    if let Some(clash) = schema.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)) {
                        cx.error(&field, format!("`{name}` differs from the column `{}` only in case; Parquet readers would mix them up", clash.name));
                        ok = false;
                        continue;
                    }
                    schema.fields.push(f);
                    schema.fields.len() - 1
                }
            };
            targets.push(at);
            exprs.push(e);
        }
        if !ok {
            return None;
        }
        // The key and the time stay what they were unless replaced by another type.
        let keep = |i: Option<usize>, want: crate::base::record::FieldType| i.filter(|&i| schema.fields[i].ty == want);
        let output = StreamInfo {
            key: keep(input.key, crate::base::record::FieldType::Utf8),
            time: keep(input.time, crate::base::record::FieldType::Timestamp),
            // A time column an expression replaced is no longer the one rows arrive in order of.
            complete: input.complete.iter().copied().filter(|c| !targets.contains(&c.column)).collect(),
            dates: input.dates.clone().filter(|d| !targets.contains(&d.column)),
            revised: input.revised.filter(|r| !targets.contains(&r.column)),
            schema: schema.clone(),
            kind: StreamKind::Rows,
            ..input.clone()
        };
        Some(Planned {
            output,
            op: Arc::new(Derive {
                name: cx.name.to_string(),
                exprs,
                targets,
                width: schema.fields.len(),
                names: schema.fields.iter().map(|f| f.name.clone()).collect(),
                input: input.schema,
                source: input.source,
            }),
        })
    }
}

#[derive(Debug)]
struct Derive {
    name: String,
    exprs: Vec<Expr>,
    /// Where each expression's value goes in the output row.
    targets: Vec<usize>,
    width: usize,
    /// The output's column names.
    names: Vec<String>,
    input: Schema,
    source: usize,
}

impl StepOp for Derive {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "derive"
    }
    fn describe(&self) -> String {
        let cols: Vec<String> = self
            .exprs
            .iter()
            .zip(&self.targets)
            .map(|(e, t)| format!("{} = {}", self.names[*t], e.text()))
            .collect();
        format!("derive {}", cols.join(", "))
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &BuildCx<'_>) -> AnyStream<'s> {
        let mut eval = Evaluated::new(cx, &self.name, self.source, self.input.clone(), self.exprs.clone());
        let (targets, width) = (self.targets.clone(), self.width);
        let tys: Vec<Type> = self.exprs.iter().map(Expr::ty).collect();
        match input {
            AnyStream::Trades(s) => AnyStream::Rows(super::stream::map_batches(s, cx, &self.name, "derive", move |batch: Vec<Trade>, out| {
                extend(&mut eval, &targets, &tys, width, batch, |t| trade_row(&t), out)
            })),
            AnyStream::Rows(s) => AnyStream::Rows(super::stream::map_batches(s, cx, &self.name, "derive", move |batch: Vec<Row>, out| {
                extend(&mut eval, &targets, &tys, width, batch, |r| r, out)
            })),
        }
    }
}


/// The rows of `batch` with the expressions' values set, failed records left out.
fn extend<R: BatchOf>(
    eval: &mut Evaluated,
    targets: &[usize],
    tys: &[Type],
    width: usize,
    batch: Vec<R>,
    into_row: impl Fn(R) -> Row,
    out: &mut Vec<Row>,
) {
    let Some((values, failed)) = eval.run(&batch) else {
        return;
    };
    let columns: Vec<Vec<crate::base::record::Value>> = values.iter().zip(tys).map(|(a, ty)| crate::expr::values_of(a, *ty)).collect();
    let mut columns: Vec<std::vec::IntoIter<crate::base::record::Value>> = columns.into_iter().map(Vec::into_iter).collect();
    // NB: no allocation per record beyond the row itself: each column's values are moved in.
    for (record, failed) in batch.into_iter().zip(failed) {
        if failed {
            columns.iter_mut().for_each(|c| drop(c.next()));
            continue;
        }
        let mut row = into_row(record);
        row.resize(width, crate::base::record::Value::Null);
        for (t, c) in targets.iter().zip(columns.iter_mut()) {
            row[*t] = c.next().unwrap_or(crate::base::record::Value::Null);
        }
        out.push(row);
    }
}
