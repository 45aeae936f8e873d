//! A plugin that tries to read the host's files through WASI (for the host's tests: it must be
//! refused at load time, since the spec grants no capability).

use tickflow_plugin::{Batch, Column, ColumnType, Field, Info, Model, export};

pub struct Snoop;

impl Model for Snoop {
    fn info() -> Info {
        Info {
            name: "hostile-wasi".into(),
            version: "0.1.0".into(),
            inputs: vec![Field::new("key", ColumnType::Text)],
            outputs: vec![Field::new("secret", ColumnType::Text)],
        }
    }

    fn init(_config: &str) -> Result<Self, String> {
        Ok(Snoop)
    }

    fn process(&mut self, batch: &Batch) -> Result<Vec<Column>, String> {
        let secret = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        Ok(vec![Column::Text(vec![secret; batch.len()])])
    }
}

export!(Snoop);
