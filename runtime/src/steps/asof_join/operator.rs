//! The as-of join: both sides' records are keyed (their key expressions evaluated batch by
//! batch) and exchanged by key. Right records go into their key's history at once; a left record
//! waits until no right record at or before its time can still come (the right side's
//! completeness has passed it), then takes the latest one and goes out at the time it arrived
//! with. Histories keep only what a left record still to come can match. The output depends on
//! the records and their times only: the same for any number of workers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use compact_str::CompactString;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::{Capability, Operator};

use super::AsofJoin;
use crate::base::keys::key_group;
use crate::base::record::{Row, Trade, Value, format_ts, trade_row};
use crate::base::reject::RejectReason;
use crate::checkpoint::{GroupedState, Role};
use crate::expr::types::Type;
use crate::sinks::dead_letter::DeadLetter;
use crate::steps::expressions::{BatchOf, Evaluated};
use crate::steps::{AnyStream, BuildCx};

/// A record with its key (`None`: NULL), whether evaluating the key failed (the record is a
/// dead letter already: counted as received, never joined), and an order among records of one
/// time (trades: their arrival; rows: a hash of the row).
type Keyed = (Option<CompactString>, bool, u64, Row);

/// One key group of the operator's checkpoint.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct GroupBlob {
    right: Vec<(CompactString, Vec<((i64, u64), Vec<Value>)>)>,
    waiting: Vec<(i64, u64, Option<CompactString>, Row)>,
}

/// Evaluates `key` over each batch of `input`: every record goes on, keyed.
fn keyed<'s>(input: AnyStream<'s>, mut eval: Evaluated, label: String) -> StreamVec<'s, u64, Keyed> {
    fn keys<R: BatchOf>(eval: &mut Evaluated, batch: &[R]) -> Vec<(Option<CompactString>, bool)> {
        match eval.run(batch) {
            Some((values, failed)) => crate::expr::values_of(&values[0], Type::Str)
                .into_iter()
                .zip(failed)
                .map(|(v, failed)| match v {
                    Value::Str(s) => (Some(s), failed),
                    _ => (None, failed),
                })
                .collect(),
            None => Vec::new(),
        }
    }
    match input {
        AnyStream::Trades(s) => s.unary(Pipeline, &label, move |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let batch: Vec<Trade> = std::mem::take(data);
                    let k = keys(&mut eval, &batch);
                    let out: Vec<Keyed> = batch.iter().zip(k).map(|(t, (k, failed))| (k, failed, t.seq, trade_row(t))).collect();
                    output.session(&cap).give_iterator(out.into_iter());
                });
            }
        }),
        AnyStream::Rows(s) => s.unary(Pipeline, &label, move |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let batch: Vec<Row> = std::mem::take(data);
                    let k = keys(&mut eval, &batch);
                    let out: Vec<Keyed> = batch
                        .into_iter()
                        .zip(k)
                        .map(|(r, (k, failed))| (k, failed, crate::dataflow::ordered::content_hash(&r), r))
                        .collect();
                    output.session(&cap).give_iterator(out.into_iter());
                });
            }
        }),
    }
}

/// How far a side's records are complete: below this time every one has arrived.
fn bound(frontier: Option<u64>, lag: Option<i64>) -> i64 {
    match frontier {
        None => i64::MAX,
        Some(f) => (f as i64).saturating_sub(lag.unwrap_or(0)),
    }
}

pub(super) fn join<'s>(
    step: &AsofJoin,
    left: AnyStream<'s>,
    right: AnyStream<'s>,
    cx: &BuildCx<'_>,
) -> StreamVec<'s, u64, Row> {
    let step = step.clone();
    let ctx = Arc::clone(cx.ctx);
    let dead = std::rc::Rc::clone(cx.dead);
    let name = step.name.clone();
    let left_eval = Evaluated::new(cx, &name, step.sources.0, step.left_schema.clone(), vec![step.left_key.clone()]);
    let right_eval = Evaluated::new(cx, &name, step.sources.1, step.right_schema.clone(), vec![step.right_key.clone()]);
    let left = keyed(left, left_eval, format!("AsofKeys({name}, left)"));
    let right = keyed(right, right_eval, format!("AsofKeys({name}, right)"));
    let key_groups = ctx.key_groups as u64;
    let route = move |r: &Keyed| r.0.as_deref().map_or(0, |k| key_group(k, key_groups));
    let scope = left.scope();
    let (worker, peers) = (scope.index(), scope.peers());
    let mut cp = ctx
        .checkpoint
        .as_ref()
        .map(|c| c.participant(Role::Step, cx.index, worker, Some(cx.input_node)).also_consumes(cx.side_nodes));
    let group_of = move |k: Option<&str>| k.map_or(0, |k| key_group(k, key_groups)) as u32;
    left.binary_frontier(right, Exchange::new(route), Exchange::new(route), &format!("AsofJoin({name})"), move |initial, info| {
        let activator = scope.activator_for(info.address);
        // key → (time, order) → the right record's added columns.
        let mut history: HashMap<CompactString, BTreeMap<(i64, u64), Vec<Value>>> = HashMap::new();
        // Left records waiting for the right side: (time, n) → (arrival time, key, row).
        let mut waiting: BTreeMap<(i64, u64), (u64, Option<CompactString>, Row)> = BTreeMap::new();
        let mut caps: BTreeMap<u64, (Capability<u64>, usize)> = BTreeMap::new();
        let mut n: u64 = 0;
        let mut pruned_to = i64::MIN;
        let stats = ctx.metrics.step(&name, "asof_join");
        if let Some(cp) = cp.as_ref() {
            for blob in cp.coordinator().restored_groups(&name, worker, peers) {
                match bincode::deserialize::<GroupBlob>(blob) {
                    Ok(g) => {
                        for (k, h) in g.right {
                            history.entry(k).or_default().extend(h);
                        }
                        for (ts, t, k, row) in g.waiting {
                            caps.entry(t).or_insert_with(|| (initial.delayed(&t), 0)).1 += 1;
                            waiting.insert((ts, n), (t, k, row));
                            n += 1;
                        }
                    }
                    Err(e) => ctx.fail(format!("step `{name}`: restoring its state: {e}")),
                }
            }
        }
        drop(initial);
        let reject = move |row: &Row, schema: &crate::base::record::Schema, reason: RejectReason, detail: String| {
            dead.borrow_mut().push(DeadLetter {
                source: &step.name,
                reason,
                detail,
                raw: crate::plugins::operator::row_json(schema, row),
                line: 0,
            });
        };
        move |(left_in, left_frontier), (right_in, right_frontier), output| {
            let mut received = 0usize;
            // Right records join their key's history.
            right_in.for_each(|cap, data| {
                let Some(&t) = cap.least() else { return };
                let t = t as i64;
                for (key, failed, tie, row) in data.drain(..) {
                    received += 1;
                    let (Some(key), false) = (key, failed) else { continue };
                    let Value::Ts(ts) = row[step.right_time] else {
                        reject(&row, &step.right_schema, RejectReason::InvalidTimestamp, "the right record's time is NULL".into());
                        continue;
                    };
                    // A record read behind its watermark may come after left records it would
                    // have matched were joined: late, as windows make it.
                    if ts < t.saturating_sub(step.right_lag.unwrap_or(0)) {
                        reject(&row, &step.right_schema, RejectReason::Late, format!("its time {} is behind {}, the right side's time when it came", format_ts(ts), format_ts(t)));
                        continue;
                    }
                    let values = step.picks.iter().map(|&c| row[c].clone()).collect();
                    history.entry(key).or_default().insert((ts, tie), values);
                }
            });
            // Left records wait for the right side to pass their time.
            left_in.for_each(|cap, data| {
                let Some(&t) = cap.least() else { return };
                for (key, failed, _, row) in data.drain(..) {
                    received += 1;
                    if failed {
                        continue;
                    }
                    let Value::Ts(ts) = row[step.left_time] else {
                        reject(&row, &step.left_schema, RejectReason::InvalidTimestamp, "the left record's time is NULL".into());
                        continue;
                    };
                    if ts < (t as i64).saturating_sub(step.left_lag.unwrap_or(0)) {
                        reject(&row, &step.left_schema, RejectReason::Late, format!("its time {} is behind {}, the time it was read at", format_ts(ts), format_ts(t as i64)));
                        continue;
                    }
                    caps.entry(t).or_insert_with(|| (cap.retain_least(0).expect("a stamp has a least time"), 0)).1 += 1;
                    waiting.insert((ts, n), (t, key, row));
                    n += 1;
                }
            });
            stats.records_in.fetch_add(received as u64, Relaxed);
            let snapshot = || -> Option<GroupedState> {
                let mut groups: BTreeMap<u32, GroupBlob> = BTreeMap::new();
                for (k, h) in &history {
                    groups.entry(group_of(Some(k))).or_default().right.push((k.clone(), h.iter().map(|(a, b)| (*a, b.clone())).collect()));
                }
                for ((ts, _), (t, k, row)) in &waiting {
                    groups.entry(group_of(k.as_deref())).or_default().waiting.push((*ts, *t, k.clone(), row.clone()));
                }
                Some(groups.into_iter().map(|(g, b)| (g, bincode::serialize(&b).expect("the join's state serializes"))).collect())
            };
            if let Some(cp) = cp.as_mut()
                && cp.stateful_turn(&name, received, &activator, snapshot)
            {
                return;
            }
            let lf = left_frontier.frontier().iter().min().copied();
            let rf = right_frontier.frontier().iter().min().copied();
            let stopped = lf.is_none() && rf.is_none() && ctx.stop.load(Relaxed);
            if stopped && !waiting.is_empty() {
                // Incomplete: the right side stopped before their time (as windows discard theirs).
                tracing::info!(step = %name, records = waiting.len(), "stopped: left records still waiting for the right side are not joined");
                waiting.clear();
                caps.clear();
            }
            // Left records the right side has passed are joined.
            let right_done = bound(rf, step.right_lag);
            let mut out: BTreeMap<u64, Vec<Row>> = BTreeMap::new();
            while let Some(entry) = waiting.first_entry() {
                if entry.key().0 >= right_done {
                    break;
                }
                let ((ts, _), (t, key, mut row)) = entry.remove_entry();
                let found = key.as_ref().and_then(|k| history.get(k)).and_then(|h| h.range(..=(ts, u64::MAX)).next_back()).filter(|((rts, _), _)| step.tolerance.is_none_or(|tol| ts - rts <= tol));
                if let Some(c) = caps.get_mut(&t) {
                    c.1 -= 1;
                }
                match found {
                    Some((_, values)) => row.extend(values.iter().cloned()),
                    None if step.inner => continue,
                    None => row.extend(step.picks.iter().map(|_| Value::Null)),
                }
                out.entry(t).or_default().push(row);
            }
            for (t, rows) in out {
                stats.records_out.fetch_add(rows.len() as u64, Relaxed);
                if let Some(cp) = cp.as_ref() {
                    cp.emitted(rows.len());
                }
                let (cap, _) = caps.get(&t).expect("a waiting record holds its time");
                output.session(cap).give_iterator(rows.into_iter());
            }
            caps.retain(|_, (_, c)| *c > 0);
            // What no left record still to come can match goes: in each history, everything
            // before the latest record at or before the earliest such left record.
            let earliest = waiting.first_key_value().map_or(i64::MAX, |((ts, _), _)| *ts).min(bound(lf, step.left_lag));
            if earliest > pruned_to && earliest != i64::MAX {
                pruned_to = earliest;
                for h in history.values_mut() {
                    if let Some((&keep, _)) = h.range(..=(earliest, u64::MAX)).next_back() {
                        let stale = step.tolerance.is_some_and(|tol| earliest - keep.0 > tol);
                        let mut rest = h.split_off(&keep);
                        if stale {
                            rest.remove(&keep);
                        }
                        *h = rest;
                    }
                }
                history.retain(|_, h| !h.is_empty());
            }
            if lf.is_none() && rf.is_none()
                && let Some(cp) = cp.as_mut()
                && !cp.finished()
            {
                cp.finish();
            }
        }
    })
}
