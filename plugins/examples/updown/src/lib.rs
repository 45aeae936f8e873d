//! A logistic up/down classifier trained offline: its weights arrive in the step's config.
//!
//! Features of bar t: `[1, r_t, r_{t-1}, (close_t - vwap_t) / vwap_t]` (`r_t` the return against
//! the symbol's previous close; 0 when unknown). Outputs `p_up = σ(w · x)`, the probability that
//! the next bar closes higher, and `signal` (1 when `p_up > 0.5`, else 0).
//!
//! Config: `{"weights": [w0, w1, w2, w3]}` (required).

use std::collections::BTreeMap;

use tickflow_plugin::{Batch, Column, ColumnType, Field, Info, Model, config, export};

pub struct UpDown {
    weights: [f64; 4],
    /// symbol → (last close, last return)
    symbols: BTreeMap<String, (f64, f64)>,
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Model for UpDown {
    fn info() -> Info {
        Info {
            name: "updown".into(),
            version: "0.1.0".into(),
            inputs: vec![
                Field::new("key", ColumnType::Text),
                Field::new("close", ColumnType::Float64),
                Field::new("vwap", ColumnType::Float64),
            ],
            outputs: vec![
                Field::new("p_up", ColumnType::Float64),
                Field::new("signal", ColumnType::Int64),
            ],
        }
    }

    fn config_schema() -> Option<String> {
        // `tickflow validate` applies it: `weights: [1, 2, 3]` is an error before any run.
        Some(
            r#"{
              "type": "object",
              "required": ["weights"],
              "properties": {
                "weights": { "type": "array", "items": { "type": "number" },
                             "minItems": 4, "maxItems": 4 }
              },
              "additionalProperties": false
            }"#
            .into(),
        )
    }

    fn init(cfg: &str) -> Result<Self, String> {
        let w = config::numbers(cfg, "weights")?.ok_or(
            "config `weights` is required: a list of 4 numbers (bias, r_t, r_t-1, vwap gap)",
        )?;
        let weights: [f64; 4] = w
            .as_slice()
            .try_into()
            .map_err(|_| format!("config `weights` needs 4 numbers, got {}", w.len()))?;
        Ok(UpDown {
            weights,
            symbols: BTreeMap::new(),
        })
    }

    fn process(&mut self, batch: &Batch) -> Result<Vec<Column>, String> {
        let (keys, close, vwap) = (batch.text("key")?, batch.f64("close")?, batch.f64("vwap")?);
        let mut p = Vec::with_capacity(keys.len());
        let mut signal = Vec::with_capacity(keys.len());
        for ((key, &c), &v) in keys.iter().zip(close).zip(vwap) {
            let (last_close, last_return) =
                self.symbols.get(key).copied().unwrap_or((f64::NAN, 0.0));
            let r = c / last_close - 1.0;
            let r = if r.is_finite() { r } else { 0.0 };
            let gap = if v.is_finite() && v != 0.0 {
                (c - v) / v
            } else {
                0.0
            };
            let x = [1.0, r, last_return, gap];
            let z: f64 = self.weights.iter().zip(x).map(|(w, x)| w * x).sum();
            let prob = sigmoid(z);
            p.push(prob);
            signal.push((prob > 0.5) as i64);
            self.symbols.insert(key.clone(), (c, r));
        }
        Ok(vec![Column::Float64(p), Column::Int64(signal)])
    }

    fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        self.symbols
            .iter()
            .map(|(k, (c, r))| {
                let mut b = c.to_le_bytes().to_vec();
                b.extend_from_slice(&r.to_le_bytes());
                (k.clone(), b)
            })
            .collect()
    }

    fn restore(&mut self, states: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        for (k, b) in states {
            if b.len() != 16 {
                return Err(format!(
                    "key `{k}`: state of {} bytes, expected 16",
                    b.len()
                ));
            }
            let c = f64::from_le_bytes(b[..8].try_into().expect("8"));
            let r = f64::from_le_bytes(b[8..].try_into().expect("8"));
            self.symbols.insert(k, (c, r));
        }
        Ok(())
    }
}

export!(UpDown);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_with_the_configured_weights() {
        let mut m = UpDown::init("{\"weights\": [0.1, 20, -5, 3]}").unwrap();
        let b = |c: f64, v: f64| Batch {
            names: vec!["key".into(), "close".into(), "vwap".into()],
            columns: vec![
                Column::Text(vec!["A".into()]),
                Column::Float64(vec![c]),
                Column::Float64(vec![v]),
            ],
        };
        m.process(&b(100.0, 100.0)).unwrap();
        let out = m.process(&b(102.0, 101.0)).unwrap();
        // Oracle by hand: r = 0.02, previous r = 0 (first bar), gap = 1/101.
        let z = 0.1 + 20.0 * 0.02 - 5.0 * 0.0 + 3.0 * (1.0 / 101.0);
        let Column::Float64(p) = &out[0] else {
            panic!()
        };
        assert!((p[0] - 1.0 / (1.0 + (-z as f64).exp())).abs() < 1e-12);
        assert_eq!(out[1], Column::Int64(vec![1]));
    }

    #[test]
    fn weights_are_required_and_checked() {
        assert!(
            UpDown::init("{}")
                .err()
                .unwrap()
                .contains("`weights` is required")
        );
        assert!(
            UpDown::init("{\"weights\": [1, 2]}")
                .err()
                .unwrap()
                .contains("4 numbers, got 2")
        );
    }
}
