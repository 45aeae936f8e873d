//! The left records an as-of join holds until the right side has passed their time. Records
//! are large (a trade or a row, its key, its times) and come nearly in time order: they stay in
//! slots where they came, and only a small index entry per record is scanned and sorted when
//! the right side moves on (a tree ordered by time moved every record several times).

use compact_str::CompactString;

use super::operator::Rec;

/// A held record's payload: the time it arrived at (its capability), its key, the record.
pub(super) type Held = (u64, Option<CompactString>, Rec);

#[derive(Default)]
pub(super) struct Waiting {
    /// Payloads; `None`: a free slot.
    slots: Vec<Option<Held>>,
    free: Vec<u32>,
    /// (event time, arrival order, slot) of every held record.
    index: Vec<(i64, u64, u32)>,
    /// The earliest event time held (`i64::MAX`: none).
    from: i64,
}

impl Waiting {
    pub fn new() -> Self {
        Waiting {
            from: i64::MAX,
            ..Waiting::default()
        }
    }

    pub fn push(&mut self, ts: i64, n: u64, held: Held) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(held);
                s
            }
            None => {
                self.slots.push(Some(held));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.push((ts, n, slot));
        self.from = self.from.min(ts);
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn clear(&mut self) {
        *self = Waiting::new();
    }

    /// The earliest event time held (`i64::MAX` when none is).
    pub fn from(&self) -> i64 {
        self.from
    }

    /// Every held record: (event time, payload).
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Held)> {
        self.index
            .iter()
            .map(|&(ts, _, s)| (ts, self.slots[s as usize].as_ref().expect("an indexed slot is full")))
    }

    /// Takes the records whose time is below `bound`, in time (then arrival) order.
    pub fn take_below(&mut self, bound: i64) -> Vec<(i64, Held)> {
        if self.from >= bound {
            return Vec::new();
        }
        let mut ready: Vec<(i64, u64, u32)> = self.index.extract_if(.., |e| e.0 < bound).collect();
        self.from = self.index.iter().map(|e| e.0).min().unwrap_or(i64::MAX);
        ready.sort_unstable_by_key(|e| (e.0, e.1));
        ready
            .into_iter()
            .map(|(ts, _, s)| {
                self.free.push(s);
                (ts, self.slots[s as usize].take().expect("an indexed slot is full"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::record::Value;

    fn rec(x: i64) -> Held {
        (0, None, Rec::Row(vec![Value::I64(x)]))
    }

    fn values(taken: Vec<(i64, Held)>) -> Vec<(i64, Value)> {
        taken
            .into_iter()
            .map(|(ts, (_, _, r))| match r {
                Rec::Row(mut v) => (ts, v.remove(0)),
                Rec::Trade(_) => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn records_come_out_in_time_then_arrival_order_and_slots_are_reused() {
        let mut w = Waiting::new();
        for (n, ts) in [30, 10, 20, 10, 40].into_iter().enumerate() {
            w.push(ts, n as u64, rec(n as i64));
        }
        assert_eq!(w.from(), 10);
        assert!(w.take_below(10).is_empty());
        assert_eq!(
            values(w.take_below(25)),
            [(10, Value::I64(1)), (10, Value::I64(3)), (20, Value::I64(2))]
        );
        assert_eq!((w.len(), w.from()), (2, 30));
        w.push(5, 9, rec(9));
        assert_eq!(w.slots.len(), 5, "a free slot is reused");
        assert_eq!(w.from(), 5);
        assert_eq!(
            values(w.take_below(i64::MAX)),
            [(5, Value::I64(9)), (30, Value::I64(0)), (40, Value::I64(4))]
        );
        assert!(w.is_empty() && w.from() == i64::MAX);
    }
}
