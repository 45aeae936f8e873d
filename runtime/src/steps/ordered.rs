//! Rows per key in event-time order: rows exchanged by key, stashed by timestamp, then held per
//! key until no earlier row of the key can come (a window's rows: `lag` behind the frontier;
//! rows made from trades: the frontier itself, and an earlier row after that is late), and
//! applied to the key's state by an [`InOrder`] step (rolling features, volume and tick bars).
//! What a row emits goes out at the time the row arrived with, so the output is the same for any
//! number of workers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use compact_str::CompactString;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::{Capability, Operator};

use crate::base::keys::key_group;
use crate::base::record::{Row, Schema, Value, format_ts};
use crate::base::reject::RejectReason;
use crate::checkpoint::{GroupedState, Role};
use crate::output::dead_letter::DeadLetter;
use crate::steps::BuildCx;
use crate::worker::stash::{Stash, stash_stamp};

/// A step that reads each key's rows in event-time order.
pub trait InOrder: Clone + 'static {
    /// What the step keeps per key (in checkpoints).
    type State: Default + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static;
    /// Whether states can be open ([`InOrder::open`]): the operator then holds a capability.
    const FLUSHES: bool = false;
    /// Applies the key's next row; pushes what it emits.
    fn apply(&self, key: &str, st: &mut Self::State, ts: i64, row: Row, out: &mut Vec<Row>);
    /// Whether `st` holds something [`InOrder::flush`] would emit (an open bar).
    fn open(&self, _st: &Self::State) -> bool {
        false
    }
    /// At the end of a bounded input: what the key's state still holds.
    fn flush(&self, _key: &str, _st: &mut Self::State, _out: &mut Vec<Row>) {}
}

/// Where the key and the time are, and how complete the time is.
#[derive(Debug, Clone)]
pub struct Ordering {
    pub name: String,
    /// The metrics' `kind` of the step.
    pub kind: &'static str,
    pub key: usize,
    pub time: usize,
    /// Rows whose time is below `frontier - lag` are complete.
    pub lag: i64,
    /// Rows made from trades: late when behind the watermark they were read at.
    pub stamped: bool,
    /// The rows' schema (dead letters show them as JSON).
    pub input_schema: Schema,
    /// An integer column that orders rows of one key and time (trades: their arrival); else a
    /// hash of the row's content (the same in every run and for any worker count).
    pub tie: Option<usize>,
}

/// The key column (`key`, else the input's key), the time column (`time`, else the input's
/// event time) and how complete it is: (`key`, `time`, `lag`, `stamped`) as [`Ordering`] takes
/// them. Problems go to `cx`; a column that is wrong is `None`.
pub fn plan_order(
    cx: &mut crate::steps::PlanCx<'_>,
    input: &crate::steps::StreamInfo,
    input_name: &str,
    key_name: Option<&str>,
    time_name: Option<&str>,
) -> (Option<usize>, Option<usize>, i64, bool) {
    use crate::base::diagnostic::suggest;
    use crate::base::record::FieldType;
    let schema = &input.schema;
    let key = match key_name {
        Some(k) => match schema.field(k) {
            Some(f) if f.ty == FieldType::Utf8 => schema.index_of(k),
            Some(f) => {
                cx.error(
                    "key",
                    format!("the key must be a string column; `{k}` is {}", f.ty.name()),
                );
                None
            }
            None => {
                cx.error(
                    "key",
                    format!("unknown column `{k}`{}", suggest(k, schema.names())),
                );
                None
            }
        },
        None => match input.key {
            Some(k) => Some(k),
            None => {
                cx.error(
                    "key",
                    format!("`{}` has no key column: name one with `key:`", input_name),
                );
                None
            }
        },
    };
    let (time, lag, stamped) = if input.complete.is_empty() {
        match (input.time, time_name) {
            (Some(t), Some(name)) if schema.fields[t].name != name => {
                cx.error("time", format!(
                    "the rows of `{}` are in the order of `{}`, their event time (remove `time:`)",
                    input_name, schema.fields[t].name
                ));
                (None, 0, true)
            }
            (Some(t), _) => (Some(t), 0, true),
            (None, _) => {
                cx.error(
                    "input",
                    format!("`{}` has no event-time column to order by", input_name),
                );
                (None, 0, true)
            }
        }
    } else {
        let chosen = match time_name {
            None => input
                .time
                .filter(|t| input.complete.iter().any(|c| c.column == *t))
                .or(Some(input.complete[0].column)),
            Some(name) => {
                let usable: Vec<&str> = input
                    .complete
                    .iter()
                    .map(|c| schema.fields[c.column].name.as_str())
                    .collect();
                match schema.index_of(name) {
                    Some(i) if input.complete.iter().any(|c| c.column == i) => Some(i),
                    _ => {
                        cx.error(
                            "time",
                            format!(
                                "unknown column `{name}`{}",
                                suggest(name, usable.iter().copied())
                            ),
                        );
                        None
                    }
                }
            }
        };
        // A time window's rows at `frontier - lag` have come too: below `frontier - lag + 1`.
        let lag = chosen
            .and_then(|c| input.complete.iter().find(|x| x.column == c))
            .map_or(0, |c| c.lag - i64::from(c.inclusive));
        (chosen, lag, false)
    };
    (key, time, lag, stamped)
}

/// A row waiting for its turn: (time, key, content hash) → (the time it arrived with, row).
type Pending = BTreeMap<(i64, CompactString, u64), (u64, Row)>;

/// One key group of the operator's checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "S: serde::Serialize + serde::de::DeserializeOwned")]
struct GroupBlob<S> {
    keys: Vec<(CompactString, S)>,
    pending: Vec<((i64, CompactString, u64), (u64, Row))>,
    stash: Vec<(u64, Row)>,
}

impl<S> Default for GroupBlob<S> {
    fn default() -> Self {
        GroupBlob {
            keys: Vec::new(),
            pending: Vec::new(),
            stash: Vec::new(),
        }
    }
}

fn key_of(row: &Row, key: usize) -> &str {
    match &row[key] {
        Value::Str(s) => s.as_str(),
        _ => "",
    }
}

pub(crate) fn content_hash(row: &Row) -> u64 {
    let bytes = bincode::serialize(row).expect("a row serializes");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub fn in_event_time_order<'scope, O: InOrder>(
    stream: StreamVec<'scope, u64, Row>,
    cx: &BuildCx<'_>,
    how: &Ordering,
    step: O,
) -> StreamVec<'scope, u64, Row> {
    let ctx = Arc::clone(cx.ctx);
    let dead = std::rc::Rc::clone(cx.dead);
    let how = how.clone();
    let (key, time) = (how.key, how.time);
    let key_groups = ctx.key_groups as u64;
    let group_of = move |k: &str| key_group(k, key_groups) as u32;
    let exchange =
        crate::worker::batches::exchange(move |r: &Row| key_group(key_of(r, key), key_groups));
    let scope = stream.scope();
    let (worker, peers) = (scope.index(), scope.peers());
    let mut cp = ctx
        .checkpoint
        .as_ref()
        .map(|c| c.participant(Role::Step, cx.index, worker, Some(cx.input_node)));
    let name = how.name.clone();
    let label = format!("{}({name})", how.kind);
    stream.unary_frontier(exchange, &label, move |initial, info| {
        let activator = scope.activator_for(info.address);
        let mut stash: Stash<Row> = Stash::new();
        let mut pending: Pending = BTreeMap::new();
        // Capabilities of the times pending rows arrived with, and how many rows hold each.
        let mut caps: BTreeMap<u64, (Capability<u64>, usize)> = BTreeMap::new();
        let mut keys: HashMap<CompactString, O::State> = HashMap::new();
        // Held while some key's state is open, for what the end of the input flushes.
        let mut hold: Option<Capability<u64>> = None;
        // Rows below this time have been applied.
        let mut applied_upto = i64::MIN;
        let step_stats = ctx.metrics.step(&name, how.kind);
        if let Some(cp) = cp.as_ref() {
            for blob in cp.coordinator().restored_groups(&name, worker, peers) {
                match bincode::deserialize::<GroupBlob<O::State>>(blob) {
                    Ok(g) => {
                        keys.extend(g.keys);
                        for (k, (t, row)) in g.pending {
                            caps.entry(t).or_insert_with(|| (initial.delayed(&t), 0)).1 += 1;
                            pending.insert(k, (t, row));
                        }
                        for (t, row) in g.stash {
                            stash
                                .entry(t)
                                .or_insert_with(|| (initial.delayed(&t), Vec::new()))
                                .1
                                .push(row);
                        }
                    }
                    Err(e) => ctx.fail(format!("step `{name}`: restoring its state: {e}")),
                }
            }
            if O::FLUSHES && keys.values().any(|st| step.open(st)) {
                hold = Some(initial.clone());
            }
        }
        drop(initial);
        move |(input, frontier), output| {
            let mut received = 0;
            input.for_each_stamp(|cap, data| received += stash_stamp(&mut stash, cap, data));
            step_stats.records_in.fetch_add(received as u64, Relaxed);
            let snapshot = || -> Option<GroupedState> {
                let mut groups: BTreeMap<u32, GroupBlob<O::State>> = BTreeMap::new();
                for (k, st) in &keys {
                    groups
                        .entry(group_of(k))
                        .or_default()
                        .keys
                        .push((k.clone(), st.clone()));
                }
                for (k, v) in &pending {
                    groups
                        .entry(group_of(&k.1))
                        .or_default()
                        .pending
                        .push((k.clone(), v.clone()));
                }
                for (t, (_, rows)) in &stash {
                    for r in rows {
                        groups
                            .entry(group_of(key_of(r, key)))
                            .or_default()
                            .stash
                            .push((*t, r.clone()));
                    }
                }
                Some(
                    groups
                        .into_iter()
                        .map(|(g, b)| {
                            (
                                g,
                                bincode::serialize(&b).expect("the step's state serializes"),
                            )
                        })
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
                    // A row without a key or a time has no place in any key's order: a dead
                    // letter, as windows make it (not a key named "").
                    let problem = match (&row[key], &row[time]) {
                        (Value::Str(_), Value::Ts(_)) => None,
                        (Value::Str(_), _) => {
                            Some((RejectReason::InvalidTimestamp, "the time column is NULL"))
                        }
                        _ => Some((RejectReason::MissingField, "the key column is NULL")),
                    };
                    if let Some((reason, detail)) = problem {
                        dead.borrow_mut().push(DeadLetter {
                            source: &name,
                            reason,
                            detail: detail.into(),
                            raw: crate::output::dead_letter::row_json(&how.input_schema, &row),
                            line: 0,
                        });
                        continue;
                    }
                    let Value::Ts(ts) = row[time] else { continue };
                    // Rows made from trades are late when they are behind the watermark they were
                    // read at (rows before it may have gone out); a window's rows never are.
                    let late = if how.stamped {
                        ts < t as i64
                    } else {
                        ts < applied_upto
                    };
                    if late {
                        dead.borrow_mut().push(DeadLetter {
                            source: &name,
                            reason: RejectReason::Late,
                            detail: format!(
                                "its time {} is behind {}, up to which rows were already applied",
                                format_ts(ts),
                                format_ts(if how.stamped { t as i64 } else { applied_upto })
                            ),
                            raw: crate::output::dead_letter::row_json(&how.input_schema, &row),
                            line: 0,
                        });
                        continue;
                    }
                    let k = CompactString::from(key_of(&row, key));
                    let tie = match how.tie.map(|c| &row[c]) {
                        Some(Value::I64(n)) => *n as u64,
                        _ => content_hash(&row),
                    };
                    pending.insert((ts, k, tie), (t, row));
                    held += 1;
                }
                if held > 0 {
                    caps.entry(t).or_insert((cap, 0)).1 += held;
                }
            }
            // Rows below this time can be applied: no earlier row of their key can come.
            let bound = match upper {
                Some(u) => (u as i64).saturating_sub(how.lag),
                None => i64::MAX,
            };
            applied_upto = applied_upto.max(bound);
            let mut out: BTreeMap<u64, Vec<Row>> = BTreeMap::new();
            let mut emitted = Vec::new();
            while let Some(entry) = pending.first_entry() {
                if entry.key().0 >= bound {
                    break;
                }
                let ((ts, k, _), (t, row)) = entry.remove_entry();
                let st = keys.entry(k.clone()).or_default();
                step.apply(&k, st, ts, row, &mut emitted);
                if let Some(c) = caps.get_mut(&t) {
                    c.1 -= 1;
                }
                if !emitted.is_empty() {
                    out.entry(t).or_default().append(&mut emitted);
                }
            }
            // Some key's state stays open: keep a capability for what the end flushes.
            if O::FLUSHES
                && hold.is_none()
                && let Some((_, (cap, _))) = caps.first_key_value()
                && keys.values().any(|st| step.open(st))
            {
                hold = Some(cap.clone());
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
            match upper {
                Some(u) => {
                    if let Some(h) = hold.as_mut()
                        && *h.time() < u
                    {
                        h.downgrade(&u);
                    }
                }
                None => {
                    if let Some(h) = hold.take()
                        && !ctx.stop.load(Relaxed)
                    {
                        let mut rows = Vec::new();
                        let mut flushed: Vec<(&CompactString, &mut O::State)> =
                            keys.iter_mut().collect();
                        flushed.sort_by(|a, b| a.0.cmp(b.0));
                        for (k, st) in flushed {
                            step.flush(k, st, &mut rows);
                        }
                        if !rows.is_empty() {
                            step_stats.records_out.fetch_add(rows.len() as u64, Relaxed);
                            if let Some(cp) = cp.as_ref() {
                                cp.emitted(rows.len());
                            }
                            output.session(&h).give_iterator(rows.into_iter());
                        }
                    }
                    if let Some(cp) = cp.as_mut() {
                        cp.finish();
                    }
                }
            }
        }
    })
}
