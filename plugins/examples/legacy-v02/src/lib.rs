//! A model built against `tickflow:model@0.2.0` (`init(config)`, fields fixed by `describe`),
//! written straight on wit-bindgen: tickflow keeps running plugins of the previous contract.
//! It scales `close` by the config's `factor` (default 2): `scaled = close * factor`.

/// `close * factor` for each row.
pub fn scale(close: &[f64], factor: f64) -> Vec<f64> {
    close.iter().map(|c| c * factor).collect()
}

#[cfg(target_arch = "wasm32")]
mod glue {
    wit_bindgen::generate!({ path: "../../wit/v0.2", world: "model" });

    use std::cell::Cell;

    use tickflow::model::types::{ColumnType, Field};

    thread_local! {
        static FACTOR: Cell<f64> = const { Cell::new(2.0) };
    }

    struct Legacy;

    impl Guest for Legacy {
        fn describe() -> ModelInfo {
            let field = |name: &str, ty| Field {
                name: name.into(),
                ty,
            };
            ModelInfo {
                name: "legacy-v02".into(),
                version: "0.1.0".into(),
                inputs: vec![
                    field("key", ColumnType::Text),
                    field("close", ColumnType::Float64),
                ],
                outputs: vec![field("scaled", ColumnType::Float64)],
            }
        }
        fn init(config: String) -> Result<(), String> {
            // `{"factor": 3}`; anything else keeps the default.
            let factor = config
                .split("\"factor\"")
                .nth(1)
                .and_then(|rest| rest.trim_start_matches([' ', ':']).split([',', '}']).next())
                .and_then(|n| n.trim().parse::<f64>().ok())
                .unwrap_or(2.0);
            FACTOR.with(|f| f.set(factor));
            Ok(())
        }
        fn process(input: Batch) -> Result<Vec<Column>, String> {
            let Some(Column::Float64(close)) = input.columns.get(1) else {
                return Err("the second input is not a float column".into());
            };
            Ok(vec![Column::Float64(super::scale(
                close,
                FACTOR.with(|f| f.get()),
            ))])
        }
        fn snapshot() -> Vec<KeyedState> {
            Vec::new()
        }
        fn restore(_states: Vec<KeyedState>) -> Result<(), String> {
            Ok(())
        }
    }

    export!(Legacy);
}
