//! A lookup in a table that changes (`reload:`): records wait until the table's versions have
//! passed their time, then join the latest version stamped at or before it
//! ([`crate::tables::reload`]). The versions in use are in checkpoints, so a restore (on any
//! worker count) joins the records after it with the same table as before.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::Operator;

use super::Joiner;
use crate::base::record::Row;
use crate::checkpoint::{GroupedState, Role};
use crate::worker::stash::{Stash, stash_stamp};
use crate::steps::expressions::Evaluated;
use crate::steps::{AnyStream, BuildCx};
use crate::tables::{Table, TableData};

/// What a worker's lookup holds at a checkpoint. Worker 0's (key group 0) carries the versions.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Blob {
    versions: Vec<(u64, TableData)>,
    stash: Vec<(u64, Row)>,
}

pub(super) fn join<'s>(
    input: AnyStream<'s>,
    cx: &BuildCx<'_>,
    name: &str,
    table: Arc<Table>,
    mut eval: Evaluated,
    joiner: Joiner,
) -> StreamVec<'s, u64, Row> {
    let ctx = Arc::clone(cx.ctx);
    let rows = input.rows();
    // The frontier of the rows, for the feed on this worker.
    let progress = Rc::new(std::cell::Cell::new(Some(0u64)));
    let scope = rows.scope();
    let (worker, peers) = (scope.index(), scope.peers());
    let key_groups = ctx.key_groups;
    // The versions in use at the restored checkpoint, or the table read at start.
    let mut versions: BTreeMap<u64, Arc<TableData>> = BTreeMap::new();
    let mut restored_stash: Vec<(u64, Row)> = Vec::new();
    if let Some(cp) = ctx.checkpoint.as_ref() {
        if let Some(blob) = cp.restored_group(name, 0) {
            match bincode::deserialize::<Blob>(blob) {
                Ok(b) => versions.extend(b.versions.into_iter().map(|(t, d)| (t, Arc::new(d)))),
                Err(e) => ctx.fail(format!("step `{name}`: restoring its table: {e}")),
            }
        }
        for blob in cp.restored_groups(name, worker, peers) {
            if let Ok(b) = bincode::deserialize::<Blob>(blob) {
                restored_stash.extend(b.stash);
            }
        }
    }
    if versions.is_empty() {
        versions.insert(0, Arc::clone(&table.data));
    }
    let known = versions.values().next_back().map_or(0, |d| d.fingerprint);
    let kick = Rc::new(RefCell::new(None));
    let stats = ctx.metrics.step(name, "lookup");
    stats.declare(&[crate::metrics::Counter::Unmatched, crate::metrics::Counter::TableReloads]);
    let feed = crate::tables::reload::feed(scope, name, table, known, Rc::clone(&progress), Arc::clone(&stats), Rc::clone(&kick)).broadcast();
    let mut cp = ctx.checkpoint.as_ref().map(|c| c.participant(Role::Step, cx.index, worker, Some(cx.input_node)));
    let step = name.to_string();
    rows.binary_frontier(feed, Pipeline, Pipeline, &format!("Lookup({name})"), move |initial, info| {
        let activator = scope.activator_for(info.address);
        let mut stash: Stash<Row> = Stash::new();
        for (t, row) in restored_stash {
            stash.entry(t).or_insert_with(|| (initial.delayed(&t), Vec::new())).1.push(row);
        }
        drop(initial);
        let mut out: Vec<Row> = Vec::new();
        move |(rows_in, rows_frontier), (versions_in, versions_frontier), output| {
            // The feed follows this input's progress: tell it, and wake it when it moved.
            let now = rows_frontier.frontier().iter().min().copied();
            if progress.get() != now {
                progress.set(now);
                if let Some(a) = kick.borrow().as_ref() {
                    a.activate();
                }
            }
            let mut received = 0;
            rows_in.for_each_stamp(|cap, data| received += stash_stamp(&mut stash, cap, data));
            stats.records_in.fetch_add(received as u64, Relaxed);
            versions_in.for_each_stamp(|cap, data| {
                let Some(&t) = cap.least() else { return };
                for batch in data {
                    for d in batch.drain(..) {
                        versions.insert(t, Arc::new(d));
                    }
                }
            });
            let snapshot = || -> Option<GroupedState> {
                let mut blob = Blob::default();
                for (t, (_, rows)) in &stash {
                    blob.stash.extend(rows.iter().map(|r| (*t, r.clone())));
                }
                if worker == 0 {
                    blob.versions = versions.iter().map(|(t, d)| (*t, TableData::clone(d))).collect();
                }
                let mut groups = GroupedState::new();
                if worker == 0 || !blob.stash.is_empty() {
                    groups.insert(worker as u32 % key_groups, bincode::serialize(&blob).expect("the lookup's state serializes"));
                }
                Some(groups)
            };
            if let Some(cp) = cp.as_mut()
                && cp.stateful_turn(&step, received, &activator, snapshot)
            {
                return;
            }
            // Records whose time no version can still come before join the latest version.
            let upper = versions_frontier.frontier().iter().min().copied();
            while let Some((&t, _)) = stash.first_key_value() {
                if upper.is_some_and(|u| t >= u) {
                    break;
                }
                let (_, (cap, batch)) = stash.pop_first().expect("checked non-empty");
                let data = versions.range(..=t).next_back().map(|(_, d)| Arc::clone(d)).expect("a version from time 0");
                joiner.join(&mut eval, &data, batch, |r| r, &mut out);
                if !out.is_empty() {
                    stats.records_out.fetch_add(out.len() as u64, Relaxed);
                    if let Some(cp) = cp.as_ref() {
                        cp.emitted(out.len());
                    }
                    output.session(&cap).give_container(&mut out);
                    out.clear();
                }
            }
            // Versions no record can need any more go (the latest before the frontier stays).
            let least = [rows_frontier.frontier().iter().min().copied(), upper].into_iter().flatten().min();
            if let Some(least) = least
                && let Some((&keep, _)) = versions.range(..=least).next_back()
            {
                versions.retain(|t, _| *t >= keep);
            }
            if rows_frontier.is_empty() && versions_frontier.is_empty()
                && let Some(cp) = cp.as_mut()
                && !cp.finished()
            {
                cp.finish();
            }
        }
    })
}
