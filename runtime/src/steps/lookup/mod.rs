//! The `lookup` step: columns of a table's row found by a key expression.

pub mod config;
mod versioned;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

pub use self::config::LookupConfig;
use self::config::How;
use super::expressions::{BatchOf, Evaluated, compile_at};
use super::{AnyStream, BuildCx, PlanCx, Planned, StepConfig, StepOp, StreamInfo, StreamKind};
use crate::base::record::{Field, Row, Schema, Trade, Value, trade_row};
use crate::expr::Expr;
use crate::expr::types::Type;
use crate::base::diagnostic::suggest;
use crate::tables::{Table, TableData};

impl StepConfig for LookupConfig {
    fn input(&self) -> &str {
        &self.input
    }
    fn plan(&self, cx: &mut PlanCx<'_>) -> Option<Planned> {
        let Some((_, table)) = cx.tables.iter().find(|(n, _)| *n == self.table) else {
            let names: Vec<&str> = cx.tables.iter().map(|(n, _)| n.as_str()).collect();
            let hint = if names.is_empty() {
                " (declare it under `tables:`)".to_string()
            } else {
                suggest(&self.table, names.iter().copied())
            };
            cx.error("table", format!("unknown table `{}`{hint}", self.table));
            return None;
        };
        let table = Arc::clone(table.as_ref()?);
        // The table's columns to add.
        let mut picks: Vec<(usize, String)> = Vec::new();
        let mut ok = true;
        match &self.columns {
            None => picks.extend(
                table.schema.fields.iter().enumerate().filter(|(i, _)| *i != table.key).map(|(i, f)| (i, f.name.clone())),
            ),
            Some(list) => {
                for (k, item) in list.iter().enumerate() {
                    let field = format!("columns.{k}");
                    let (from, to) = match super::select::renamed(item) {
                        Some(pick) => pick,
                        None => {
                            cx.error(&field, format!("`{item}`: write a column of the table, or `name AS new_name`"));
                            ok = false;
                            continue;
                        }
                    };
                    match table.schema.index_of(from) {
                        Some(i) if crate::base::record::valid_column_name(to) => picks.push((i, to.to_string())),
                        Some(_) => {
                            cx.error(&field, format!("invalid column name `{to}`: use letters, digits and `_`"));
                            ok = false;
                        }
                        None => {
                            cx.error(&field, format!("table `{}` has no column `{from}`{}", table.name, suggest(from, table.schema.names())));
                            ok = false;
                        }
                    }
                }
            }
        }
        if picks.is_empty() && ok {
            cx.error("columns", format!("nothing to add: table `{}` has no column besides its key", table.name));
            ok = false;
        }
        if !cx.input_known {
            return None;
        }
        let input = cx.input.clone();
        let on_text = match (&self.on, input.key_name()) {
            (Some(t), _) => t.clone(),
            (None, Some(k)) => k.to_string(),
            (None, None) => {
                cx.error("on", format!("`{}` has no key column: say what to look up with `on:` (an expression)", self.input));
                return None;
            }
        };
        let on = compile_at(cx, "on", &on_text);
        if let Some(e) = &on
            && !matches!(e.ty(), Type::Str | Type::Null)
        {
            cx.error("on", format!("`{on_text}` is a {}; the key `{}` of table `{}` is a string", e.ty().name(), table.config.key, table.name));
            ok = false;
        }
        let mut fields = input.schema.fields.clone();
        for (i, name) in &picks {
            if let Some(clash) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)) {
                let field = match &self.columns {
                    Some(list) => format!("columns.{}", list.iter().position(|c| c.split_whitespace().last() == Some(name.as_str())).unwrap_or(0)),
                    None => "table".into(),
                };
                cx.error(&field, format!("`{name}` is already a column of `{}` (`{}`): rename it with `columns: [{name} AS ...]`", self.input, clash.name));
                ok = false;
                continue;
            }
            fields.push(Field::new(name, table.schema.fields[*i].ty, true));
        }
        let on = on?;
        if !ok {
            return None;
        }
        let output = StreamInfo { schema: Schema { fields }, kind: StreamKind::Rows, ..input.clone() };
        Some(Planned {
            output,
            op: Arc::new(Lookup {
                name: cx.name.to_string(),
                on,
                inner: self.how == How::Inner,
                names: picks.iter().map(|(_, n)| n.clone()).collect(),
                picks: picks.into_iter().map(|(i, _)| i).collect(),
                table,
                source: input.source,
                input_schema: input.schema,
            }),
        })
    }
}

#[derive(Debug)]
struct Lookup {
    name: String,
    on: Expr,
    inner: bool,
    /// The table's columns added, in order.
    picks: Vec<usize>,
    /// The names they are added under.
    names: Vec<String>,
    table: Arc<Table>,
    source: usize,
    input_schema: Schema,
}

impl StepOp for Lookup {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "lookup"
    }
    fn describe(&self) -> String {
        let cols: Vec<&str> = self.names.iter().map(String::as_str).collect();
        format!(
            "{} lookup in {} on {}\\nadds {}",
            if self.inner { "inner" } else { "left" },
            self.table.name,
            self.on.text(),
            cols.join(", ")
        )
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &BuildCx<'_>) -> AnyStream<'s> {
        let mut eval = Evaluated::new(cx, &self.name, self.source, self.input_schema.clone(), vec![self.on.clone()]);
        let joiner = Joiner {
            inner: self.inner,
            picks: self.picks.clone(),
            stats: {
                let stats = cx.ctx.metrics.step(&self.name, "lookup");
                stats.declare(&[crate::metrics::Counter::Unmatched, crate::metrics::Counter::TableReloads]);
                stats
            },
        };
        if self.table.config.reload.is_some() {
            return AnyStream::Rows(versioned::join(input, cx, &self.name, Arc::clone(&self.table), eval, joiner));
        }
        let data = Arc::clone(&self.table.data);
        match input {
            AnyStream::Trades(s) => AnyStream::Rows(super::stream::map_batches(s, cx, &self.name, "lookup", move |batch: Vec<Trade>, out| {
                joiner.join(&mut eval, &data, batch, |t| trade_row(&t), out)
            })),
            AnyStream::Rows(s) => AnyStream::Rows(super::stream::map_batches(s, cx, &self.name, "lookup", move |batch: Vec<Row>, out| {
                joiner.join(&mut eval, &data, batch, |r| r, out)
            })),
        }
    }
}

/// Joins batches with a version of the table.
struct Joiner {
    inner: bool,
    picks: Vec<usize>,
    stats: Arc<crate::metrics::StepStats>,
}

impl Joiner {
    fn join<R: BatchOf>(&self, eval: &mut Evaluated, data: &TableData, batch: Vec<R>, into_row: impl Fn(R) -> Row, out: &mut Vec<Row>) {
        let Some((values, failed)) = eval.run(&batch) else {
            return;
        };
        let keys = crate::expr::values_of(&values[0], Type::Str);
        let mut unmatched = 0u64;
        for ((record, key), failed) in batch.into_iter().zip(keys).zip(failed) {
            if failed {
                continue;
            }
            let found = match &key {
                Value::Str(k) => data.rows.get(k.as_str()),
                _ => None,
            };
            if found.is_none() {
                unmatched += 1;
                if self.inner {
                    continue;
                }
            }
            let mut row = into_row(record);
            row.reserve(self.picks.len());
            match found {
                Some(t) => row.extend(self.picks.iter().map(|&i| t[i].clone())),
                None => row.extend(self.picks.iter().map(|_| Value::Null)),
            }
            out.push(row);
        }
        if unmatched > 0 {
            self.stats.rows_unmatched.fetch_add(unmatched, Relaxed);
        }
    }
}
