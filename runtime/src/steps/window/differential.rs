//! Windows whose results change after they are first emitted (allowed-lateness revisions), on
//! differential dataflow's collections instead of hand-written incremental maintenance.
//!
//! Each trade becomes one update per window it belongs to: `+1` at the window end when it is on
//! time (so the window's first result appears exactly when the watermark passes its end), `+1`
//! at its read round (but after the end) when it is late but within the allowed lateness (a
//! revision), and `-1` once the allowed lateness has expired (so the arrangement forgets the
//! window). `reduce` keeps every
//! window's aggregate up to date; its output changes are turned into rows with revision numbers.
//! Values are ordered by arrival sequence, so aggregation order — and the floating-point result —
//! is the same as the timely operator's, for any worker count.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use compact_str::CompactString;
use differential_dataflow::AsCollection;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Capability, Operator};

use super::aggregate::Acc;
use crate::base::record::trade_json;
use crate::base::record::{Row, Trade, Value, format_ts};
use crate::base::reject::RejectReason;
use crate::base::time::quantize;
use crate::worker::context::RunContext;
use crate::output::dead_letter::{DeadLetter, DeadLetters};
use crate::steps::window::node::{WindowKind, WindowNode};

/// (key, window start)
type WinKey = (CompactString, i64);
/// (arrival seq, event time, price bits, volume bits): ordered by arrival.
type WinVal = (u64, i64, u64, u64);
/// Aggregate values: `None` is null; doubles as bits, integers as two's complement.
type Encoded = Vec<Option<u64>>;

fn encode(values: &[Value]) -> Encoded {
    values
        .iter()
        .map(|v| match v {
            Value::F64(x) => Some(x.to_bits()),
            Value::I64(x) => Some(*x as u64),
            _ => None,
        })
        .collect()
}

fn decode(node: &WindowNode, encoded: &[Option<u64>], out: &mut Row) {
    for (agg, v) in node.aggregates.iter().zip(encoded) {
        out.push(match (agg.func, v) {
            (_, None) => Value::Null,
            (super::config::AggregateFn::Count, Some(x)) => Value::I64(*x as i64),
            (_, Some(x)) => Value::F64(f64::from_bits(*x)),
        });
    }
}

pub fn window_stream<'scope>(
    stream: StreamVec<'scope, u64, Trade>,
    ctx: &Arc<RunContext>,
    node: &crate::steps::window::node::WindowNode,
    index: usize,
    dead: Rc<RefCell<DeadLetters>>,
) -> StreamVec<'scope, u64, Row> {
    let _ = index;
    let node = node.clone();
    let (size, slide) = match node.kind {
        WindowKind::Tumbling { size } => (size, size),
        WindowKind::Hopping { size, slide } => (size, slide),
        WindowKind::Session { .. } => {
            unreachable!("the planner keeps sessions on the timely engine")
        }
    };
    let allowed = node.allowed_lateness_ms;
    // The retraction that lets the arrangement forget a window comes after every update a late
    // trade can make (those are before `end + allowed`), so it never cancels a result.
    let expiry = allowed + 1;
    let quantum = ctx.sources[node.input].time_quantum_ms;
    let name = node.name.clone();
    let update_ctx = Arc::clone(ctx);
    let source_kind = ctx.sources[node.input].clone();

    // Trades → window updates, with lateness decided per window against the read watermark.
    let updates = stream.unary::<timely::container::CapacityContainerBuilder<Vec<((WinKey, WinVal), u64, isize)>>, _, _, _>(
        Pipeline,
        &format!("WindowUpdates({name})"),
        move |_cap, _info| {
            move |input, output| {
                let mut late_accepted = 0u64;
                input.for_each_stamp(|cap, data| {
                    let now = cap.least().copied().unwrap_or(0) as i64;
                    let mut session = output.session(&cap);
                    for batch in data {
                        for mut t in batch.drain(..) {
                            // See the timely operator: records from an idle partition are judged
                            // by their timestamp.
                            t.wm = t.wm.max(now);
                            let round = quantize(t.wm, quantum);
                            let val: WinVal = (t.seq, t.ts, t.price.to_bits(), t.volume.to_bits());
                            let mut start = t.ts.div_euclid(slide) * slide;
                            let mut kept = false;
                            let mut late_end = i64::MIN;
                            while start > t.ts - size {
                                let end = start + size;
                                let at = if end > t.wm {
                                    Some(end as u64)
                                } else if end + allowed > t.wm {
                                    // After the first result (at `end`), grouped by read round
                                    // exactly as the timely operator groups revisions.
                                    late_accepted += 1;
                                    Some(round.max(end as u64 + 1))
                                } else {
                                    late_end = late_end.max(end);
                                    None
                                };
                                if let Some(at) = at {
                                    kept = true;
                                    let key: WinKey = (t.symbol.clone(), start);
                                    session.give(((key.clone(), val), at, 1));
                                    session.give(((key, val), (end + expiry) as u64, -1));
                                }
                                start -= slide;
                            }
                            if !kept {
                                dead.borrow_mut().push(DeadLetter {
                                    source: &name,
                                    reason: RejectReason::Late,
                                    detail: format!(
                                        "window ending {} had closed: watermark was {} when the trade was read",
                                        format_ts(late_end),
                                        format_ts(t.wm)
                                    ),
                                    raw: trade_json(&t),
                                    line: source_kind.position_of(t.seq),
                                });
                            }
                        }
                    }
                });
                update_ctx.metrics.late_revisions.fetch_add(late_accepted, Relaxed);
            }
        },
    );

    let aggs = node.aggregates.clone();
    let results = updates.as_collection().reduce(
        move |_key: &WinKey, vals: &[(&WinVal, isize)], out: &mut Vec<(Encoded, isize)>| {
            let mut acc: Option<Acc> = None;
            for (v, diff) in vals {
                let t = Trade {
                    symbol: CompactString::default(),
                    price: f64::from_bits(v.2),
                    volume: f64::from_bits(v.3),
                    ts: v.1,
                    seq: v.0,
                    wm: 0,
                    conditions: CompactString::default(),
                };
                for _ in 0..*diff {
                    match acc.as_mut() {
                        Some(a) => a.add(&aggs, &t),
                        None => acc = Some(Acc::new(&aggs, &t)),
                    }
                }
            }
            if let Some(acc) = acc {
                let mut values = Vec::with_capacity(aggs.len());
                acc.emit(&mut values);
                out.push((encode(&values), 1));
            }
        },
    );

    // Result changes → rows: each insertion is a new revision of its window.
    let ctx = Arc::clone(ctx);
    results.inner.unary_frontier(Pipeline, &format!("Revisions({})", node.name), move |_cap, _info| {
        let mut stash: BTreeMap<u64, (Capability<u64>, Vec<((WinKey, Encoded), isize)>)> = BTreeMap::new();
        let mut revisions: HashMap<WinKey, i64> = HashMap::new();
        // The last finite frontier: at a stop, results beyond it belong to incomplete windows.
        let mut last_upper = 0u64;
        move |(input, frontier), output| {
            input.for_each_stamp(|cap, data| {
                for batch in data {
                    for (d, t, r) in batch.drain(..) {
                        stash.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new())).1.push((d, r));
                    }
                }
            });
            let upper = frontier.frontier().iter().min().copied();
            match upper {
                Some(u) => last_upper = u,
                None if ctx.stop.load(Relaxed) => {
                    let incomplete = stash.split_off(&last_upper);
                    let n: usize = incomplete.values().map(|(_, u)| u.iter().filter(|(_, d)| *d > 0).count()).sum();
                    if n > 0 {
                        ctx.metrics.windows_discarded.fetch_add(n as u64, Relaxed);
                        tracing::info!(step = %node.name, windows = n, "stopped: discarded incomplete windows");
                    }
                }
                None => {}
            }
            while let Some((&t, _)) = stash.first_key_value() {
                if upper.is_some_and(|u| t >= u) {
                    break;
                }
                let (_, (cap, mut updates)) = stash.pop_first().expect("non-empty");
                updates.sort();
                let mut rows = Vec::new();
                let (mut fired, mut revised) = (0, 0);
                for ((key, encoded), diff) in updates {
                    if diff > 0 {
                        let rev = revisions.entry(key.clone()).or_insert(-1);
                        *rev += 1;
                        if *rev == 0 { fired += 1 } else { revised += 1 }
                        let mut row = Vec::with_capacity(4 + encoded.len());
                        row.push(Value::Str(key.0.clone()));
                        row.push(Value::Ts(key.1));
                        row.push(Value::Ts(key.1 + size));
                        decode(&node, &encoded, &mut row);
                        if allowed > 0 {
                            row.push(Value::I64(*rev));
                        }
                        rows.push(row);
                    } else if t as i64 >= key.1 + size + expiry {
                        revisions.remove(&key);
                    }
                }
                ctx.metrics.windows_fired.fetch_add(fired, Relaxed);
                ctx.metrics.revisions_emitted.fetch_add(revised, Relaxed);
                if !rows.is_empty() {
                    output.session(&cap).give_iterator(rows.into_iter());
                }
            }
        }
    })
}
