//! The two shapes a stream has in the dataflow, and the operator of steps that map each batch on
//! its own (filter, derive, select).

use std::sync::atomic::Ordering::Relaxed;

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::operators::vec::Map;

use super::BuildCx;
use crate::base::record::{Row, Trade, trade_row};
use crate::checkpoint::Role;

/// Whether a stream carries trades (the fixed struct of the hot path) or rows of its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Trades,
    Rows,
}

/// A stream of either shape.
#[derive(Clone)]
pub enum AnyStream<'s> {
    Trades(StreamVec<'s, u64, Trade>),
    Rows(StreamVec<'s, u64, Row>),
}

impl<'s> AnyStream<'s> {
    /// The stream as rows (trades become rows of [`crate::base::record::Schema::trades`]).
    pub fn rows(self) -> StreamVec<'s, u64, Row> {
        match self {
            AnyStream::Rows(s) => s,
            AnyStream::Trades(s) => s.map(|t| trade_row(&t)),
        }
    }

    /// The stream's trades. NB: the planner only gives trades to steps that ask for them.
    pub fn trades(self) -> StreamVec<'s, u64, Trade> {
        match self {
            AnyStream::Trades(s) => s,
            AnyStream::Rows(_) => unreachable!("the planner gives this step trades"),
        }
    }
}

/// A step that maps each batch on its own, in place (no exchange, no state): `f` turns the
/// records of one batch into the records it emits. Counts records for metrics and, under
/// checkpoints, takes part in them (it holds nothing, so its part is to be drained).
pub fn map_batches<'s, I, O>(
    input: StreamVec<'s, u64, I>,
    cx: &BuildCx<'_>,
    name: &str,
    kind: &'static str,
    mut f: impl FnMut(Vec<I>, &mut Vec<O>) + 'static,
) -> StreamVec<'s, u64, O>
where
    I: Clone + 'static,
    O: Clone + 'static,
{
    let ctx = std::sync::Arc::clone(cx.ctx);
    let scope = input.scope();
    let worker = scope.index();
    let stats = ctx.metrics.step(name, kind);
    let mut cp = ctx
        .checkpoint
        .as_ref()
        .map(|c| c.participant(Role::Step, cx.index, worker, Some(cx.input_node)));
    let label = format!("{}({name})", capitalized(kind));
    let step = name.to_string();
    input.unary_frontier(Pipeline, &label, move |initial, info| {
        drop(initial);
        let activator = scope.activator_for(info.address);
        let mut out: Vec<O> = Vec::new();
        move |(input, frontier), output| {
            let mut received = 0usize;
            input.for_each(|cap, data| {
                let batch = std::mem::take(data);
                received += batch.len();
                f(batch, &mut out);
                if !out.is_empty() {
                    stats.records_out.fetch_add(out.len() as u64, Relaxed);
                    if let Some(cp) = cp.as_ref() {
                        cp.emitted(out.len());
                    }
                    output.session(&cap).give_container(&mut out);
                    out.clear();
                }
            });
            stats.records_in.fetch_add(received as u64, Relaxed);
            if let Some(cp) = cp.as_mut() {
                if frontier.is_empty() {
                    cp.received(received);
                    if !cp.finished() {
                        cp.finish();
                    }
                } else {
                    // Nothing to snapshot: its part is done once its input is drained.
                    let _frozen = cp.stateful_turn(&step, received, &activator, || None);
                }
            }
        }
    })
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
