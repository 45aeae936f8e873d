//! A deliberately misbehaving plugin for the host's tests (never use it in a pipeline).
//!
//! Config: `{"mode": M, "trigger": X}`. It passes `close` through as `out` — except for batches
//! with a `close` equal to `trigger` (every batch when `trigger` is absent), where it:
//! - mode 1: loops forever (the call deadline must stop it);
//! - mode 2: allocates without bound (the memory cap must stop it);
//! - mode 3: panics (a trap);
//! - mode 4: returns one value too few;
//! - mode 5: returns an enormous column (50 M values, 400 MB);
//! - mode 6: returns a column of the wrong type;
//! - mode 0: behaves.

use tickflow_plugin::{Batch, Column, ColumnType, Field, Info, Model, config, export};

pub struct Hostile {
    mode: u32,
    trigger: Option<f64>,
    hoard: Vec<Vec<u8>>,
}

impl Model for Hostile {
    fn info() -> Info {
        Info {
            name: "hostile".into(),
            version: "0.1.0".into(),
            inputs: vec![
                Field::new("key", ColumnType::Text),
                Field::new("close", ColumnType::Float64),
            ],
            outputs: vec![Field::new("out", ColumnType::Float64)],
        }
    }

    fn init(cfg: &str) -> Result<Self, String> {
        let trigger = config::number(cfg, "trigger", f64::NAN)?;
        Ok(Hostile {
            mode: config::number(cfg, "mode", 0.0)? as u32,
            trigger: (!trigger.is_nan()).then_some(trigger),
            hoard: Vec::new(),
        })
    }

    fn process(&mut self, batch: &Batch) -> Result<Vec<Column>, String> {
        let close = batch.f64("close")?.to_vec();
        let triggered = self.trigger.is_none_or(|t| close.contains(&t));
        if !triggered {
            return Ok(vec![Column::Float64(close)]);
        }
        match self.mode {
            1 => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            2 => loop {
                self.hoard.push(vec![1u8; 1 << 20]);
            },
            3 => panic!("hostile plugin: a trap"),
            4 => Ok(vec![Column::Float64(close[1..].to_vec())]),
            5 => Ok(vec![Column::Float64(vec![0.5; 50_000_000])]),
            6 => Ok(vec![Column::Text(
                close.iter().map(|c| c.to_string()).collect(),
            )]),
            _ => Ok(vec![Column::Float64(close)]),
        }
    }
}

export!(Hostile);
