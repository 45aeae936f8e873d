//! The left records an as-of join holds until the right side has passed their time. Records
//! are large (a trade or a row, its key, its times) and come nearly in time order: they stay in
//! slots where they came, and only a small index entry per record is scanned and sorted when
//! the right side moves on (a tree ordered by time moved every record several times).

/// Held records of type `H` (the join holds its arrival time, key and record).
pub(super) struct Waiting<H> {
    /// Payloads; `None`: a free slot.
    slots: Vec<Option<H>>,
    free: Vec<u32>,
    /// (event time, arrival order, slot) of every held record.
    index: Vec<(i64, u64, u32)>,
    /// The earliest event time held (`i64::MAX`: none).
    from: i64,
}

impl<H> Waiting<H> {
    pub fn new() -> Self {
        Waiting {
            slots: Vec::new(),
            free: Vec::new(),
            index: Vec::new(),
            from: i64::MAX,
        }
    }

    pub fn push(&mut self, ts: i64, n: u64, held: H) {
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
    pub fn iter(&self) -> impl Iterator<Item = (i64, &H)> {
        self.index
            .iter()
            .map(|&(ts, _, s)| (ts, self.slots[s as usize].as_ref().expect("an indexed slot is full")))
    }

    /// Takes the records whose time is below `bound`, in time (then arrival) order.
    pub fn take_below(&mut self, bound: i64) -> Vec<(i64, H)> {
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

    #[test]
    fn records_come_out_in_time_then_arrival_order_and_slots_are_reused() {
        let mut w = Waiting::new();
        for (n, ts) in [30, 10, 20, 10, 40].into_iter().enumerate() {
            w.push(ts, n as u64, format!("r{n}"));
        }
        assert_eq!(w.from(), 10);
        assert!(w.take_below(10).is_empty());
        let got = |v: Vec<(i64, String)>| v.into_iter().map(|(t, s)| format!("{t}:{s}")).collect::<Vec<_>>();
        assert_eq!(got(w.take_below(25)), ["10:r1", "10:r3", "20:r2"]);
        assert_eq!((w.len(), w.from()), (2, 30));
        w.push(5, 9, "r9".to_string());
        assert_eq!(w.slots.len(), 5, "a free slot is reused");
        assert_eq!(w.from(), 5);
        assert_eq!(w.iter().count(), 3);
        assert_eq!(got(w.take_below(i64::MAX)), ["5:r9", "30:r0", "40:r4"]);
        assert!(w.is_empty() && w.from() == i64::MAX);
    }
}
