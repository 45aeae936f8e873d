//! Rankings per window: rows are exchanged by their window (the `per` value, so one worker sees
//! all rows of a window), stashed until their arrival time is complete, and kept per window and
//! key. Once no row of a window can still come (see [`Complete`](crate::steps::Complete)) the window is ranked and
//! its first `n` rows go out at the time its last row arrived. With a revised input the window
//! stays while revisions can come; a revision that changes the ranking emits it again at the
//! revision's time with `revision` + 1. Everything depends on the rows and their times only, so
//! the output is the same for any number of workers.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use compact_str::CompactString;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::{Capability, Operator};

use super::TopN;
use crate::base::keys::key_group;
use crate::base::record::{Row, Value, format_ts};
use crate::base::reject::RejectReason;
use crate::checkpoint::{GroupedState, Role};
use crate::worker::stash::{Stash, stash_stamp};
use crate::output::dead_letter::DeadLetter;
use crate::steps::BuildCx;
use crate::steps::expressions::Evaluated;

/// One window's rows and what was emitted of it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Window {
    /// key → (the value ranked by, the key's latest row).
    rows: BTreeMap<CompactString, (Value, Row)>,
    /// The last ranking emitted (with rank and revision set), and its revision.
    emitted: Option<(i64, Vec<Row>)>,
    /// The latest time a row of the window arrived at (its first ranking goes out then).
    latest: u64,
}

/// One key group of the operator's checkpoint.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct GroupBlob {
    windows: Vec<(i64, Window)>,
    stash: Vec<(u64, Row)>,
}

fn window_group(per: i64, key_groups: u64) -> u32 {
    key_group(&per.to_string(), key_groups) as u32
}

/// SQL's order of one type's values; NaN after every number, as DuckDB orders it.
fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::F64(x), Value::F64(y)) => x.total_cmp(y),
        (Value::I64(x), Value::I64(y)) | (Value::Ts(x), Value::Ts(y)) => x.cmp(y),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        _ => Ordering::Equal,
    }
}

impl TopN {
    /// The window's first `n` rows, with `rank` appended and the revision set.
    fn rank(&self, w: &Window, revision: i64) -> Vec<Row> {
        let mut order: Vec<(&CompactString, &(Value, Row))> = w.rows.iter().collect();
        order.sort_by(|(ka, (a, _)), (kb, (b, _))| {
            let by = match (a, b) {
                (Value::Null, _) | (_, Value::Null) => cmp_values(a, b),
                _ if self.desc => cmp_values(b, a),
                _ => cmp_values(a, b),
            };
            by.then_with(|| ka.cmp(kb))
        });
        order
            .into_iter()
            .take(self.n)
            .enumerate()
            .map(|(i, (_, (_, row)))| {
                let mut row = row.clone();
                if let Some(r) = self.revised {
                    row[r.column] = Value::I64(revision);
                }
                row.push(Value::I64(i as i64 + 1));
                row
            })
            .collect()
    }

    /// Ranks the windows below `below` not ranked yet, each at the time its last row came.
    fn rank_complete(
        &self,
        windows: &mut BTreeMap<i64, Window>,
        caps: &mut HashMap<i64, Capability<u64>>,
        below: i64,
        emit: &mut Vec<(Capability<u64>, Vec<Row>)>,
    ) {
        for (v, w) in windows.range_mut(..below) {
            if w.emitted.is_some() {
                continue;
            }
            let rows = self.rank(w, 0);
            let cap = caps.remove(v).expect("a window not ranked holds a capability");
            emit.push((cap, rows.clone()));
            w.emitted = Some((0, rows));
        }
    }

    fn revision_of(&self, row: &Row) -> i64 {
        match self.revised.map(|r| &row[r.column]) {
            Some(Value::I64(n)) => *n,
            _ => 0,
        }
    }
}

pub fn ranked<'scope>(
    stream: StreamVec<'scope, u64, Row>,
    cx: &BuildCx<'_>,
    step: TopN,
) -> StreamVec<'scope, u64, Row> {
    let ctx = Arc::clone(cx.ctx);
    let dead = std::rc::Rc::clone(cx.dead);
    let mut eval = Evaluated::new(cx, &step.name, step.source, step.input_schema.clone(), vec![step.by.clone()]);
    let by_type = step.by.ty();
    let key_groups = ctx.key_groups as u64;
    let per = step.per;
    let exchange = crate::worker::batches::exchange(move |r: &Row| match r[per] {
        Value::Ts(v) => window_group(v, key_groups) as u64,
        _ => 0,
    });
    let scope = stream.scope();
    let (worker, peers) = (scope.index(), scope.peers());
    let mut cp = ctx
        .checkpoint
        .as_ref()
        .map(|c| c.participant(Role::Step, cx.index, worker, Some(cx.input_node)));
    let name = step.name.clone();
    let label = format!("TopN({name})");
    // How long a ranked window stays for revisions.
    let lateness = step.revised.map_or(0, |r| r.lateness);
    stream.unary_frontier(exchange, &label, move |initial, info| {
        let activator = scope.activator_for(info.address);
        let mut stash: Stash<Row> = Stash::new();
        let mut windows: BTreeMap<i64, Window> = BTreeMap::new();
        // The capability each window not ranked yet emits its ranking with.
        let mut caps: HashMap<i64, Capability<u64>> = HashMap::new();
        let stats = ctx.metrics.step(&name, "top_n");
        if let Some(cp) = cp.as_ref() {
            for blob in cp.coordinator().restored_groups(&name, worker, peers) {
                match bincode::deserialize::<GroupBlob>(blob) {
                    Ok(g) => {
                        for (v, w) in g.windows {
                            if w.emitted.is_none() {
                                caps.insert(v, initial.delayed(&w.latest));
                            }
                            windows.insert(v, w);
                        }
                        for (t, row) in g.stash {
                            stash.entry(t).or_insert_with(|| (initial.delayed(&t), Vec::new())).1.push(row);
                        }
                    }
                    Err(e) => ctx.fail(format!("step `{name}`: restoring its state: {e}")),
                }
            }
        }
        drop(initial);
        move |(input, frontier), output| {
            let mut received = 0;
            input.for_each_stamp(|cap, data| received += stash_stamp(&mut stash, cap, data));
            stats.records_in.fetch_add(received as u64, Relaxed);
            let snapshot = || -> Option<GroupedState> {
                let mut groups: BTreeMap<u32, GroupBlob> = BTreeMap::new();
                for (v, w) in &windows {
                    groups.entry(window_group(*v, key_groups)).or_default().windows.push((*v, w.clone()));
                }
                for (t, (_, rows)) in &stash {
                    for r in rows {
                        let g = match r[per] {
                            Value::Ts(v) => window_group(v, key_groups),
                            _ => 0,
                        };
                        groups.entry(g).or_default().stash.push((*t, r.clone()));
                    }
                }
                Some(groups.into_iter().map(|(g, b)| (g, bincode::serialize(&b).expect("the step's state serializes"))).collect())
            };
            if let Some(cp) = cp.as_mut()
                && cp.stateful_turn(&name, received, &activator, snapshot)
            {
                return;
            }
            let upper: Option<u64> = frontier.frontier().iter().min().copied();
            let mut emit: Vec<(Capability<u64>, Vec<Row>)> = Vec::new();
            let late = |row: &Row, detail: String, reason: RejectReason| {
                dead.borrow_mut().push(DeadLetter {
                    source: &name,
                    reason,
                    detail,
                    raw: crate::output::dead_letter::row_json(&step.input_schema, row),
                    line: 0,
                });
            };
            // At a stop the windows not complete yet are left out, as the windows upstream leave
            // out theirs.
            if upper.is_none() && ctx.stop.load(Relaxed) {
                windows.retain(|_, w| w.emitted.is_some());
                caps.clear();
            }
            // Rows go in the order of their arrival times, once each time is complete. Before
            // the rows of time `t`, every window complete at `t` is ranked: its first ranking
            // holds exactly the rows that came before, whatever the batching.
            while let Some((&t, _)) = stash.first_key_value() {
                if upper.is_some_and(|u| t >= u) {
                    break;
                }
                let (_, (cap, rows)) = stash.pop_first().expect("checked non-empty");
                step.rank_complete(&mut windows, &mut caps, step.complete.below(t as i64), &mut emit);
                let Some((values, failed)) = eval.run(&rows) else { continue };
                let values = crate::expr::values_of(&values[0], by_type);
                let mut revised: Vec<i64> = Vec::new();
                for ((row, value), failed) in rows.into_iter().zip(values).zip(failed) {
                    if failed {
                        continue;
                    }
                    let (v, k) = match (&row[per], &row[step.key]) {
                        (Value::Ts(v), Value::Str(k)) => (*v, k.clone()),
                        (Value::Ts(_), _) => {
                            late(&row, "the key column is NULL".into(), RejectReason::MissingField);
                            continue;
                        }
                        _ => {
                            late(&row, "the window's time column is NULL".into(), RejectReason::InvalidTimestamp);
                            continue;
                        }
                    };
                    // No row of a window comes after its revisions closed (upstream drops them).
                    if t as i64 > v.saturating_add(step.complete.lag).saturating_add(lateness) {
                        let detail = format!("it came at {}, after the revisions of its window {} closed", format_ts(t as i64), format_ts(v));
                        late(&row, detail, RejectReason::Late);
                        continue;
                    }
                    let w = windows.entry(v).or_default();
                    if let Some((_, (_, old))) = w.rows.get_key_value(&k)
                        && step.revision_of(old) > step.revision_of(&row)
                    {
                        continue;
                    }
                    w.rows.insert(k, (value, row));
                    if w.emitted.is_some() {
                        revised.push(v);
                    } else {
                        w.latest = w.latest.max(t);
                        caps.insert(v, cap.clone());
                    }
                }
                // Revisions rank again; a changed ranking goes out with the next revision.
                revised.sort_unstable();
                revised.dedup();
                for v in revised {
                    let w = windows.get_mut(&v).expect("a revised window");
                    let (revision, before) = w.emitted.take().expect("a ranked window");
                    let same = step.rank(w, revision);
                    if same == before {
                        w.emitted = Some((revision, before));
                        continue;
                    }
                    let rows = step.rank(w, revision + 1);
                    emit.push((cap.clone(), rows.clone()));
                    w.emitted = Some((revision + 1, rows));
                }
            }
            // Complete windows are ranked (a tumbling window's once the frontier reaches its end).
            let complete_below = match upper {
                Some(u) => step.complete.below(u as i64),
                None => i64::MAX,
            };
            step.rank_complete(&mut windows, &mut caps, complete_below, &mut emit);
            // Ranked windows no revision can reach any more are let go.
            let keep_from = complete_below.saturating_sub(lateness).saturating_sub(1);
            while let Some(entry) = windows.first_entry() {
                if *entry.key() >= keep_from || entry.get().emitted.is_none() {
                    break;
                }
                entry.remove();
            }
            for (cap, rows) in emit {
                stats.records_out.fetch_add(rows.len() as u64, Relaxed);
                if let Some(cp) = cp.as_ref() {
                    cp.emitted(rows.len());
                }
                output.session(&cap).give_iterator(rows.into_iter());
            }
            if upper.is_none()
                && let Some(cp) = cp.as_mut()
            {
                cp.finish();
            }
        }
    })
}
