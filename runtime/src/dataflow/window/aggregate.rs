//! Aggregate accumulators. Updates are applied in a deterministic order (by arrival sequence), so
//! floating-point results are bit-for-bit the same for any worker count.

use crate::base::record::{Trade, Value};
use crate::dataflow::window::config::AggregateFn;
use crate::plan::{AggregatePlan, TradeField};

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum State {
    Count(i64),
    Sum(f64),
    Min(f64),
    Max(f64),
    /// (event time, arrival seq, value)
    First(i64, u64, f64),
    Last(i64, u64, f64),
    Avg {
        sum: f64,
        n: i64,
    },
    /// Welford's online variance.
    Stddev {
        n: i64,
        mean: f64,
        m2: f64,
    },
    Vwap {
        pv: f64,
        v: f64,
    },
}

/// The accumulators of one window.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Acc {
    states: Vec<State>,
}

#[inline]
fn read(t: &Trade, f: TradeField) -> f64 {
    match f {
        TradeField::Price => t.price,
        TradeField::Volume => t.volume,
    }
}

impl Acc {
    /// An accumulator holding just `t`.
    pub fn new(aggs: &[AggregatePlan], t: &Trade) -> Acc {
        let states = aggs
            .iter()
            .map(|a| {
                let x = read(t, a.field);
                match a.func {
                    AggregateFn::Count => State::Count(1),
                    AggregateFn::Sum => State::Sum(x),
                    AggregateFn::Min => State::Min(x),
                    AggregateFn::Max => State::Max(x),
                    AggregateFn::First => State::First(t.ts, t.seq, x),
                    AggregateFn::Last => State::Last(t.ts, t.seq, x),
                    AggregateFn::Avg => State::Avg { sum: x, n: 1 },
                    AggregateFn::Stddev => State::Stddev {
                        n: 1,
                        mean: x,
                        m2: 0.0,
                    },
                    AggregateFn::Vwap => State::Vwap {
                        pv: t.price * t.volume,
                        v: t.volume,
                    },
                }
            })
            .collect();
        Acc { states }
    }

    #[inline]
    pub fn add(&mut self, aggs: &[AggregatePlan], t: &Trade) {
        for (s, a) in self.states.iter_mut().zip(aggs) {
            let x = read(t, a.field);
            match s {
                State::Count(n) => *n += 1,
                State::Sum(v) => *v += x,
                State::Min(v) => *v = v.min(x),
                State::Max(v) => *v = v.max(x),
                State::First(ts, seq, v) => {
                    if (t.ts, t.seq) < (*ts, *seq) {
                        (*ts, *seq, *v) = (t.ts, t.seq, x);
                    }
                }
                State::Last(ts, seq, v) => {
                    if (t.ts, t.seq) > (*ts, *seq) {
                        (*ts, *seq, *v) = (t.ts, t.seq, x);
                    }
                }
                State::Avg { sum, n } => {
                    *sum += x;
                    *n += 1;
                }
                State::Stddev { n, mean, m2 } => {
                    *n += 1;
                    let d = x - *mean;
                    *mean += d / *n as f64;
                    *m2 += d * (x - *mean);
                }
                State::Vwap { pv, v } => {
                    *pv += t.price * t.volume;
                    *v += t.volume;
                }
            }
        }
    }

    /// Folds `other` (a later-starting session) into `self`.
    pub fn merge(&mut self, other: &Acc) {
        for (s, o) in self.states.iter_mut().zip(&other.states) {
            match (s, o) {
                (State::Count(a), State::Count(b)) => *a += b,
                (State::Sum(a), State::Sum(b)) => *a += b,
                (State::Min(a), State::Min(b)) => *a = a.min(*b),
                (State::Max(a), State::Max(b)) => *a = a.max(*b),
                (State::First(ts, seq, v), State::First(ots, oseq, ov)) => {
                    if (*ots, *oseq) < (*ts, *seq) {
                        (*ts, *seq, *v) = (*ots, *oseq, *ov);
                    }
                }
                (State::Last(ts, seq, v), State::Last(ots, oseq, ov)) => {
                    if (*ots, *oseq) > (*ts, *seq) {
                        (*ts, *seq, *v) = (*ots, *oseq, *ov);
                    }
                }
                (State::Avg { sum, n }, State::Avg { sum: os, n: on }) => {
                    *sum += os;
                    *n += on;
                }
                (
                    State::Stddev { n, mean, m2 },
                    State::Stddev {
                        n: on,
                        mean: om,
                        m2: om2,
                    },
                ) => {
                    let total = *n + on;
                    let d = om - *mean;
                    *m2 += om2 + d * d * (*n as f64) * (*on as f64) / total as f64;
                    *mean += d * *on as f64 / total as f64;
                    *n = total;
                }
                (State::Vwap { pv, v }, State::Vwap { pv: opv, v: ov }) => {
                    *pv += opv;
                    *v += ov;
                }
                _ => unreachable!("accumulators of one window share their layout"),
            }
        }
    }

    /// Appends the output values.
    pub fn emit(&self, out: &mut Vec<Value>) {
        for s in &self.states {
            out.push(match *s {
                State::Count(n) => Value::I64(n),
                State::Sum(v) | State::Min(v) | State::Max(v) => Value::F64(v),
                State::First(_, _, v) | State::Last(_, _, v) => Value::F64(v),
                State::Avg { sum, n } => Value::F64(sum / n as f64),
                State::Stddev { n, m2, .. } if n >= 2 => Value::F64((m2 / (n - 1) as f64).sqrt()),
                State::Stddev { .. } => Value::Null,
                State::Vwap { pv, v } if v > 0.0 => Value::F64(pv / v),
                State::Vwap { .. } => Value::Null,
            });
        }
    }
}
