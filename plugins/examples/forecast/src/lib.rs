//! Online linear regression (recursive least squares with forgetting) that forecasts the next
//! bar's return of each symbol from its recent bars, and learns as bars arrive.
//!
//! Features of bar t: `[1, r_t, r_{t-1}, (close_t - vwap_t) / vwap_t]` where `r_t` is the return
//! of bar t against the previous close. When bar t arrives the model first learns from the
//! previous bar's features with target `r_t`, then predicts `r_{t+1}`. Outputs: `forecast_return`
//! and `forecast_close` (`close · (1 + forecast_return)`); NaN until a symbol has 2 bars.
//!
//! Config: `{"lambda": 0.98, "delta": 100.0}` (forgetting factor, initial covariance scale).

use tickflow_plugin::{Batch, Column, ColumnType, Field, Info, KeyMap, Model, config, export};

const K: usize = 4;

/// One symbol's regression.
#[derive(Debug, Clone, PartialEq)]
pub struct Rls {
    pub w: [f64; K],
    pub p: [[f64; K]; K],
    pub last_close: f64,
    pub last_return: f64,
    /// Features of the previous bar (NaN: none yet).
    pub pending: [f64; K],
}

impl Rls {
    fn new(delta: f64) -> Rls {
        let mut p = [[0.0; K]; K];
        for (i, row) in p.iter_mut().enumerate() {
            row[i] = delta;
        }
        Rls {
            w: [0.0; K],
            p,
            last_close: f64::NAN,
            last_return: f64::NAN,
            pending: [f64::NAN; K],
        }
    }

    pub fn predict(&self, x: &[f64; K]) -> f64 {
        self.w.iter().zip(x).map(|(w, x)| w * x).sum()
    }

    /// One RLS step towards `y` for features `x`, forgetting factor `lambda`.
    pub fn learn(&mut self, x: &[f64; K], y: f64, lambda: f64) {
        let mut px = [0.0; K];
        for (i, row) in self.p.iter().enumerate() {
            px[i] = row.iter().zip(x).map(|(p, x)| p * x).sum();
        }
        let denom = lambda + x.iter().zip(&px).map(|(x, px)| x * px).sum::<f64>();
        let gain: [f64; K] = px.map(|v| v / denom);
        let err = y - self.predict(x);
        for (w, g) in self.w.iter_mut().zip(&gain) {
            *w += g * err;
        }
        // P = (P - g · xᵀP) / λ   (P is symmetric, so xᵀP = (Px)ᵀ)
        for i in 0..K {
            for j in 0..K {
                self.p[i][j] = (self.p[i][j] - gain[i] * px[j]) / lambda;
            }
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * (K + K * K + 2 + K));
        let values = self
            .w
            .iter()
            .chain(self.p.iter().flatten())
            .chain([&self.last_close, &self.last_return])
            .chain(self.pending.iter());
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Rls, String> {
        let n = K + K * K + 2 + K;
        if bytes.len() != 8 * n {
            return Err(format!(
                "state of {} bytes, expected {}",
                bytes.len(),
                8 * n
            ));
        }
        let v: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let mut r = Rls::new(0.0);
        r.w.copy_from_slice(&v[..K]);
        for i in 0..K {
            r.p[i].copy_from_slice(&v[K + i * K..K + (i + 1) * K]);
        }
        r.last_close = v[K + K * K];
        r.last_return = v[K + K * K + 1];
        r.pending.copy_from_slice(&v[K + K * K + 2..]);
        Ok(r)
    }
}

pub struct Forecast {
    lambda: f64,
    delta: f64,
    symbols: KeyMap<Rls>,
}

impl Model for Forecast {
    fn info() -> Info {
        Info {
            name: "forecast".into(),
            version: "0.1.0".into(),
            inputs: vec![
                Field::new("key", ColumnType::Text),
                Field::new("close", ColumnType::Float64),
                Field::new("vwap", ColumnType::Float64),
            ],
            outputs: vec![
                Field::new("forecast_return", ColumnType::Float64),
                Field::new("forecast_close", ColumnType::Float64),
            ],
        }
    }

    fn init(config: &str) -> Result<Self, String> {
        let lambda = config::number(config, "lambda", 0.98)?;
        let delta = config::number(config, "delta", 100.0)?;
        if !(lambda > 0.0 && lambda <= 1.0) {
            return Err(format!("config `lambda` must be in (0, 1], got {lambda}"));
        }
        if !(delta > 0.0) {
            return Err(format!("config `delta` must be positive, got {delta}"));
        }
        Ok(Forecast {
            lambda,
            delta,
            symbols: KeyMap::default(),
        })
    }

    fn process(&mut self, batch: &Batch) -> Result<Vec<Column>, String> {
        let (keys, close, vwap) = (batch.text("key")?, batch.f64("close")?, batch.f64("vwap")?);
        let mut ret_out = Vec::with_capacity(keys.len());
        let mut close_out = Vec::with_capacity(keys.len());
        for ((key, &c), &v) in keys.iter().zip(close).zip(vwap) {
            let delta = self.delta;
            // Look up before inserting: no key copy per row, only per new symbol.
            if !self.symbols.contains_key(key) {
                self.symbols.insert(key.clone(), Rls::new(delta));
            }
            let s = self.symbols.get_mut(key).expect("inserted above");
            let r = c / s.last_close - 1.0;
            if r.is_finite() && s.pending.iter().all(|x| x.is_finite()) {
                let x = s.pending;
                s.learn(&x, r, self.lambda);
            }
            let gap = if v.is_finite() && v != 0.0 {
                (c - v) / v
            } else {
                0.0
            };
            let x = [1.0, r, s.last_return, gap];
            let prediction = if x.iter().all(|x| x.is_finite()) {
                s.pending = x;
                s.predict(&x)
            } else {
                s.pending = [f64::NAN; K];
                f64::NAN
            };
            s.last_return = r;
            s.last_close = c;
            ret_out.push(prediction);
            close_out.push(c * (1.0 + prediction));
        }
        Ok(vec![Column::Float64(ret_out), Column::Float64(close_out)])
    }

    fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = self
            .symbols
            .iter()
            .map(|(k, s)| (k.clone(), s.to_bytes()))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn restore(&mut self, states: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        for (k, bytes) in states {
            let s = Rls::from_bytes(&bytes).map_err(|e| format!("key `{k}`: {e}"))?;
            self.symbols.insert(k, s);
        }
        Ok(())
    }
}

export!(Forecast);

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(keys: &[&str], close: &[f64], vwap: &[f64]) -> Batch {
        Batch {
            names: vec!["key".into(), "close".into(), "vwap".into()],
            columns: vec![
                Column::Text(keys.iter().map(|k| k.to_string()).collect()),
                Column::Float64(close.to_vec()),
                Column::Float64(vwap.to_vec()),
            ],
        }
    }

    #[test]
    fn rls_recovers_a_linear_relation() {
        // y = 0.5 + 2a - b: exact after enough samples with lambda = 1.
        let mut r = Rls::new(1e6);
        let mut state = 1u64;
        for _ in 0..200 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let a = (state >> 40) as f64 / (1u64 << 24) as f64;
            let b = ((state >> 20) & 0xfffff) as f64 / (1u64 << 20) as f64;
            let x = [1.0, a, b, a * b];
            r.learn(&x, 0.5 + 2.0 * a - b, 1.0);
        }
        for (got, want) in r.w.iter().zip([0.5, 2.0, -1.0, 0.0]) {
            assert!((got - want).abs() < 1e-6, "{:?}", r.w);
        }
    }

    #[test]
    fn forecasts_a_steady_trend_and_keeps_symbols_apart() {
        let mut m = Forecast::init("{\"lambda\": 1.0}").unwrap();
        // A: +1% every bar; B: flat. After learning, A's forecast is ≈ +1%, B's ≈ 0.
        let (mut a, mut out) = (100.0, Vec::new());
        for _ in 0..60 {
            a *= 1.01;
            out = m
                .process(&batch(&["A", "B"], &[a, 50.0], &[a, 50.0]))
                .unwrap();
        }
        let Column::Float64(r) = &out[0] else {
            panic!()
        };
        assert!((r[0] - 0.01).abs() < 1e-3, "{r:?}");
        assert!(r[1].abs() < 1e-9, "{r:?}");
        let Column::Float64(c) = &out[1] else {
            panic!()
        };
        assert!((c[0] - a * (1.0 + r[0])).abs() < 1e-9);
    }

    #[test]
    fn first_bars_are_missing_and_state_round_trips() {
        let mut m = Forecast::init("{}").unwrap();
        let out = m.process(&batch(&["A"], &[10.0], &[10.0])).unwrap();
        assert!(
            matches!(&out[0], Column::Float64(v) if v[0].is_nan()),
            "{out:?}"
        );
        m.process(&batch(&["A"], &[11.0], &[10.5])).unwrap();
        let snap = m.snapshot();
        let mut restored = Forecast::init("{}").unwrap();
        restored.restore(snap).unwrap();
        let next = batch(&["A"], &[12.0], &[11.5]);
        assert_eq!(
            format!("{:?}", m.process(&next).unwrap()),
            format!("{:?}", restored.process(&next).unwrap())
        );
    }

    #[test]
    fn bad_config_is_refused_with_its_name() {
        let err = Forecast::init("{\"lambda\": 2}").err().unwrap();
        assert!(err.contains("lambda"), "{err}");
        let err = Forecast::init("{\"delta\": \"x\"}").err().unwrap();
        assert!(err.contains("delta"), "{err}");
    }
}
