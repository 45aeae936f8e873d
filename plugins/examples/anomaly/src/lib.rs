//! EWMA z-score anomaly detector on each symbol's bar volume and return.
//!
//! For every bar: `z = (x - mean) / sqrt(var)` against exponentially weighted mean and variance
//! of the symbol's previous bars (`alpha` is the weight of the newest bar), then the bar updates
//! them. Outputs `volume_z`, `return_z` (NaN during the first `warmup` bars of a symbol) and
//! `anomaly` (1 when `|z| > threshold` for either, else 0).
//!
//! Config: `{"alpha": 0.1, "threshold": 3.0, "warmup": 5}`.

use std::collections::BTreeMap;

use tickflow_plugin::{Batch, Column, ColumnType, Field, Info, Model, config, export};

/// An exponentially weighted mean and variance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    pub mean: f64,
    pub var: f64,
    pub n: u64,
}

impl Ewma {
    pub const fn new() -> Ewma {
        Ewma {
            mean: 0.0,
            var: 0.0,
            n: 0,
        }
    }

    /// The z-score of `x` against the state so far (NaN before `warmup` values or with no
    /// spread), then takes `x` in.
    pub fn score_then_update(&mut self, x: f64, alpha: f64, warmup: u64) -> f64 {
        if !x.is_finite() {
            return f64::NAN;
        }
        let z = if self.n >= warmup && self.var > 0.0 {
            (x - self.mean) / self.var.sqrt()
        } else {
            f64::NAN
        };
        if self.n == 0 {
            self.mean = x;
        } else {
            // West's incremental EW variance.
            let diff = x - self.mean;
            let incr = alpha * diff;
            self.mean += incr;
            self.var = (1.0 - alpha) * (self.var + diff * incr);
        }
        self.n += 1;
        z
    }
}

impl Default for Ewma {
    fn default() -> Self {
        Ewma::new()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Symbol {
    volume: Ewma,
    ret: Ewma,
    last_close: f64,
}

pub struct Anomaly {
    alpha: f64,
    threshold: f64,
    warmup: u64,
    symbols: BTreeMap<String, Symbol>,
}

impl Model for Anomaly {
    fn info() -> Info {
        Info {
            name: "anomaly".into(),
            version: "0.1.0".into(),
            inputs: vec![
                Field::new("key", ColumnType::Text),
                Field::new("close", ColumnType::Float64),
                Field::new("volume", ColumnType::Float64),
            ],
            outputs: vec![
                Field::new("volume_z", ColumnType::Float64),
                Field::new("return_z", ColumnType::Float64),
                Field::new("anomaly", ColumnType::Int64),
            ],
        }
    }

    fn init(cfg: &str) -> Result<Self, String> {
        let alpha = config::number(cfg, "alpha", 0.1)?;
        let threshold = config::number(cfg, "threshold", 3.0)?;
        let warmup = config::number(cfg, "warmup", 5.0)?;
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(format!("config `alpha` must be in (0, 1), got {alpha}"));
        }
        if !(threshold > 0.0) || !(warmup >= 1.0) {
            return Err("config `threshold` must be positive and `warmup` at least 1".into());
        }
        Ok(Anomaly {
            alpha,
            threshold,
            warmup: warmup as u64,
            symbols: BTreeMap::new(),
        })
    }

    fn process(&mut self, batch: &Batch) -> Result<Vec<Column>, String> {
        let (keys, close, volume) = (
            batch.text("key")?,
            batch.f64("close")?,
            batch.f64("volume")?,
        );
        let n = keys.len();
        let (mut vz, mut rz, mut flag) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for ((key, &c), &v) in keys.iter().zip(close).zip(volume) {
            let s = self.symbols.entry(key.clone()).or_insert_with(|| Symbol {
                last_close: f64::NAN,
                ..Symbol::default()
            });
            let z_volume = s.volume.score_then_update(v, self.alpha, self.warmup);
            let z_return = s
                .ret
                .score_then_update(c / s.last_close - 1.0, self.alpha, self.warmup);
            s.last_close = c;
            let hit = [z_volume, z_return]
                .iter()
                .any(|z| z.is_finite() && z.abs() > self.threshold);
            vz.push(z_volume);
            rz.push(z_return);
            flag.push(hit as i64);
        }
        Ok(vec![
            Column::Float64(vz),
            Column::Float64(rz),
            Column::Int64(flag),
        ])
    }

    fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        self.symbols
            .iter()
            .map(|(k, s)| {
                let mut b = Vec::with_capacity(56);
                for x in [
                    s.volume.mean,
                    s.volume.var,
                    s.ret.mean,
                    s.ret.var,
                    s.last_close,
                ] {
                    b.extend_from_slice(&x.to_le_bytes());
                }
                b.extend_from_slice(&s.volume.n.to_le_bytes());
                b.extend_from_slice(&s.ret.n.to_le_bytes());
                (k.clone(), b)
            })
            .collect()
    }

    fn restore(&mut self, states: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        for (k, b) in states {
            if b.len() != 56 {
                return Err(format!(
                    "key `{k}`: state of {} bytes, expected 56",
                    b.len()
                ));
            }
            let f = |i: usize| f64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8"));
            let u = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8"));
            self.symbols.insert(
                k,
                Symbol {
                    volume: Ewma {
                        mean: f(0),
                        var: f(1),
                        n: u(5),
                    },
                    ret: Ewma {
                        mean: f(2),
                        var: f(3),
                        n: u(6),
                    },
                    last_close: f(4),
                },
            );
        }
        Ok(())
    }
}

export!(Anomaly);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_matches_a_direct_computation() {
        // Oracle: weights (1-a)^k over the history, normalised like West's recursion.
        let xs = [3.0, 5.0, 4.0, 8.0, 6.0, 7.0];
        let a = 0.3;
        let mut e = Ewma::new();
        for x in xs {
            e.score_then_update(x, a, 1);
        }
        let mut mean = xs[0];
        let mut var = 0.0;
        for &x in &xs[1..] {
            let new_mean = mean + a * (x - mean);
            var = (1.0 - a) * (var + a * (x - mean) * (x - mean));
            mean = new_mean;
        }
        assert!((e.mean - mean).abs() < 1e-12 && (e.var - var).abs() < 1e-12);
    }

    #[test]
    fn a_volume_spike_is_flagged_once_warm() {
        let mut m = Anomaly::init("{\"alpha\": 0.2, \"threshold\": 3, \"warmup\": 5}").unwrap();
        let mut flags = Vec::new();
        for i in 0..30 {
            let volume = if i == 25 {
                1000.0
            } else {
                100.0 + (i % 3) as f64
            };
            let b = Batch {
                names: vec!["key".into(), "close".into(), "volume".into()],
                columns: vec![
                    Column::Text(vec!["A".into()]),
                    Column::Float64(vec![10.0 + (i % 2) as f64 * 0.01]),
                    Column::Float64(vec![volume]),
                ],
            };
            let out = m.process(&b).unwrap();
            let Column::Int64(f) = &out[2] else { panic!() };
            flags.push(f[0]);
        }
        assert_eq!(flags.iter().sum::<i64>(), 1, "{flags:?}");
        assert_eq!(flags[25], 1);
    }

    #[test]
    fn state_round_trips() {
        let mut m = Anomaly::init("{}").unwrap();
        let b = |v: f64| Batch {
            names: vec!["key".into(), "close".into(), "volume".into()],
            columns: vec![
                Column::Text(vec!["A".into()]),
                Column::Float64(vec![v]),
                Column::Float64(vec![v * 10.0]),
            ],
        };
        for v in [1.0, 2.0, 1.5, 1.7, 1.2, 1.9] {
            m.process(&b(v)).unwrap();
        }
        let mut r = Anomaly::init("{}").unwrap();
        r.restore(m.snapshot()).unwrap();
        assert_eq!(
            format!("{:?}", m.process(&b(5.0)).unwrap()),
            format!("{:?}", r.process(&b(5.0)).unwrap())
        );
    }
}
