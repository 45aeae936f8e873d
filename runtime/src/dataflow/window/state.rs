//! The window state machine, free of timely: trades go in (in arrival order, each with the
//! watermark it was read at), rows come out when windows fire or are revised. The operator in
//! `operator.rs` feeds it; the tests drive it directly.

use std::collections::HashMap;

use compact_str::CompactString;

use super::aggregate::Acc;
use crate::plan::{AggregatePlan, WindowKind, WindowNode};
use crate::record::{Row, Trade, Value};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Win {
    start: i64,
    end: i64,
    acc: Acc,
    fired: bool,
    revision: i64,
    dirty: bool,
}

/// Counters since the last [`WindowState::take_stats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WindowStats {
    pub fired: u64,
    pub revisions: u64,
    pub late_accepted: u64,
}

pub struct WindowState {
    kind: WindowKind,
    allowed: i64,
    aggs: Vec<AggregatePlan>,
    revisions: bool,
    keys: HashMap<CompactString, Vec<Win>, foldhash::fast::RandomState>,
    dirty: Vec<(CompactString, i64)>,
    stats: WindowStats,
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
        }
    }

    /// Adds a trade. Returns `Some(window_end)` when the trade is too late for every window it
    /// belongs to (the caller dead-letters it), with the latest such window end.
    pub fn add(&mut self, t: &Trade) -> Option<i64> {
        match self.kind {
            WindowKind::Tumbling { size } => self.add_fixed(t, size, size),
            WindowKind::Hopping { size, slide } => self.add_fixed(t, size, slide),
            WindowKind::Session { gap } => self.add_session(t, gap),
        }
    }

    fn add_fixed(&mut self, t: &Trade, size: i64, slide: i64) -> Option<i64> {
        let mut start = t.ts.div_euclid(slide) * slide;
        let mut kept = false;
        let mut late_end = None;
        let wins = match self.keys.get_mut(t.symbol.as_str()) {
            Some(w) => w,
            None => self.keys.entry(t.symbol.clone()).or_default(),
        };
        while start > t.ts - size {
            let end = start + size;
            let late = end <= t.wm;
            if late && end + self.allowed <= t.wm {
                late_end = Some(late_end.map_or(end, |e: i64| e.max(end)));
                start -= slide;
                continue;
            }
            kept = true;
            match wins.iter_mut().find(|w| w.start == start) {
                Some(w) => {
                    w.acc.add(&self.aggs, t);
                    if w.fired {
                        self.stats.late_accepted += 1;
                        if !w.dirty {
                            w.dirty = true;
                            self.dirty.push((t.symbol.clone(), start));
                        }
                    }
                }
                None => {
                    // A window first seen through a late record fires at the next round.
                    wins.push(Win {
                        start,
                        end,
                        acc: Acc::new(&self.aggs, t),
                        fired: false,
                        revision: 0,
                        dirty: false,
                    });
                    if late {
                        self.stats.late_accepted += 1;
                    }
                }
            }
            start -= slide;
        }
        if kept { None } else { late_end }
    }

    fn add_session(&mut self, t: &Trade, gap: i64) -> Option<i64> {
        let (start, end) = (t.ts, t.ts + gap);
        if end <= t.wm {
            return Some(end);
        }
        let wins = match self.keys.get_mut(t.symbol.as_str()) {
            Some(w) => w,
            None => self.keys.entry(t.symbol.clone()).or_default(),
        };
        // Open sessions (not fired, not yet closed by the watermark) that touch [start, end].
        let mut touching: Vec<usize> = (0..wins.len())
            .filter(|&i| {
                !wins[i].fired && wins[i].end > t.wm && wins[i].start <= end && start <= wins[i].end
            })
            .collect();
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

    fn row(&self, key: &str, w: &Win) -> Row {
        let mut row = Vec::with_capacity(3 + self.aggs.len() + 1);
        row.push(Value::Str(CompactString::from(key)));
        row.push(Value::Ts(w.start));
        row.push(Value::Ts(w.end));
        w.acc.emit(&mut row);
        if self.revisions {
            row.push(Value::I64(w.revision));
        }
        row
    }

    /// Fires every window whose end ≤ `upto` (the watermark has passed it) and forgets windows
    /// whose allowed lateness has expired. Rows are appended ordered by (window start, key).
    pub fn fire_until(&mut self, upto: i64, out: &mut Vec<Row>) {
        let mut fired: Vec<(i64, CompactString, Row)> = Vec::new();
        let allowed = self.allowed;
        let mut emptied = Vec::new();
        for (key, wins) in self.keys.iter_mut() {
            for w in wins.iter_mut() {
                if !w.fired && w.end <= upto {
                    w.fired = true;
                    w.dirty = false;
                    fired.push((w.start, key.clone(), Vec::new()));
                }
            }
            let _ = &wins;
            if wins
                .iter()
                .all(|w| w.fired && w.end.saturating_add(allowed) <= upto)
            {
                emptied.push(key.clone());
            }
        }
        for (start, key, row) in fired.iter_mut() {
            let w = self.keys[key.as_str()]
                .iter()
                .find(|w| w.start == *start)
                .expect("just fired");
            *row = self.row(key, w);
        }
        for key in emptied {
            self.keys.remove(key.as_str());
        }
        for wins in self.keys.values_mut() {
            wins.retain(|w| !(w.fired && w.end.saturating_add(allowed) <= upto));
        }
        self.stats.fired += fired.len() as u64;
        fired.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        out.extend(fired.into_iter().map(|(_, _, r)| r));
    }

    /// Rows for fired windows that late records changed since the last call (revision + 1).
    pub fn take_revisions(&mut self, out: &mut Vec<Row>) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort();
        for (key, start) in dirty {
            let Some(wins) = self.keys.get_mut(key.as_str()) else {
                continue;
            };
            let Some(w) = wins.iter_mut().find(|w| w.start == start) else {
                continue;
            };
            if !w.dirty {
                continue;
            }
            w.dirty = false;
            w.revision += 1;
            self.stats.revisions += 1;
            let w = &self.keys[key.as_str()]
                .iter()
                .find(|w| w.start == start)
                .expect("present");
            out.push(self.row(&key, w));
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
        for (k, wins) in entries {
            self.keys.insert(k, wins);
        }
    }

    pub fn take_stats(&mut self) -> WindowStats {
        std::mem::take(&mut self.stats)
    }
}
