//! Rolling features of one key, free of timely: rows go in in event-time order, feature values
//! come out. The operator feeds it; the tests drive it directly.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::config::RollingFn;
use crate::base::record::Value;

/// The frame of the frame functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// The current row and the `n - 1` before it.
    Rows(usize),
    /// Rows with `time > current - d`.
    Range(i64),
    /// No frame function is used.
    None,
}

/// One planned feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub func: RollingFn,
    /// The value slot it reads (`None`: `count` of rows).
    pub slot: Option<usize>,
    /// `ema`: alpha; `rsi`: period; `lag`: offset.
    pub param: f64,
}

/// Everything the features of a step need to remember of one key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyState {
    /// The latest rows' times and values (as many as the frame and the lags need).
    history: VecDeque<(i64, Vec<Option<f64>>)>,
    /// Rows seen.
    seen: u64,
    /// Per feature: `ema`'s value, `rsi`'s state.
    ema: Vec<Option<f64>>,
    rsi: Vec<Rsi>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Rsi {
    prev: Option<f64>,
    changes: u32,
    gain: f64,
    loss: f64,
}

/// The features of one step.
#[derive(Debug, Clone)]
pub struct Features {
    pub frame: Frame,
    pub features: Vec<Feature>,
    /// How many past rows `history` keeps for `rows:` frames and lags.
    keep: usize,
}

impl Features {
    pub fn new(frame: Frame, features: Vec<Feature>) -> Features {
        let lag = features
            .iter()
            .filter(|f| f.func == RollingFn::Lag)
            .map(|f| f.param as usize + 1)
            .max()
            .unwrap_or(1);
        let keep = match frame {
            Frame::Rows(n) => n.max(lag),
            Frame::Range(_) | Frame::None => lag,
        };
        Features {
            frame,
            features,
            keep,
        }
    }

    /// Whether the key's frame is not full yet (`warmup: skip` leaves such rows out).
    pub fn warming(&self, st: &KeyState) -> bool {
        matches!(self.frame, Frame::Rows(n) if (st.seen as usize) < n)
    }

    /// Adds a row (`values` by slot) and returns its features, in order.
    pub fn apply(&self, st: &mut KeyState, time: i64, values: Vec<Option<f64>>) -> Vec<Value> {
        if st.ema.len() < self.features.len() {
            st.ema.resize(self.features.len(), None);
            st.rsi.resize(self.features.len(), Rsi::default());
        }
        st.history.push_back((time, values));
        st.seen += 1;
        // The frame: the newest rows of `history`.
        let frame_len = match self.frame {
            Frame::Rows(n) => n.min(st.history.len()),
            Frame::Range(d) => st
                .history
                .iter()
                .rev()
                .take_while(|(t, _)| *t > time - d)
                .count(),
            Frame::None => 1,
        };
        let len = st.history.len();
        let mut out = Vec::with_capacity(self.features.len());
        for (i, f) in self.features.iter().enumerate() {
            let frame = st.history.range(len - frame_len..);
            let x = |row: &(i64, Vec<Option<f64>>)| f.slot.and_then(|s| row.1[s]);
            let current = x(&st.history[len - 1]);
            out.push(match f.func {
                RollingFn::Count if f.slot.is_none() => Value::I64(frame_len as i64),
                RollingFn::Count => Value::I64(frame.filter_map(x).count() as i64),
                RollingFn::Sum => fold(frame.filter_map(x), |a, b| a + b),
                RollingFn::Min => fold(frame.filter_map(x), f64::min),
                RollingFn::Max => fold(frame.filter_map(x), f64::max),
                RollingFn::Avg => {
                    let (n, sum) = frame.filter_map(x).fold((0u64, 0.0), |(n, s), v| (n + 1, s + v));
                    if n == 0 { Value::Null } else { Value::F64(sum / n as f64) }
                }
                RollingFn::Stddev => {
                    let v: Vec<f64> = frame.filter_map(x).collect();
                    if v.len() < 2 {
                        Value::Null
                    } else {
                        let mean = v.iter().sum::<f64>() / v.len() as f64;
                        let ss: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
                        Value::F64((ss / (v.len() - 1) as f64).sqrt())
                    }
                }
                RollingFn::First => opt(x(&st.history[len - frame_len])),
                RollingFn::Lag => {
                    let back = f.param as usize;
                    if back < len { opt(x(&st.history[len - 1 - back])) } else { Value::Null }
                }
                RollingFn::Ema => {
                    let e = &mut st.ema[i];
                    if let Some(v) = current {
                        *e = Some(match *e {
                            None => v,
                            Some(prev) => f.param * v + (1.0 - f.param) * prev,
                        });
                    }
                    opt(*e)
                }
                RollingFn::Rsi => rsi(&mut st.rsi[i], current, f.param),
            });
        }
        // Keep what the next rows need.
        let keep = match self.frame {
            Frame::Range(d) => {
                let in_range = st.history.iter().rev().take_while(|(t, _)| *t > time - d).count();
                in_range.max(self.keep)
            }
            _ => self.keep,
        };
        while st.history.len() > keep {
            st.history.pop_front();
        }
        out
    }
}

fn fold(mut values: impl Iterator<Item = f64>, f: impl Fn(f64, f64) -> f64) -> Value {
    match values.next() {
        None => Value::Null,
        Some(first) => Value::F64(values.fold(first, f)),
    }
}

fn opt(v: Option<f64>) -> Value {
    v.map_or(Value::Null, Value::F64)
}

fn rsi(st: &mut Rsi, current: Option<f64>, period: f64) -> Value {
    let Some(v) = current else {
        return Value::Null;
    };
    if let Some(prev) = st.prev {
        let d = v - prev;
        let (g, l) = (d.max(0.0), (-d).max(0.0));
        st.changes += 1;
        if (st.changes as f64) <= period {
            // The first averages are plain means of the first `period` changes.
            st.gain += g;
            st.loss += l;
            if (st.changes as f64) == period {
                st.gain /= period;
                st.loss /= period;
            }
        } else {
            st.gain = (st.gain * (period - 1.0) + g) / period;
            st.loss = (st.loss * (period - 1.0) + l) / period;
        }
    }
    st.prev = Some(v);
    if (st.changes as f64) < period {
        return Value::Null;
    }
    Value::F64(if st.loss == 0.0 {
        if st.gain == 0.0 { 50.0 } else { 100.0 }
    } else {
        100.0 - 100.0 / (1.0 + st.gain / st.loss)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(frame: Frame, f: Feature, xs: &[Option<f64>]) -> Vec<Value> {
        let fs = Features::new(frame, vec![f]);
        let mut st = KeyState::default();
        xs.iter()
            .enumerate()
            .map(|(i, x)| fs.apply(&mut st, i as i64 * 1000, vec![*x]).remove(0))
            .collect()
    }

    fn feature(func: RollingFn, param: f64) -> Feature {
        Feature { func, slot: Some(0), param }
    }

    #[test]
    fn frame_functions_skip_nulls_like_sql() {
        let xs = [Some(1.0), None, Some(3.0), Some(5.0)];
        assert_eq!(
            run(Frame::Rows(2), feature(RollingFn::Avg, 0.0), &xs),
            vec![Value::F64(1.0), Value::F64(1.0), Value::F64(3.0), Value::F64(4.0)]
        );
        assert_eq!(
            run(Frame::Rows(2), feature(RollingFn::Count, 0.0), &xs),
            vec![Value::I64(1), Value::I64(1), Value::I64(1), Value::I64(2)]
        );
        assert_eq!(
            run(Frame::Range(1500), feature(RollingFn::Sum, 0.0), &[None, None]),
            vec![Value::Null, Value::Null]
        );
    }

    #[test]
    fn rsi_is_wilders() {
        // Changes +1, -1, +2 with period 2: first averages gain 0.5, loss 0.5 → 50; then gain
        // (0.5 + 2) / 2 = 1.25, loss 0.25 → 100 - 100 / 6.
        let xs = [Some(1.0), Some(2.0), Some(1.0), Some(3.0)];
        let got = run(Frame::None, feature(RollingFn::Rsi, 2.0), &xs);
        assert_eq!(got[..2], [Value::Null, Value::Null]);
        assert_eq!(got[2], Value::F64(50.0));
        assert_eq!(got[3], Value::F64(100.0 - 100.0 / 6.0));
    }
}
