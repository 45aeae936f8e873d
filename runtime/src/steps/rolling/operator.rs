//! The rolling operator: rows exchanged by key, stashed by timestamp, then held per key in
//! event-time order until no earlier row of the key can come (a window's rows: `lag` behind the
//! frontier; rows made from trades: the frontier itself, a later earlier row is late), applied to
//! the key's [`KeyState`] and emitted at the time they arrived with.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use compact_str::CompactString;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};

use super::Rolling;
use super::state::KeyState;
use crate::base::keys::key_group;
use crate::base::record::{Row, Value, format_ts};
use crate::base::reject::RejectReason;
use crate::checkpoint::{GroupedState, Role};
use crate::dataflow::stash::{Stash, stash_stamp};
use crate::sinks::dead_letter::DeadLetter;
use crate::steps::BuildCx;

/// A row waiting for its turn: (time, key, content hash) → (the time it arrived with, row).
type Pending = BTreeMap<(i64, CompactString, u64), (u64, Row)>;

/// One key group of the operator's checkpoint.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct GroupBlob {
    keys: Vec<(CompactString, KeyState)>,
    pending: Vec<((i64, CompactString, u64), (u64, Row))>,
    stash: Vec<(u64, Row)>,
}

fn key_of(row: &Row, key: usize) -> &str {
    match &row[key] {
        Value::Str(s) => s.as_str(),
        _ => "",
    }
}

fn content_hash(row: &Row) -> u64 {
    let bytes = bincode::serialize(row).expect("a row serializes");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub(super) fn rolling_stream<'scope>(
    stream: StreamVec<'scope, u64, Row>,
    cx: &BuildCx<'_>,
    node: &Rolling,
) -> StreamVec<'scope, u64, Row> {
    let ctx = Arc::clone(cx.ctx);
    let dead = std::rc::Rc::clone(cx.dead);
    let node = node.clone();
    let (key, time) = (node.key, node.time);
    let key_groups = ctx.key_groups as u64;
    let group_of = move |k: &str| key_group(k, key_groups) as u32;
    let exchange = Exchange::new(move |r: &Row| key_group(key_of(r, key), key_groups));
    let scope = stream.scope();
    let (worker, peers) = (scope.index(), scope.peers());
    let mut cp = ctx
        .checkpoint
        .as_ref()
        .map(|c| c.participant(Role::Step, cx.index, worker, Some(cx.input_node)));
    let name = node.name.clone();
    stream.unary_frontier(exchange, &format!("Rolling({name})"), move |initial, info| {
        let activator = scope.activator_for(info.address);
        let mut stash: Stash<Row> = Stash::new();
        let mut pending: Pending = BTreeMap::new();
        // Capabilities of the times pending rows arrived with, and how many rows hold each.
        let mut caps: BTreeMap<u64, (Capability<u64>, usize)> = BTreeMap::new();
        let mut keys: HashMap<CompactString, KeyState> = HashMap::new();
        // Rows below this time have been applied.
        let mut applied_upto = i64::MIN;
        let step_stats = ctx.metrics.step(&name, "rolling");
        if let Some(cp) = cp.as_ref() {
            for blob in cp.coordinator().restored_groups(&name, worker, peers) {
                match bincode::deserialize::<GroupBlob>(blob) {
                    Ok(g) => {
                        keys.extend(g.keys);
                        for (k, (t, row)) in g.pending {
                            caps.entry(t).or_insert_with(|| (initial.delayed(&t), 0)).1 += 1;
                            pending.insert(k, (t, row));
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
            step_stats.records_in.fetch_add(received as u64, Relaxed);
            let snapshot = || -> Option<GroupedState> {
                let mut groups: BTreeMap<u32, GroupBlob> = BTreeMap::new();
                for (k, st) in &keys {
                    groups.entry(group_of(k)).or_default().keys.push((k.clone(), st.clone()));
                }
                for (k, v) in &pending {
                    groups.entry(group_of(&k.1)).or_default().pending.push((k.clone(), v.clone()));
                }
                for (t, (_, rows)) in &stash {
                    for r in rows {
                        groups.entry(group_of(key_of(r, key))).or_default().stash.push((*t, r.clone()));
                    }
                }
                Some(
                    groups
                        .into_iter()
                        .map(|(g, b)| (g, bincode::serialize(&b).expect("rolling state serializes")))
                        .collect(),
                )
            };
            if let Some(cp) = cp.as_mut()
                && cp.stateful_turn(&name, received, &activator, snapshot)
            {
                return;
            }
            let upper: Option<u64> = frontier.frontier().iter().min().copied();
            // Rows whose time is complete move from the stash to their key's turn.
            while let Some((&t, _)) = stash.first_key_value() {
                if upper.is_some_and(|u| t >= u) {
                    break;
                }
                let (_, (cap, rows)) = stash.pop_first().expect("checked non-empty");
                let mut held = 0;
                for row in rows {
                    let Value::Ts(ts) = row[time] else {
                        dead.borrow_mut().push(DeadLetter {
                            source: &name,
                            reason: RejectReason::InvalidTimestamp,
                            detail: "the time column is NULL".into(),
                            raw: crate::plugins::operator::row_json(&node.input_schema, &row),
                            line: 0,
                        });
                        continue;
                    };
                    // Rows made from trades are late when they are behind the watermark they were
                    // read at (rows before it may have gone out); a window's rows never are.
                    let late = if node.stamped { ts < t as i64 } else { ts < applied_upto };
                    if late {
                        dead.borrow_mut().push(DeadLetter {
                            source: &name,
                            reason: RejectReason::Late,
                            detail: format!(
                                "its time {} is behind {}, up to which rows were already emitted",
                                format_ts(ts),
                                format_ts(if node.stamped { t as i64 } else { applied_upto })
                            ),
                            raw: crate::plugins::operator::row_json(&node.input_schema, &row),
                            line: 0,
                        });
                        continue;
                    }
                    let k = CompactString::from(key_of(&row, key));
                    pending.insert((ts, k, content_hash(&row)), (t, row));
                    held += 1;
                }
                if held > 0 {
                    caps.entry(t).or_insert((cap, 0)).1 += held;
                }
            }
            // Rows below this time can be applied: no earlier row of their key can come.
            let bound = match upper {
                Some(u) => (u as i64).saturating_sub(node.lag),
                None => i64::MAX,
            };
            applied_upto = applied_upto.max(bound);
            let mut out: BTreeMap<u64, Vec<Row>> = BTreeMap::new();
            while let Some(entry) = pending.first_entry() {
                if entry.key().0 >= bound {
                    break;
                }
                let ((ts, k, _), (t, mut row)) = entry.remove_entry();
                let st = keys.entry(k).or_default();
                let values = node.slots.iter().map(|&c| match row[c] {
                    Value::F64(x) => Some(x),
                    Value::I64(x) => Some(x as f64),
                    _ => None,
                }).collect();
                let skip = node.skip_warmup && node.features.warming(st);
                let features = node.features.apply(st, ts, values);
                if let Some(c) = caps.get_mut(&t) {
                    c.1 -= 1;
                }
                if !skip {
                    row.extend(features);
                    out.entry(t).or_default().push(row);
                }
            }
            for (t, rows) in out {
                step_stats.records_out.fetch_add(rows.len() as u64, Relaxed);
                if let Some(cp) = cp.as_ref() {
                    cp.emitted(rows.len());
                }
                let (cap, _) = caps.get(&t).expect("a pending row holds its time");
                output.session(cap).give_iterator(rows.into_iter());
            }
            caps.retain(|_, (_, n)| *n > 0);
            if upper.is_none()
                && let Some(cp) = cp.as_mut()
            {
                cp.finish();
            }
        }
    })
}
