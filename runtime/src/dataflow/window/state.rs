//! The window state machine, free of timely: trades go in (in arrival order, each with the
//! watermark it was read at), rows come out when windows fire or are revised. The operator in
//! `operator.rs` feeds it; the tests drive it directly.

use std::collections::HashMap;

use compact_str::CompactString;

use super::aggregate::Acc;
use super::input::WindowRecord;
use crate::base::record::{Row, Value};
use crate::base::calendar::{Align, AlignCache};
use crate::plan::{AggregatePlan, WindowKind, WindowNode};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Win {
    start: i64,
    end: i64,
    acc: Acc,
    fired: bool,
    revision: i64,
    dirty: bool,
}

/// A window's output row: key, start, end, the aggregates, and the revision when revisable.
fn make_row(n_aggs: usize, revisions: bool, key: &str, w: &Win) -> Row {
    let mut row = Vec::with_capacity(3 + n_aggs + 1);
    row.push(Value::Str(CompactString::from(key)));
    row.push(Value::Ts(w.start));
    row.push(Value::Ts(w.end));
    w.acc.emit(&mut row);
    if revisions {
        row.push(Value::I64(w.revision));
    }
    row
}

/// Counters since the last [`WindowState::take_stats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WindowStats {
    pub fired: u64,
    pub revisions: u64,
    pub late_accepted: u64,
    /// Records outside every session of a market-time window (left out).
    pub outside: u64,
}

pub struct WindowState {
    kind: WindowKind,
    allowed: i64,
    aggs: Vec<AggregatePlan>,
    revisions: bool,
    keys: HashMap<CompactString, Vec<Win>, foldhash::fast::RandomState>,
    dirty: Vec<(CompactString, i64)>,
    stats: WindowStats,
    /// No window fires or expires before this time (a lower bound): `fire_until` returns at
    /// once below it instead of visiting every key at every timestamp.
    next_due: i64,
    /// Windows starting before this are never created (partial windows of a live source).
    min_start: i64,
    /// Market time: windows come from sessions or local days instead of the epoch's grid.
    align: Option<(std::sync::Arc<Align>, AlignCache)>,
}

impl WindowState {
    pub fn new(node: &WindowNode) -> WindowState {
        WindowState {
            kind: node.kind,
            allowed: node.allowed_lateness_ms,
            aggs: node.aggregates.clone(),
            revisions: node.allowed_lateness_ms > 0,
            keys: HashMap::default(),
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
                    w.acc.add(&self.aggs, t);
                    if w.fired {
                        self.stats.late_accepted += 1;
                        if !w.dirty {
                            w.dirty = true;
                            self.dirty.push((t.key_owned(), start));
                        }
                    }
                }
                None => {
                    // A window first seen through a late record fires at the next round.
                    self.next_due = self.next_due.min(end);
                    let at = wins.partition_point(|w| w.start < start);
                    wins.insert(
                        at,
                        Win {
                            start,
                            end,
                            acc: Acc::new(&self.aggs, t),
                            fired: false,
                            revision: 0,
                            dirty: false,
                        },
                    );
                    if late {
                        self.stats.late_accepted += 1;
                    }
                }
            }
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
                acc: Acc::new(&self.aggs, t),
                fired: false,
                revision: 0,
                dirty: false,
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
                    wins.swap_remove(i);
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
        let (allowed, n_aggs, revisions) = (self.allowed, self.aggs.len(), self.revisions);
        let mut next_due = i64::MAX;
        self.keys.retain(|key, wins| {
            for w in wins.iter_mut() {
                if !w.fired && w.end <= upto {
                    w.fired = true;
                    w.dirty = false;
                    fired.push((w.start, make_row(n_aggs, revisions, key, w)));
                }
                let due = if w.fired {
                    w.end.saturating_add(allowed)
                } else {
                    w.end
                };
                if due > upto {
                    next_due = next_due.min(due);
                }
            }
            wins.retain(|w| !(w.fired && w.end.saturating_add(allowed) <= upto));
            !wins.is_empty()
        });
        self.next_due = next_due;
        self.stats.fired += fired.len() as u64;
        // Rows start with the key: (start, key) order.
        let key_of = |r: &Row| match r.first() {
            Some(Value::Str(s)) => s.as_str().to_owned(),
            _ => String::new(),
        };
        fired.sort_by_cached_key(|(start, row)| (*start, key_of(row)));
        out.extend(fired.into_iter().map(|(_, r)| r));
    }

    /// Rows for fired windows that late records changed since the last call (revision + 1).
    pub fn take_revisions(&mut self, out: &mut Vec<Row>) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort();
        let sorted = !matches!(self.kind, WindowKind::Session { .. });
        let (n_aggs, revisions) = (self.aggs.len(), self.revisions);
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
            out.push(make_row(n_aggs, revisions, &key, w));
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
        self.dirty.clear();
        n
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The state of every key, grouped by key group (for checkpoints).
    pub fn snapshot(
        &self,
        group_of: impl Fn(&str) -> u32,
    ) -> std::collections::BTreeMap<u32, Vec<(CompactString, &Vec<Win>)>> {
        let mut out: std::collections::BTreeMap<u32, Vec<(CompactString, &Vec<Win>)>> =
            Default::default();
        for (k, wins) in &self.keys {
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
            self.keys.insert(k, wins);
        }
    }

    pub fn take_stats(&mut self) -> WindowStats {
        std::mem::take(&mut self.stats)
    }
}
