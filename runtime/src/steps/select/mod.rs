//! The `select` step: columns kept, renamed and ordered.

pub mod config;

use std::sync::Arc;

pub use self::config::SelectConfig;
use super::{AnyStream, BuildCx, PlanCx, Planned, StepConfig, StepOp, StreamInfo, StreamKind};
use crate::base::record::{Row, Schema, trade_row};
use crate::base::diagnostic::suggest;

impl StepConfig for SelectConfig {
    fn input(&self) -> &str {
        &self.input
    }
    fn plan(&self, cx: &mut PlanCx<'_>) -> Option<Planned> {
        if !cx.input_known {
            return None;
        }
        if self.columns.is_empty() {
            cx.error("columns", "a select step needs at least one column");
            return None;
        }
        let input = cx.input.clone();
        let mut picks = Vec::new();
        let mut fields = Vec::new();
        let mut ok = true;
        for (k, item) in self.columns.iter().enumerate() {
            let field = format!("columns.{k}");
            let (from, to) = match renamed(item) {
                Some(pick) => pick,
                None => {
                    cx.error(&field, format!("`{item}`: write a column name, or `name AS new_name` (computed columns belong in a derive step)"));
                    ok = false;
                    continue;
                }
            };
            let Some(i) = input.schema.index_of(from) else {
                cx.error(&field, format!("unknown column `{from}`{}", suggest(from, input.schema.names())));
                ok = false;
                continue;
            };
            if !crate::base::record::valid_column_name(to) {
                cx.error(&field, format!("invalid column name `{to}`: use letters, digits and `_`"));
                ok = false;
                continue;
            }
            if fields.iter().any(|f: &crate::base::record::Field| f.name.eq_ignore_ascii_case(to)) {
                cx.error(&field, format!("the column `{to}` is selected twice"));
                ok = false;
                continue;
            }
            let mut f = input.schema.fields[i].clone();
            f.name = to.to_string();
            fields.push(f);
            picks.push(i);
        }
        if !ok {
            return None;
        }
        let follow = |c: Option<usize>| c.and_then(|c| picks.iter().position(|&p| p == c));
        let output = StreamInfo {
            schema: Schema { fields },
            kind: StreamKind::Rows,
            key: follow(input.key),
            time: follow(input.time),
            complete: input
                .complete
                .iter()
                .filter_map(|c| Some(crate::steps::Complete { column: follow(Some(c.column))?, ..*c }))
                .collect(),
            revised: input.revised.and_then(|r| Some(crate::steps::Revised { column: follow(Some(r.column))?, ..r })),
            dates: input.dates.clone().and_then(|d| Some(crate::steps::MarketDates { column: follow(Some(d.column))?, ..d })),
            ..input.clone()
        };
        let names: Vec<String> = self.columns.clone();
        Some(Planned {
            output,
            op: Arc::new(Select { name: cx.name.to_string(), picks, names }),
        })
    }
}

#[derive(Debug)]
struct Select {
    name: String,
    /// The input column of each output column.
    picks: Vec<usize>,
    names: Vec<String>,
}

impl StepOp for Select {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "select"
    }
    fn describe(&self) -> String {
        format!("select {}", self.names.join(", "))
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &BuildCx<'_>) -> AnyStream<'s> {
        let picks = self.picks.clone();
        let pick = move |row: Row| -> Row {
            picks.iter().map(|&i| row[i].clone()).collect()
        };
        let stream = match input {
            AnyStream::Trades(s) => super::stream::map_batches(s, cx, &self.name, "select", move |batch, out| {
                out.extend(batch.into_iter().map(|t| pick(trade_row(&t))))
            }),
            AnyStream::Rows(s) => super::stream::map_batches(s, cx, &self.name, "select", move |batch, out| {
                out.extend(batch.into_iter().map(&pick))
            }),
        };
        AnyStream::Rows(stream)
    }
}

/// `name` or `name AS new_name`: (name, new_name); `None` for anything else.
pub(crate) fn renamed(item: &str) -> Option<(&str, &str)> {
    let words: Vec<&str> = item.split_whitespace().collect();
    match words.as_slice() {
        [one] => Some((*one, *one)),
        [from, kw, to] if kw.eq_ignore_ascii_case("as") => Some((*from, *to)),
        _ => None,
    }
}
