//! The window state machine, free of timely: trades go in (in arrival order, each with the
//! watermark it was read at), rows come out when windows fire or are revised. The operator in
//! `operator.rs` feeds it; the tests drive it directly.

use std::collections::HashMap;

use compact_str::CompactString;

use super::aggregate::{Acc, AccPool};
use super::input::{WindowRecord, WindowRow};
use crate::base::calendar::{Align, AlignCache};
use crate::base::record::{Row, Value};
use crate::steps::window::config::{AggregateFn, FillMode};
use crate::steps::window::node::{AggregatePlan, FillPlan, WindowKind, WindowNode};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Win {
    start: i64,
    end: i64,
    acc: Acc,
    fired: bool,
    revision: i64,
    dirty: bool,
    /// Over revised rows: the window's rows, each in its latest revision (the accumulators are
    /// recomputed from them when one is replaced).
    #[serde(default)]
    inputs: Vec<WindowRow>,
}

/// Adds `t` to `w`; over revised rows, `t` replaces an earlier revision of the same row (same
/// time) and the accumulators are recomputed. Whether `w` changed.
fn add_or_replace<R: WindowRecord>(
    w: &mut Win,
    aggs: &[AggregatePlan],
    t: &R,
    replace: bool,
) -> bool {
    let Some(r) = t.as_row().filter(|_| replace) else {
        w.acc.add(aggs, t);
        return true;
    };
    match w.inputs.iter().position(|x| x.ts == r.ts) {
        Some(i) if w.inputs[i].revision >= r.revision => return false,
        Some(i) => w.inputs[i] = r.clone(),
        None => w.inputs.push(r.clone()),
    }
    w.inputs.sort_by_key(|x| (x.ts, x.seq));
    let mut acc = Acc::new(aggs, &w.inputs[0]);
    for x in &w.inputs[1..] {
        acc.add(aggs, x);
    }
    w.acc = acc;
    true
}

/// What a window's row holds: key, start, end, the visible aggregates (the carried `last`
/// values of gap filling follow them in the accumulators), `filled`, and `revision`.
#[derive(Debug, Clone, Copy)]
struct Layout {
    n_aggs: usize,
    carried: usize,
    filled: bool,
    revisions: bool,
}

/// A window's output row. `carry` takes the window's carried values (gap filling).
fn make_row(l: &Layout, key: &str, w: &Win, carry: Option<&mut Vec<Option<f64>>>) -> Row {
    let mut row = Vec::with_capacity(3 + l.n_aggs + l.carried + 2);
    row.push(Value::Str(CompactString::from(key)));
    row.push(Value::Ts(w.start));
    row.push(Value::Ts(w.end));
    w.acc.emit(&mut row);
    if l.carried > 0 {
        if let Some(carry) = carry {
            for (c, v) in carry.iter_mut().zip(&row[3 + l.n_aggs..]) {
                if let Value::F64(x) = v {
                    *c = Some(*x);
                }
            }
        }
        row.truncate(3 + l.n_aggs);
    }
    if l.filled {
        row.push(Value::Bool(false));
    }
    if l.revisions {
        row.push(Value::I64(w.revision));
    }
    row
}

/// The row of a window `[start, end)` without records.
fn filled_row(
    l: &Layout,
    aggs: &[AggregatePlan],
    plan: &FillPlan,
    key: &str,
    (start, end): (i64, i64),
    carry: &[Option<f64>],
) -> Row {
    let mut row = Vec::with_capacity(3 + l.n_aggs + 2);
    row.push(Value::Str(CompactString::from(key)));
    row.push(Value::Ts(start));
    row.push(Value::Ts(end));
    for (a, c) in aggs.iter().zip(&plan.carry_of) {
        row.push(match (a.func, plan.mode, c) {
            (AggregateFn::Count, _, _) => Value::I64(0),
            (AggregateFn::Sum, FillMode::Previous, _) => Value::F64(0.0),
            (_, _, Some(c)) => carry[*c].map_or(Value::Null, Value::F64),
            _ => Value::Null,
        });
    }
    row.push(Value::Bool(true));
    if l.revisions {
        row.push(Value::I64(0));
    }
    row
}

/// A key's gap filling: how far its windows have been emitted and what filled rows carry.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Fill {
    /// The end of the key's last emitted window (with records, or filled).
    cursor: i64,
    /// Windows starting at or after this are not filled (`fill_for` after the last records).
    until: i64,
    /// The key's last value of each carried field (`None` before any).
    carry: Vec<Option<f64>>,
}

/// The windows gap filling walks: the epoch's grid, or market time.
enum Grid {
    Epoch(i64),
    Market(std::sync::Arc<Align>),
}

impl Grid {
    /// The first window starting at or after `t` and before `until`.
    fn next(&self, t: i64, until: i64, cache: &mut AlignCache) -> Option<(i64, i64)> {
        match self {
            Grid::Epoch(size) => {
                let s = t.div_euclid(*size) * size;
                let s = if s < t { s + size } else { s };
                (s < until).then_some((s, s + size))
            }
            Grid::Market(a) => a.next_window(t, until, cache),
        }
    }
}

/// Gap filling state: the plan, each key's progress, and the windows they walk.
struct Filling {
    plan: FillPlan,
    grid: Grid,
    cache: AlignCache,
    keys: HashMap<CompactString, Fill, foldhash::fast::RandomState>,
}

/// Emits the filled rows of `key` from its cursor up to the window starting at `before`, for
/// windows ending by `upto`; returns how many.
#[allow(clippy::too_many_arguments)]
fn fill_gap(
    l: &Layout,
    aggs: &[AggregatePlan],
    plan: &FillPlan,
    grid: &Grid,
    cache: &mut AlignCache,
    key: &str,
    f: &mut Fill,
    before: i64,
    upto: i64,
    out: &mut Vec<(i64, Row)>,
) -> u64 {
    let mut n = 0;
    while let Some((s, e)) = grid.next(f.cursor, f.until.min(before), cache) {
        if e > upto {
            break;
        }
        out.push((s, filled_row(l, aggs, plan, key, (s, e), &f.carry)));
        f.cursor = e;
        n += 1;
    }
    n
}

/// Counters since the last [`WindowState::take_stats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WindowStats {
    pub fired: u64,
    pub revisions: u64,
    pub late_accepted: u64,
    /// Records outside every session of a market-time window (left out).
    pub outside: u64,
    /// Rows of windows without records (gap filling).
    pub filled: u64,
}

pub struct WindowState {
    kind: WindowKind,
    allowed: i64,
    aggs: Vec<AggregatePlan>,
    /// Each key's windows, sorted by start (except sessions). A key whose windows have all gone
    /// keeps its entry, empty, until the next firing round: most keys trade again by then, and
    /// dropping and re-making the entry (and its vector) each window was a visible cost at many
    /// keys with few records each.
    keys: HashMap<CompactString, Vec<Win>, foldhash::fast::RandomState>,
    /// Keys with at least one window.
    open_keys: usize,
    /// Accumulator vectors of expired windows, reused by new ones.
    pool: AccPool,
    dirty: Vec<(CompactString, i64)>,
    stats: WindowStats,
    /// No window fires or expires before this time (a lower bound): `fire_until` returns at
    /// once below it instead of visiting every key at every timestamp.
    next_due: i64,
    /// Windows starting before this are never created (partial windows of a live source).
    min_start: i64,
    /// Market time: windows come from sessions or local days instead of the epoch's grid.
    align: Option<(std::sync::Arc<Align>, AlignCache)>,
    layout: Layout,
    fill: Option<Filling>,
    /// The input is revised rows: a row replaces its earlier revision.
    replace: bool,
}

impl WindowState {
    pub fn new(node: &WindowNode) -> WindowState {
        let mut aggs = node.aggregates.clone();
        let fill = node.fill.as_ref().and_then(|plan| {
            aggs.extend(plan.carried.iter().cloned());
            let grid = match (node.kind, &node.align) {
                (_, Some(a)) => Grid::Market(std::sync::Arc::clone(a)),
                (WindowKind::Tumbling { size }, None) => Grid::Epoch(size),
                _ => return None,
            };
            Some(Filling {
                plan: plan.clone(),
                grid,
                cache: AlignCache::default(),
                keys: HashMap::default(),
            })
        });
        WindowState {
            layout: Layout {
                n_aggs: node.aggregates.len(),
                carried: node.fill.as_ref().map_or(0, |p| p.carried.len()),
                filled: fill.is_some(),
                revisions: node.allowed_lateness_ms > 0,
            },
            fill,
            replace: node.rows.as_ref().is_some_and(|r| r.revision.is_some()),
            kind: node.kind,
            allowed: node.allowed_lateness_ms,
            aggs,
            keys: HashMap::default(),
            open_keys: 0,
            pool: AccPool::default(),
            dirty: Vec::new(),
            stats: WindowStats::default(),
            next_due: i64::MAX,
            min_start: i64::MIN,
            align: node.align.clone().map(|a| (a, AlignCache::default())),
        }
    }

    /// Windows that start before `ms` are not kept nor emitted (they would be partial: the
    /// live source started after them).
    pub fn skip_windows_before(&mut self, ms: i64) {
        self.min_start = ms;
    }

    /// Adds a trade. Returns `Some(window_end)` when the trade is too late for every window it
    /// belongs to (the caller dead-letters it), with the latest such window end.
    pub fn add<R: WindowRecord>(&mut self, t: &R) -> Option<i64> {
        if let Some((align, cache)) = self.align.as_mut() {
            let Some(window) = align.window(t.ts(), cache) else {
                self.stats.outside += 1;
                return None;
            };
            return self.add_to(t, &[window]);
        }
        match self.kind {
            WindowKind::Tumbling { size } => self.add_fixed(t, size, size),
            WindowKind::Hopping { size, slide } => self.add_fixed(t, size, slide),
            WindowKind::Session { gap } => self.add_session(t, gap),
        }
    }

    fn add_fixed<R: WindowRecord>(&mut self, t: &R, size: i64, slide: i64) -> Option<i64> {
        let mut windows: smallvec::SmallVec<[(i64, i64); 4]> = smallvec::SmallVec::new();
        let mut start = t.ts().div_euclid(slide) * slide;
        while start > t.ts() - size {
            windows.push((start, start + size));
            start -= slide;
        }
        self.add_to(t, &windows)
    }

    /// Adds `t` to `windows` (latest first), creating them as needed.
    fn add_to<R: WindowRecord>(&mut self, t: &R, windows: &[(i64, i64)]) -> Option<i64> {
        let mut kept = false;
        let mut late_end = None;
        let wins = match self.keys.get_mut(t.key()) {
            Some(w) => w,
            None => self.keys.entry(t.key_owned()).or_default(),
        };
        let was_open = !wins.is_empty();
        for &(start, end) in windows {
            if start < self.min_start {
                break; // and every earlier window too
            }
            let late = end <= t.wm();
            if late && end + self.allowed <= t.wm() {
                late_end = Some(late_end.map_or(end, |e: i64| e.max(end)));
                continue;
            }
            kept = true;
            // NB: fixed windows are kept sorted by start, so finding one is a binary search
            // (hopping windows with many windows per trade would otherwise be quadratic).
            match wins
                .binary_search_by_key(&start, |w| w.start)
                .ok()
                .map(|i| &mut wins[i])
            {
                Some(w) => {
                    if !add_or_replace(w, &self.aggs, t, self.replace) {
                        continue;
                    }
                    if w.fired {
                        self.stats.late_accepted += 1;
                        if !w.dirty {
                            w.dirty = true;
                            self.dirty.push((t.key_owned(), start));
                        }
                    }
                }
                None => {
                    // A window first seen through a late record fires at the next round; if
                    // gap filling emitted it, as its revision 1.
                    self.next_due = self.next_due.min(end);
                    let refilled = self
                        .fill
                        .as_ref()
                        .and_then(|f| f.keys.get(t.key()))
                        .is_some_and(|f| start < f.cursor);
                    let at = wins.partition_point(|w| w.start < start);
                    wins.insert(
                        at,
                        Win {
                            start,
                            end,
                            acc: self.pool.acc(&self.aggs, t),
                            fired: false,
                            revision: i64::from(refilled),
                            dirty: false,
                            inputs: t
                                .as_row()
                                .filter(|_| self.replace)
                                .cloned()
                                .into_iter()
                                .collect(),
                        },
                    );
                    if late {
                        self.stats.late_accepted += 1;
                    }
                }
            }
        }
        if !was_open && !wins.is_empty() {
            self.open_keys += 1;
        }
        if kept { None } else { late_end }
    }

    fn add_session<R: WindowRecord>(&mut self, t: &R, gap: i64) -> Option<i64> {
        let (start, end) = (t.ts(), t.ts() + gap);
        if end <= t.wm() {
            return Some(end);
        }
        let wins = match self.keys.get_mut(t.key()) {
            Some(w) => w,
            None => self.keys.entry(t.key_owned()).or_default(),
        };
        if wins.is_empty() {
            self.open_keys += 1;
        }
        // Open sessions (not fired, not yet closed by the watermark) that touch [start, end].
        let mut touching: Vec<usize> = (0..wins.len())
            .filter(|&i| {
                !wins[i].fired
                    && wins[i].end > t.wm()
                    && wins[i].start <= end
                    && start <= wins[i].end
            })
            .collect();
        self.next_due = self.next_due.min(end);
        match touching.len() {
            0 => wins.push(Win {
                start,
                end,
                acc: self.pool.acc(&self.aggs, t),
                fired: false,
                revision: 0,
                dirty: false,
                inputs: Vec::new(),
            }),
            _ => {
                touching.sort_by_key(|&i| wins[i].start);
                let first = touching[0];
                for &i in &touching[1..] {
                    let (s, e, acc) = (wins[i].start, wins[i].end, wins[i].acc.clone());
                    let w = &mut wins[first];
                    w.start = w.start.min(s);
                    w.end = w.end.max(e);
                    w.acc.merge(&acc);
                }
                let w = &mut wins[first];
                w.start = w.start.min(start);
                w.end = w.end.max(end);
                w.acc.add(&self.aggs, t);
                let mut rest: Vec<usize> = touching[1..].to_vec();
                rest.sort_unstable_by(|a, b| b.cmp(a));
                for i in rest {
                    self.pool.recycle(wins.swap_remove(i).acc);
                }
            }
        }
        None
    }

    /// Fires every window whose end ≤ `upto` (the watermark has passed it) and forgets windows
    /// whose allowed lateness has expired. Rows are appended ordered by (window start, key).
    pub fn fire_until(&mut self, upto: i64, out: &mut Vec<Row>) {
        if upto < self.next_due {
            return;
        }
        let mut fired: Vec<(i64, Row)> = Vec::new();
        let (allowed, layout) = (self.allowed, self.layout);
        let mut next_due = i64::MAX;
        let (mut filled, mut real) = (0, 0);
        let aggs = &self.aggs[..layout.n_aggs];
        let mut fill = self.fill.as_mut();
        let (pool, open_keys) = (&mut self.pool, &mut self.open_keys);
        self.keys.retain(|key, wins| {
            if wins.is_empty() {
                return false; // idle for a whole round
            }
            for w in wins.iter_mut() {
                if !w.fired && w.end <= upto {
                    w.fired = true;
                    w.dirty = false;
                    real += 1;
                    let Some(fl) = fill.as_deref_mut() else {
                        fired.push((w.start, make_row(&layout, key, w, None)));
                        continue_due(w, allowed, upto, &mut next_due);
                        continue;
                    };
                    let f = fl.keys.entry(key.clone()).or_insert_with(|| Fill {
                        cursor: w.start,
                        until: w.start,
                        carry: vec![None; fl.plan.carried.len()],
                    });
                    // The windows between the last one emitted and this one had no records.
                    filled += fill_gap(
                        &layout,
                        aggs,
                        &fl.plan,
                        &fl.grid,
                        &mut fl.cache,
                        key,
                        f,
                        w.start,
                        upto,
                        &mut fired,
                    );
                    // A late window that filling had emitted moves nothing on.
                    let current = w.start >= f.cursor;
                    let row = make_row(&layout, key, w, current.then_some(&mut f.carry));
                    if current {
                        f.cursor = w.end;
                        f.until = w.end.saturating_add(fl.plan.for_ms);
                    }
                    fired.push((w.start, row));
                }
                continue_due(w, allowed, upto, &mut next_due);
            }
            for gone in wins.extract_if(.., |w| w.fired && w.end.saturating_add(allowed) <= upto) {
                pool.recycle(gone.acc);
            }
            if wins.is_empty() {
                *open_keys -= 1;
            }
            true
        });
        if let Some(fl) = fill {
            // Every key filled up to the watermark; a key is forgotten once `fill_for` has passed.
            fl.keys.retain(|key, f| {
                filled += fill_gap(
                    &layout,
                    aggs,
                    &fl.plan,
                    &fl.grid,
                    &mut fl.cache,
                    key,
                    f,
                    i64::MAX,
                    upto,
                    &mut fired,
                );
                match fl.grid.next(f.cursor, f.until, &mut fl.cache) {
                    Some((_, end)) => {
                        next_due = next_due.min(end);
                        true
                    }
                    None => false,
                }
            });
        }
        self.next_due = next_due;
        self.stats.fired += real;
        self.stats.filled += filled;
        in_start_and_key_order(fired, out);
    }

    /// Rows for fired windows that late records changed since the last call (revision + 1).
    /// (Filled rows after a revised window keep the values they carried.)
    pub fn take_revisions(&mut self, out: &mut Vec<Row>) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort();
        let sorted = !matches!(self.kind, WindowKind::Session { .. });
        let layout = self.layout;
        for (key, start) in dirty {
            let Some(wins) = self.keys.get_mut(key.as_str()) else {
                continue;
            };
            let found = if sorted {
                wins.binary_search_by_key(&start, |w| w.start).ok()
            } else {
                wins.iter().position(|w| w.start == start)
            };
            let Some(w) = found.map(|i| &mut wins[i]) else {
                continue;
            };
            if !w.dirty {
                continue;
            }
            w.dirty = false;
            w.revision += 1;
            self.stats.revisions += 1;
            out.push(make_row(&layout, &key, w, None));
        }
    }

    /// Drops every window that has not fired (at a stop, they are incomplete); returns how many.
    pub fn discard_unfired(&mut self) -> u64 {
        let n = self
            .keys
            .values()
            .flat_map(|w| w.iter())
            .filter(|w| !w.fired)
            .count() as u64;
        self.keys.clear();
        self.open_keys = 0;
        self.dirty.clear();
        if let Some(f) = self.fill.as_mut() {
            f.keys.clear();
        }
        n
    }

    /// No window open and no key being filled.
    pub fn is_empty(&self) -> bool {
        self.open_keys == 0 && self.fill.as_ref().is_none_or(|f| f.keys.is_empty())
    }

    /// Each key's gap filling, grouped by key group (for checkpoints).
    pub fn snapshot_fills(
        &self,
        group_of: impl Fn(&str) -> u32,
    ) -> std::collections::BTreeMap<u32, Vec<(CompactString, &Fill)>> {
        let mut out: std::collections::BTreeMap<u32, Vec<(CompactString, &Fill)>> =
            Default::default();
        for (k, f) in self.fill.iter().flat_map(|f| f.keys.iter()) {
            out.entry(group_of(k)).or_default().push((k.clone(), f));
        }
        out
    }

    /// Adds restored gap filling.
    pub fn restore_fills(&mut self, entries: Vec<(CompactString, Fill)>) {
        self.next_due = i64::MIN;
        if let Some(fl) = self.fill.as_mut() {
            fl.keys.extend(entries);
        }
    }

    /// The state of every key, grouped by key group (for checkpoints).
    pub fn snapshot(
        &self,
        group_of: impl Fn(&str) -> u32,
    ) -> std::collections::BTreeMap<u32, Vec<(CompactString, &Vec<Win>)>> {
        let mut out: std::collections::BTreeMap<u32, Vec<(CompactString, &Vec<Win>)>> =
            Default::default();
        for (k, wins) in self.keys.iter().filter(|(_, w)| !w.is_empty()) {
            out.entry(group_of(k)).or_default().push((k.clone(), wins));
        }
        out
    }

    /// Adds restored keys.
    pub fn restore(&mut self, entries: Vec<(CompactString, Vec<Win>)>) {
        self.next_due = i64::MIN;
        let session = matches!(self.kind, WindowKind::Session { .. });
        for (k, mut wins) in entries {
            if !session {
                wins.sort_by_key(|w| w.start);
            }
            let now_open = !wins.is_empty();
            let was_open = self.keys.insert(k, wins).is_some_and(|w| !w.is_empty());
            self.open_keys = self.open_keys + usize::from(now_open) - usize::from(was_open);
        }
    }

    pub fn take_stats(&mut self) -> WindowStats {
        std::mem::take(&mut self.stats)
    }
}

/// Appends `fired`'s rows ordered by (window start, key), as they were for equal ones.
///
/// NB: sorted by the key's first 16 bytes as a number, and by the whole key only where those
/// tie: comparing the strings themselves was a visible share of the run at many keys.
fn in_start_and_key_order(mut fired: Vec<(i64, Row)>, out: &mut Vec<Row>) {
    let prefix = |key: &str| {
        let mut b = [0u8; 16];
        let n = key.len().min(16);
        b[..n].copy_from_slice(&key.as_bytes()[..n]);
        u128::from_be_bytes(b)
    };
    let mut order: Vec<(i64, u128, usize)> = fired
        .iter()
        .enumerate()
        .map(|(i, (start, row))| (*start, prefix(key_of(row)), i))
        .collect();
    order.sort_unstable_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| key_of(&fired[a.2].1).cmp(key_of(&fired[b.2].1)))
            .then(a.2.cmp(&b.2))
    });
    out.reserve(order.len());
    out.extend(order.iter().map(|&(_, _, i)| std::mem::take(&mut fired[i].1)));
}

/// The key a window's row starts with.
fn key_of(r: &Row) -> &str {
    match r.first() {
        Some(Value::Str(s)) => s.as_str(),
        _ => "",
    }
}

/// Lowers `next_due` to when `w` next needs attention (its end, or the end of its lateness).
#[inline]
fn continue_due(w: &Win, allowed: i64, upto: i64, next_due: &mut i64) {
    let due = if w.fired {
        w.end.saturating_add(allowed)
    } else {
        w.end
    };
    if due > upto {
        *next_due = (*next_due).min(due);
    }
}
