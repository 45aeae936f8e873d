//! The as-of join: both sides' records are keyed (their key expressions evaluated batch by
//! batch) and exchanged by key. Right records go into their key's history at once; a left record
//! waits until no right record at or before its time can still come (the right side's
//! completeness has passed it), then takes the latest one and goes out at the time it arrived
//! with. Histories keep only what a left record still to come can match. The output depends on
//! the records and their times only: the same for any number of workers.

use std::collections::BTreeMap;

use foldhash::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use compact_str::CompactString;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Capability, Operator};

use super::AsofJoin;
use crate::base::keys::key_group;
use crate::base::record::{Row, Trade, Value, format_ts, trade_field, trade_row, trade_row_with_room};
use crate::base::reject::RejectReason;
use crate::checkpoint::{GroupedState, Role};
use crate::expr::types::Type;
use crate::output::dead_letter::DeadLetter;
use crate::steps::expressions::{BatchOf, Evaluated};
use crate::steps::{AnyStream, BuildCx};

/// A record with its key (`None`: NULL), whether evaluating the key failed (the record is a
/// dead letter already: counted as received, never joined), and an order among records of one
/// time (trades: their arrival; rows: a hash of the row).
type Keyed = (Option<CompactString>, bool, u64, Rec);

/// A record of either side as it travels to its key's worker: a trade stays the fixed struct
/// (no allocation) until it goes out as a row, made on the worker that frees it downstream —
/// a row made on one worker and freed on another costs glibc's malloc an arena lock.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum Rec {
    Trade(Trade),
    Row(Row),
}

impl Rec {
    /// Column `c` of the record as a row.
    fn field(&self, c: usize) -> Value {
        match self {
            Rec::Trade(t) => trade_field(t, c),
            Rec::Row(r) => r[c].clone(),
        }
    }
    /// The event time in column `c` (`None`: NULL).
    fn time(&self, c: usize) -> Option<i64> {
        match self {
            Rec::Trade(t) => Some(t.ts),
            Rec::Row(r) => match r[c] {
                Value::Ts(ts) => Some(ts),
                _ => None,
            },
        }
    }
    /// The record as a row with room for `room` more columns.
    fn into_row(self, room: usize) -> Row {
        match self {
            Rec::Trade(t) => trade_row_with_room(&t, room),
            Rec::Row(mut r) => {
                r.reserve_exact(room);
                r
            }
        }
    }
    fn to_row(&self) -> Row {
        match self {
            Rec::Trade(t) => trade_row(t),
            Rec::Row(r) => r.clone(),
        }
    }
}

/// One key group of the operator's checkpoint.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct GroupBlob {
    right: Vec<(CompactString, Vec<((i64, u64), Vec<Value>)>)>,
    waiting: Vec<(i64, u64, Option<CompactString>, Row)>,
}

/// Evaluates `key` over each batch of `input`: every record goes on, keyed.
/// `room`: columns the join adds to the side's rows (room made for them at once). A key that
/// is one string column (`on: symbol`) is read from the row without evaluating it over the batch.
fn keyed<'s>(input: AnyStream<'s>, mut eval: Evaluated, column: Option<usize>, label: String, room: usize) -> StreamVec<'s, u64, Keyed> {
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
    let of_row = move |r: &Row, c: usize| match &r[c] {
        Value::Str(s) => (Some(s.clone()), false),
        _ => (None, false),
    };
    match input {
        AnyStream::Trades(s) => s.unary(Pipeline, &label, move |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let batch: Vec<Trade> = std::mem::take(data);
                    let out: Vec<Keyed> = match column {
                        Some(c) => batch
                            .into_iter()
                            .map(|t| match trade_field(&t, c) {
                                Value::Str(k) => (Some(k), false, t.seq, Rec::Trade(t)),
                                _ => (None, false, t.seq, Rec::Trade(t)),
                            })
                            .collect(),
                        None => {
                            let k = keys(&mut eval, &batch);
                            batch.into_iter().zip(k).map(|(t, (k, failed))| (k, failed, t.seq, Rec::Trade(t))).collect()
                        }
                    };
                    output.session(&cap).give_iterator(out.into_iter());
                });
            }
        }),
        AnyStream::Rows(s) => s.unary(Pipeline, &label, move |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let batch: Vec<Row> = std::mem::take(data);
                    let k = match column {
                        Some(c) => batch.iter().map(|r| of_row(r, c)).collect(),
                        None => keys(&mut eval, &batch),
                    };
                    let out: Vec<Keyed> = batch
                        .into_iter()
                        .zip(k)
                        .map(|(mut r, (k, failed))| {
                            r.reserve_exact(room);
                            (k, failed, crate::steps::ordered::content_hash(&r), Rec::Row(r))
                        })
                        .collect();
                    output.session(&cap).give_iterator(out.into_iter());
                });
            }
        }),
    }
}

/// Drops from every key's history what a left record at or after `at` cannot match: records
/// before the latest one at or before `at` (and that one too when `tolerance` rules it out).
/// Returns how many records went. Records go from the front of each history, one by one: no
/// key whose history has nothing to drop costs more than a look at its first two records.
fn prune(history: &mut HashMap<CompactString, BTreeMap<(i64, u64), Vec<Value>>>, at: i64, tolerance: Option<i64>) -> u64 {
    let mut removed = 0;
    for h in history.values_mut() {
        // While the second record is at or before `at`, the first can match nothing to come.
        loop {
            let mut it = h.keys();
            match (it.next(), it.next()) {
                (Some(_), Some(second)) if second.0 <= at => {
                    h.pop_first();
                    removed += 1;
                }
                _ => break,
            }
        }
        if let Some((first, _)) = h.first_key_value()
            && first.0 <= at
            && tolerance.is_some_and(|tol| at - first.0 > tol)
        {
            h.pop_first();
            removed += 1;
        }
    }
    history.retain(|_, h| !h.is_empty());
    removed
}

/// How much event time passes between two prunings of the right histories.
const PRUNE_EVERY_MS: i64 = 1_000;

/// How far a side's records are complete: below this time every one has arrived. Records
/// stamped with their read watermark: below the frontier (one at it may still come); a window's
/// rows: as their [`Complete`](crate::steps::Complete) says.
fn bound(frontier: Option<u64>, lag: Option<crate::steps::Complete>) -> i64 {
    match (frontier, lag) {
        (None, _) => i64::MAX,
        (Some(f), None) => f as i64,
        (Some(f), Some(c)) => c.below(f as i64),
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
    let column = |e: &crate::expr::Expr| e.as_column().filter(|_| e.ty() == Type::Str);
    let left = keyed(left, left_eval, column(&step.left_key), format!("AsofKeys({name}, left)"), step.picks.len());
    let right = keyed(right, right_eval, column(&step.right_key), format!("AsofKeys({name}, right)"), 0);
    let key_groups = ctx.key_groups as u64;
    let route = move |r: &Keyed| r.0.as_deref().map_or(0, |k| key_group(k, key_groups));
    let scope = left.scope();
    let (worker, peers) = (scope.index(), scope.peers());
    let mut cp = ctx
        .checkpoint
        .as_ref()
        .map(|c| c.participant(Role::Step, cx.index, worker, Some(cx.input_node)).also_consumes(cx.side_nodes));
    let group_of = move |k: Option<&str>| k.map_or(0, |k| key_group(k, key_groups)) as u32;
    left.binary_frontier(right, crate::worker::batches::exchange(route), crate::worker::batches::exchange(route), &format!("AsofJoin({name})"), move |initial, info| {
        let activator = scope.activator_for(info.address);
        // key → (time, order) → the right record's added columns.
        let mut history: HashMap<CompactString, BTreeMap<(i64, u64), Vec<Value>>> = HashMap::default();
        // Left records waiting for the right side.
        let mut waiting = super::waiting::Waiting::new();
        let mut caps: BTreeMap<u64, (Capability<u64>, usize)> = BTreeMap::new();
        let mut n: u64 = 0;
        let mut pruned_to = i64::MIN;
        let mut warned = false;
        let stats = ctx.metrics.step(&name, "asof_join");
        stats.declare(&[crate::metrics::Counter::Unmatched, crate::metrics::Counter::Expired]);
        if let Some(cp) = cp.as_ref() {
            for blob in cp.coordinator().restored_groups(&name, worker, peers) {
                match bincode::deserialize::<GroupBlob>(blob) {
                    Ok(g) => {
                        for (k, h) in g.right {
                            history.entry(k).or_default().extend(h);
                        }
                        for (ts, t, k, row) in g.waiting {
                            caps.entry(t).or_insert_with(|| (initial.delayed(&t), 0)).1 += 1;
                            waiting.push(ts, n, (t, k, Rec::Row(row)));
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
                raw: crate::output::dead_letter::row_json(schema, row),
                line: 0,
            });
        };
        move |(left_in, left_frontier), (right_in, right_frontier), output| {
            let mut received = 0usize;
            // Right records join their key's history.
            right_in.for_each(|cap, data| {
                let Some(&t) = cap.least() else { return };
                let t = t as i64;
                for (key, failed, tie, rec) in data.drain(..) {
                    received += 1;
                    let (Some(key), false) = (key, failed) else { continue };
                    let Some(ts) = rec.time(step.right_time) else {
                        reject(&rec.to_row(), &step.right_schema, RejectReason::InvalidTimestamp, "the right record's time is NULL".into());
                        continue;
                    };
                    // A record read behind its watermark may come after left records it would
                    // have matched were joined: late, as windows make it.
                    if ts < t.saturating_sub(step.right_lag.map_or(0, |c| c.lag)) {
                        reject(&rec.to_row(), &step.right_schema, RejectReason::Late, format!("its time {} is behind {}, the right side's time when it came", format_ts(ts), format_ts(t)));
                        continue;
                    }
                    let values = step.picks.iter().map(|&c| rec.field(c)).collect();
                    history.entry(key).or_default().insert((ts, tie), values);
                }
            });
            // Left records wait for the right side to pass their time.
            left_in.for_each(|cap, data| {
                let Some(&t) = cap.least() else { return };
                for (key, failed, _, rec) in data.drain(..) {
                    received += 1;
                    if failed {
                        continue;
                    }
                    let Some(ts) = rec.time(step.left_time) else {
                        reject(&rec.to_row(), &step.left_schema, RejectReason::InvalidTimestamp, "the left record's time is NULL".into());
                        continue;
                    };
                    if ts < (t as i64).saturating_sub(step.left_lag.map_or(0, |c| c.lag)) {
                        reject(&rec.to_row(), &step.left_schema, RejectReason::Late, format!("its time {} is behind {}, the time it was read at", format_ts(ts), format_ts(t as i64)));
                        continue;
                    }
                    caps.entry(t).or_insert_with(|| (cap.retain_least(0).expect("a stamp has a least time"), 0)).1 += 1;
                    waiting.push(ts, n, (t, key, rec));
                    n += 1;
                }
            });
            stats.records_in.fetch_add(received as u64, Relaxed);
            let snapshot = || -> Option<GroupedState> {
                let mut groups: BTreeMap<u32, GroupBlob> = BTreeMap::new();
                for (k, h) in &history {
                    groups.entry(group_of(Some(k))).or_default().right.push((k.clone(), h.iter().map(|(a, b)| (*a, b.clone())).collect()));
                }
                for (ts, (t, k, rec)) in waiting.iter() {
                    groups.entry(group_of(k.as_deref())).or_default().waiting.push((ts, *t, k.clone(), rec.to_row()));
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
            // Past `state_ttl` of the left side's progress a left record stops waiting (a left
            // side that ended grows no state: its records wait).
            let expire_left = match (step.state_ttl, lf) {
                (Some(ttl), Some(_)) => bound(lf, step.left_lag).saturating_sub(ttl),
                _ => i64::MIN,
            };
            let mut out: BTreeMap<u64, Vec<Row>> = BTreeMap::new();
            let (mut expired, mut unmatched) = (0u64, 0u64);
            // In time order: the output does not depend on how records arrived.
            for (ts, (t, key, rec)) in waiting.take_below(right_done.max(expire_left)) {
                expired += u64::from(ts >= right_done);
                let found = key.as_ref().and_then(|k| history.get(k)).and_then(|h| h.range(..=(ts, u64::MAX)).next_back()).filter(|((rts, _), _)| step.tolerance.is_none_or(|tol| ts - rts <= tol));
                if let Some(c) = caps.get_mut(&t) {
                    c.1 -= 1;
                }
                if found.is_none() && step.inner {
                    unmatched += 1;
                    continue;
                }
                let mut row = rec.into_row(step.picks.len());
                match found {
                    Some((_, values)) => row.extend(values.iter().cloned()),
                    None => {
                        unmatched += 1;
                        row.extend(step.picks.iter().map(|_| Value::Null));
                    }
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
            // NB: pruning only bounds memory (a lookup takes the latest record at or before its
            // time, however many older ones are kept), so it runs once a second of event time.
            let earliest = waiting.from().min(bound(lf, step.left_lag));
            if earliest > pruned_to.saturating_add(PRUNE_EVERY_MS) && earliest != i64::MAX {
                pruned_to = earliest;
                prune(&mut history, earliest, step.tolerance);
            }
            // Past `state_ttl` of the right side's progress, right records go too (the latest
            // of each key stays).
            if let (Some(ttl), Some(_)) = (step.state_ttl, rf) {
                let at = right_done.saturating_sub(ttl);
                if at > pruned_to {
                    pruned_to = at;
                    expired += prune(&mut history, at, step.tolerance);
                }
            }
            stats.rows_unmatched.fetch_add(unmatched, Relaxed);
            if expired > 0 {
                stats.rows_expired.fetch_add(expired, Relaxed);
                if !warned {
                    warned = true;
                    tracing::warn!(step = %name, "a side's watermark is far behind the other's: state past `state_ttl` is let go (left records joined with what has arrived, old right records dropped); counted in tickflow_step_rows_expired_total");
                }
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
