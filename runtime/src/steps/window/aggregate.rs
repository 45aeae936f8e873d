//! Aggregate accumulators. Updates are applied in a deterministic order (by arrival sequence), so
//! floating-point results are bit-for-bit the same for any worker count. A NULL value (of a row
//! window) is skipped, as in SQL: an aggregate that saw only NULLs is NULL.

use super::input::WindowRecord;
use crate::base::record::Value;
use crate::steps::window::config::AggregateFn;
use crate::steps::window::node::AggregatePlan;

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
    /// No value yet (only NULLs so far).
    Empty,
}

/// The accumulators of one window.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Acc {
    states: Vec<State>,
}

/// `price · volume` and `volume` of `t` for `vwap`: a trade's, or the named columns of a row
/// (nothing when either is NULL).
#[inline]
fn vwap_parts<R: WindowRecord>(a: &AggregatePlan, t: &R) -> (f64, f64) {
    match a.weight {
        None => t.notional(),
        Some(w) => match (t.value(a.field), t.value(w)) {
            (Some(p), Some(v)) => (p * v, v),
            _ => (0.0, 0.0),
        },
    }
}

/// The state of `a` holding just `t`.
#[inline]
fn start<R: WindowRecord>(a: &AggregatePlan, t: &R) -> State {
    if a.func == AggregateFn::Vwap {
        let (pv, v) = vwap_parts(a, t);
        return State::Vwap { pv, v };
    }
    if a.func == AggregateFn::Count {
        return State::Count(1);
    }
    let Some(x) = t.value(a.field) else {
        return State::Empty;
    };
    match a.func {
        AggregateFn::Sum => State::Sum(x),
        AggregateFn::Min => State::Min(x),
        AggregateFn::Max => State::Max(x),
        AggregateFn::First => State::First(t.ts(), t.seq(), x),
        AggregateFn::Last => State::Last(t.ts(), t.seq(), x),
        AggregateFn::Avg => State::Avg { sum: x, n: 1 },
        AggregateFn::Stddev => State::Stddev {
            n: 1,
            mean: x,
            m2: 0.0,
        },
        AggregateFn::Count | AggregateFn::Vwap => unreachable!("handled above"),
    }
}

/// The state vectors of windows that are gone, for new windows to reuse: at many keys with few
/// records each, allocating and freeing one per window was a visible share of the run.
#[derive(Debug, Default)]
pub struct AccPool(Vec<Vec<State>>);

impl AccPool {
    /// Vectors kept at most (beyond this, freed as usual).
    const MAX: usize = 1 << 16;

    /// An accumulator holding just `t`, in a reused vector when there is one.
    #[inline]
    pub fn acc<R: WindowRecord>(&mut self, aggs: &[AggregatePlan], t: &R) -> Acc {
        let mut states = self.0.pop().unwrap_or_default();
        states.extend(aggs.iter().map(|a| start(a, t)));
        Acc { states }
    }

    /// Keeps `acc`'s vector for a later window.
    #[inline]
    pub fn recycle(&mut self, acc: Acc) {
        if self.0.len() < Self::MAX {
            let mut states = acc.states;
            states.clear();
            self.0.push(states);
        }
    }
}

impl Acc {
    /// An accumulator holding just `t`.
    pub fn new<R: WindowRecord>(aggs: &[AggregatePlan], t: &R) -> Acc {
        Acc {
            states: aggs.iter().map(|a| start(a, t)).collect(),
        }
    }

    #[inline]
    pub fn add<R: WindowRecord>(&mut self, aggs: &[AggregatePlan], t: &R) {
        for (s, a) in self.states.iter_mut().zip(aggs) {
            match s {
                State::Count(n) => {
                    *n += 1;
                    continue;
                }
                State::Vwap { pv, v } => {
                    let (p, w) = vwap_parts(a, t);
                    *pv += p;
                    *v += w;
                    continue;
                }
                State::Empty => {
                    *s = start(a, t);
                    continue;
                }
                _ => {}
            }
            let Some(x) = t.value(a.field) else {
                continue;
            };
            match s {
                State::Sum(v) => *v += x,
                State::Min(v) => *v = v.min(x),
                State::Max(v) => *v = v.max(x),
                State::First(ts, seq, v) => {
                    if (t.ts(), t.seq()) < (*ts, *seq) {
                        (*ts, *seq, *v) = (t.ts(), t.seq(), x);
                    }
                }
                State::Last(ts, seq, v) => {
                    if (t.ts(), t.seq()) > (*ts, *seq) {
                        (*ts, *seq, *v) = (t.ts(), t.seq(), x);
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
                State::Count(_) | State::Vwap { .. } | State::Empty => {
                    unreachable!("handled above")
                }
            }
        }
    }

    /// Folds `other` (a later-starting session) into `self`.
    pub fn merge(&mut self, other: &Acc) {
        for (s, o) in self.states.iter_mut().zip(&other.states) {
            match (&mut *s, o) {
                (_, State::Empty) => {}
                (State::Empty, o) => *s = *o,
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
                State::Empty => Value::Null,
            });
        }
    }
}
