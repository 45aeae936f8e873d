//! The window operator: trades exchanged by key, stashed by timestamp, and applied to the
//! [`WindowState`] in timestamp order — within a timestamp sorted by arrival sequence — once the
//! frontier passes. Before the trades of timestamp `T` are applied, every window ending at or
//! before `T` fires, so what is a first emission and what is a revision depends only on the
//! input, never on scheduling or the worker count.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use timely::dataflow::StreamVec;
use timely::dataflow::operators::{Capability, Operator};

use super::input::{WindowRecord, WindowRow};
use super::state::WindowState;
use crate::base::keys::key_group;
use crate::base::record::{Row, Value, format_ts};
use crate::base::reject::RejectReason;
use crate::checkpoint::{GroupedState, Role};
use crate::worker::context::RunContext;
use crate::worker::stash::{Stash, keep_spare, stash_stamp_reusing};
use crate::output::dead_letter::{DeadLetter, DeadLetters};
use crate::steps::window::node::{RowInput, WindowNode};

/// One key group of a window operator's checkpoint: its keys' windows and stashed records.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "R: WindowRecord")]
struct GroupBlob<R> {
    windows: Vec<(compact_str::CompactString, Vec<super::state::Win>)>,
    stash: Vec<(u64, R)>,
    fills: Vec<(compact_str::CompactString, super::state::Fill)>,
}

#[derive(serde::Serialize)]
#[serde(bound = "R: WindowRecord")]
struct GroupBlobRef<'a, R> {
    windows: Vec<(compact_str::CompactString, &'a Vec<super::state::Win>)>,
    stash: Vec<(u64, &'a R)>,
    fills: Vec<(compact_str::CompactString, &'a super::state::Fill)>,
}

impl<R> Default for GroupBlobRef<'_, R> {
    fn default() -> Self {
        GroupBlobRef {
            windows: Vec::new(),
            stash: Vec::new(),
            fills: Vec::new(),
        }
    }
}

/// The operator's state (windows and records waiting for the frontier) by key group.
fn snapshot<R: WindowRecord>(
    state: &WindowState,
    stash: &Stash<R>,
    group_of: &impl Fn(&str) -> u32,
) -> GroupedState {
    let mut groups: BTreeMap<u32, GroupBlobRef<R>> = BTreeMap::new();
    for (g, entries) in state.snapshot(group_of) {
        groups.entry(g).or_default().windows = entries;
    }
    for (g, entries) in state.snapshot_fills(group_of) {
        groups.entry(g).or_default().fills = entries;
    }
    for (time, (_, trades)) in stash {
        for t in trades {
            groups
                .entry(group_of(t.key()))
                .or_default()
                .stash
                .push((*time, t));
        }
    }
    groups
        .into_iter()
        .map(|(g, blob)| {
            (
                g,
                bincode::serialize(&blob).expect("window state serializes"),
            )
        })
        .collect()
}

/// A row stream as a window reads it (a one-to-one map, before the exchange).
pub fn window_rows<'scope>(
    rows: StreamVec<'scope, u64, Row>,
    input: &RowInput,
) -> StreamVec<'scope, u64, WindowRow> {
    use timely::dataflow::operators::vec::Map;
    let (key, time, slots, revision) = (input.key, input.time, input.slots.clone(), input.revision);
    rows.map(move |r| {
        let mut w = WindowRow::from_row(&r, key, time, &slots);
        if let Some(Value::I64(n)) = revision.map(|c| &r[c]) {
            w.revision = *n;
        }
        w
    })
}

pub fn window_stream<'scope, R: WindowRecord>(
    stream: StreamVec<'scope, u64, R>,
    ctx: &Arc<RunContext>,
    node: &WindowNode,
    index: usize,
    input_node: usize,
    dead: Rc<RefCell<DeadLetters>>,
) -> StreamVec<'scope, u64, Row> {
    let node = node.clone();
    let source_kind = ctx.sources[node.input].clone();
    let ctx = Arc::clone(ctx);
    let key_groups = ctx.key_groups as u64;
    let group_of = move |key: &str| key_group(key, key_groups) as u32;
    // Keys are routed by key group, so a checkpoint's groups map onto any number of workers.
    let exchange = crate::worker::batches::exchange(move |t: &R| key_group(t.key(), key_groups));
    // Rows fired by a window are complete `lag` behind the frontier (see `RowInput::lag`).
    let lag = node.rows.as_ref().and_then(|r| r.lag);
    let rows_in = node.rows.is_some();
    let scope = stream.scope();
    let (worker, peers) = (scope.index(), scope.peers());
    stream.unary_frontier(exchange, &format!("Window({})", node.name), move |initial, info| {
        let activator = scope.activator_for(info.address);
        let mut stash: Stash<R> = Stash::new();
        let mut spare: Vec<R> = Vec::new();
        // What has fired so far (rows fired by a window are judged late against it).
        let mut fired_upto = i64::MIN;
        let mut hold: Option<Capability<u64>> = None;
        let mut state = WindowState::new(&node);
        if node.skip_partial {
            state.skip_windows_before(ctx.started_ms);
        }
        let mut rows: Vec<Row> = Vec::new();
        let mut revised: Vec<Row> = Vec::new();
        let name = node.name.clone();
        let step_stats = ctx.metrics.step(&name, "window");
        step_stats.declare(&[crate::metrics::Counter::Skipped, crate::metrics::Counter::Filled]);
        let mut cp = ctx
            .checkpoint
            .as_ref()
            .map(|c| c.participant(Role::Step, index, worker, Some(input_node)));
        // Restore the key groups this worker owns.
        if let Some(cp) = cp.as_ref() {
            for blob in cp.coordinator().restored_groups(&name, worker, peers) {
                match bincode::deserialize::<GroupBlob<R>>(blob) {
                    Ok(g) => {
                        state.restore(g.windows);
                        state.restore_fills(g.fills);
                        for (time, trade) in g.stash {
                            stash.entry(time).or_insert_with(|| (initial.delayed(&time), Vec::new())).1.push(trade);
                        }
                    }
                    Err(e) => ctx.fail(format!("step `{name}`: restoring window state: {e}")),
                }
            }
            if !state.is_empty() {
                hold = Some(initial.clone());
            }
        }
        drop(initial);

        move |(input, frontier), output| {
            let mut received = 0;
            input.for_each_stamp(|cap, data| received += stash_stamp_reusing(&mut stash, &mut spare, cap, data));
            step_stats.records_in.fetch_add(received as u64, Relaxed);
            // Frozen while a checkpoint is in progress: nothing fires.
            if let Some(cp) = cp.as_mut()
                && cp.stateful_turn(&name, received, &activator, || Some(snapshot(&state, &stash, &group_of)))
            {
                return;
            }
            let upper: Option<u64> = frontier.frontier().iter().min().copied();

            while let Some((&t, _)) = stash.first_key_value() {
                if upper.is_some_and(|u| t >= u) {
                    break;
                }
                let (_, (cap, mut trades)) = stash.pop_first().expect("checked non-empty");
                // Every window complete at `t` fires before the records of `t` are applied, so
                // whether a record revises a window depends on `t` alone (rows of a window are
                // complete `lag` behind their time).
                let upto = (t as i64).saturating_sub(lag.unwrap_or(0));
                state.fire_until(upto, &mut rows);
                fired_upto = fired_upto.max(upto);
                for tr in trades.iter_mut() {
                    let wm = match lag {
                        // NB: a record normally carries a watermark ≥ its timestamp. When a
                        // source outran an idle partition, records of that partition arrive with
                        // an older one: the frontier has already moved on, so judge them by the
                        // timestamp.
                        None => tr.wm().max(t as i64),
                        // The time a window's row was emitted at says nothing of its window
                        // start; only what already fired is closed.
                        Some(_) => fired_upto,
                    };
                    tr.set_wm(wm);
                }
                // NB: sorting restores file/arrival order (rows: time, then a content hash),
                // which makes float sums and first/last ties independent of how batches
                // interleaved across workers.
                trades.sort_by_key(|t| t.order());
                let mut late = 0u64;
                for tr in &trades {
                    if let Some((reason, why)) = tr.problem() {
                        dead.borrow_mut().push(DeadLetter {
                            source: &name,
                            reason,
                            detail: why.to_string(),
                            raw: tr.raw(),
                            line: 0,
                        });
                        continue;
                    }
                    if let Some(end) = state.add(tr) {
                        late += 1;
                        dead.borrow_mut().push(DeadLetter {
                            source: &name,
                            reason: RejectReason::Late,
                            detail: format!(
                                "window ending {} had closed: watermark was {} when the trade was read",
                                format_ts(end),
                                format_ts(tr.wm())
                            ),
                            raw: tr.raw(),
                            line: if rows_in { 0 } else { source_kind.position_of(tr.seq()) },
                        });
                    }
                }
                let _ = late;
                keep_spare(&mut spare, trades);
                // NB: revisions go out at the time of the records that caused them (not at the
                // held time, which depends on when the frontier was last seen): a window over
                // these rows takes them in deterministically.
                state.take_revisions(&mut revised);
                if !revised.is_empty() {
                    step_stats.records_out.fetch_add(revised.len() as u64, Relaxed);
                    if let Some(cp) = cp.as_ref() { cp.emitted(revised.len()); }
                    output.session(&cap).give_iterator(revised.drain(..));
                }
                if !rows.is_empty() {
                    step_stats.records_out.fetch_add(rows.len() as u64, Relaxed);
                    if let Some(cp) = cp.as_ref() { cp.emitted(rows.len()); }
                    // NB: rows go out at the held time, which is below the end of every window
                    // still open (all that ended by it fired then), so a window's row is always
                    // stamped before its end: a window over these rows relies on it.
                    output.session(hold.as_ref().unwrap_or(&cap)).give_iterator(rows.drain(..));
                }
                hold = Some(cap);
            }

            match upper {
                Some(u) => {
                    let upto = (u as i64).saturating_sub(lag.unwrap_or(0));
                    state.fire_until(upto, &mut rows);
                    fired_upto = fired_upto.max(upto);
                    if !rows.is_empty() {
                        let cap = hold.as_ref().expect("windows exist only after trades arrived under a capability");
                        step_stats.records_out.fetch_add(rows.len() as u64, Relaxed);
                    if let Some(cp) = cp.as_ref() { cp.emitted(rows.len()); }
                        output.session(cap).give_iterator(rows.drain(..));
                    }
                    if state.is_empty() {
                        hold = None;
                    } else if let Some(h) = hold.as_mut() {
                        h.downgrade(&u);
                    }
                }
                None => {
                    if ctx.stop.load(Relaxed) {
                        let n = state.discard_unfired();
                        if n > 0 {
                            ctx.metrics.windows_discarded.fetch_add(n, Relaxed);
                            tracing::info!(step = %name, windows = n, "stopped: discarded incomplete windows");
                        }
                    } else {
                        state.fire_until(i64::MAX, &mut rows);
                    }
                    if let Some(cap) = hold.take()
                        && !rows.is_empty()
                    {
                        step_stats.records_out.fetch_add(rows.len() as u64, Relaxed);
                    if let Some(cp) = cp.as_ref() { cp.emitted(rows.len()); }
                        output.session(&cap).give_iterator(rows.drain(..));
                    }
                    rows.clear();
                    if let Some(cp) = cp.as_mut() {
                        cp.finish();
                    }
                }
            }
            let stats = state.take_stats();
            step_stats.records_skipped.fetch_add(stats.outside, Relaxed);
            step_stats.rows_filled.fetch_add(stats.filled, Relaxed);
            ctx.metrics.windows_fired.fetch_add(stats.fired, Relaxed);
            ctx.metrics.revisions_emitted.fetch_add(stats.revisions, Relaxed);
            ctx.metrics.late_revisions.fetch_add(stats.late_accepted, Relaxed);
        }
    })
}
