//! # tickflow-plugin
//!
//! Write a model plugin for [tickflow](../../README.md): implement [`Model`] on a struct, call
//! [`export!`], build to WebAssembly. The SDK hides the WIT glue (`plugins/wit/model.wit`,
//! package `tickflow:model@0.3.0`): your code sees plain Rust types.
//!
//! The host calls `process` with a batch of rows in columns — never row by row. The first input
//! is always the key (e.g. the symbol): rows are routed by key, and each key's rows arrive in
//! event-time order, so a model that keeps state per key gives the same results for any number
//! of workers. Return one value per input row in every output column.
//!
//! Plugins run sandboxed: no files, network, clock or environment; every call has a deadline
//! (100 ms by default) and every instance a memory cap (64 MiB by default). A panic is a trap:
//! the step's `on_error` decides what happens to the batch.
//!
//! ## A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "momentum"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! tickflow-plugin = { path = "../sdk" }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```ignore
//! use tickflow_plugin::{Batch, Column, ColumnType, Field, Info, KeyMap, Model, export};
//!
//! /// The return of each bar against the previous close of the same symbol.
//! pub struct Momentum {
//!     last_close: KeyMap<f64>,
//! }
//!
//! impl Model for Momentum {
//!     fn info() -> Info {
//!         Info {
//!             name: "momentum".into(),
//!             version: "0.1.0".into(),
//!             inputs: vec![
//!                 Field::new("key", ColumnType::Text),
//!                 Field::new("close", ColumnType::Float64),
//!             ],
//!             outputs: vec![Field::new("ret", ColumnType::Float64)],
//!         }
//!     }
//!
//!     fn init(_config: &str) -> Result<Self, String> {
//!         Ok(Momentum { last_close: KeyMap::default() })
//!     }
//!
//!     fn process(&mut self, batch: &Batch) -> Result<Vec<Column>, String> {
//!         let (keys, close) = (batch.text("key")?, batch.f64("close")?);
//!         let ret = keys
//!             .iter()
//!             .zip(close)
//!             .map(|(k, c)| match self.last_close.insert(k.clone(), *c) {
//!                 Some(prev) => c / prev - 1.0,
//!                 None => f64::NAN, // no previous bar: missing
//!             })
//!             .collect();
//!         Ok(vec![Column::Float64(ret)])
//!     }
//! }
//!
//! export!(Momentum);
//! ```
//!
//! Build it (the second step wraps the core module into a component; `plugins/build` does both
//! for every plugin in this repository):
//!
//! ```sh
//! cargo build --profile plugin --target wasm32-unknown-unknown -p momentum
//! cargo run -p tickflow-componentize -- \
//!     target/wasm32-unknown-unknown/plugin/momentum.wasm plugins/dist/momentum.wasm
//! tickflow plugin check plugins/dist/momentum.wasm
//! ```
//!
//! and use it in a spec:
//!
//! ```yaml
//! steps:
//!   momentum:
//!     type: model
//!     input: bars_1m
//!     plugin: plugins/dist/momentum.wasm
//!     inputs: { key: symbol, close: close }   # plugin input ← column of the incoming rows
//! ```
//!
//! ## State and checkpoints
//!
//! Keep per-key state in a [`KeyMap`] (a hash map with a fast hash): inside WebAssembly string
//! comparisons are byte loops, so a `BTreeMap<String, _>` costs several times more per lookup.
//!
//! Override [`Model::snapshot`] and [`Model::restore`] to keep state across restarts: state is
//! per key, so the host can hand each key to whichever worker owns it after a restart with a
//! different worker count.
//!
//! ## Testing
//!
//! Natively the crate is plain Rust: test your model by calling `init` and `process` directly
//! (`cargo test -p momentum`). The host's tests run the same plugin compiled to WebAssembly.

extern crate self as tickflow_plugin;

mod column;
pub mod config;
mod keymap;

pub use column::{Batch, Column, ColumnType, Field, Info};
pub use keymap::{FxHasher, KeyMap};

/// A model plugin. One value of the implementing type lives in each plugin instance (one per
/// worker).
pub trait Model: Sized + 'static {
    /// Name, version, inputs (the first is the key) and outputs.
    fn info() -> Info;
    /// Builds the model from the step's `config:` (JSON; `{}` when the spec has none).
    fn init(config: &str) -> Result<Self, String>;
    /// Builds the model from its config and the bytes of the step's `model:` file (an
    /// artifact: an ONNX graph, weights). By default a plugin takes no artifact and this is
    /// [`Model::init`].
    fn init_with_artifact(config: &str, artifact: &[u8]) -> Result<Self, String> {
        if !artifact.is_empty() {
            return Err("this plugin takes no `model:` file".into());
        }
        Self::init(config)
    }
    /// This instance's inputs (the first is the key) and outputs, once built: a generic runner's
    /// depend on its config and artifact. By default [`Model::info`]'s.
    fn instance_info(&self) -> Info {
        Self::info()
    }
    /// The JSON Schema (draft 2020-12) of the config, which `tickflow validate` applies to the
    /// step's `config:`; `None` accepts any JSON.
    fn config_schema() -> Option<String> {
        None
    }
    /// Whether [`Model::process`] reads the key column's values. A model that does not (one
    /// without per-key state) may say so: inside WebAssembly the keys then arrive as empty
    /// strings, which saves an allocation per row (the rows are still routed by key).
    fn reads_keys() -> bool {
        true
    }
    /// Scores a batch: one value per row in every output column, in the order of
    /// [`Info::outputs`]. An `Err` fails the whole batch (the step's `on_error` applies).
    fn process(&mut self, batch: &Batch) -> Result<Vec<Column>, String>;
    /// The state of every key, for checkpoints.
    fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }
    /// Loads keys' state saved by [`Model::snapshot`] (after `init`, before any batch).
    fn restore(&mut self, states: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        let _ = states;
        Ok(())
    }
}

/// Makes `$model` (a type implementing [`Model`]) the plugin's exports. Natively it expands to
/// nothing, so the crate still builds and tests as plain Rust.
#[macro_export]
macro_rules! export {
    ($model:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__glue::types as __types;
            struct __TickflowPlugin;
            impl $crate::__glue::bindings::Guest for __TickflowPlugin {
                fn describe() -> __types::ModelInfo {
                    $crate::__glue::describe::<$model>()
                }
                fn config_schema() -> Option<String> {
                    <$model as $crate::Model>::config_schema()
                }
                fn init(config: String, artifact: Vec<u8>) -> Result<__types::ModelInfo, String> {
                    $crate::__glue::init::<$model>(config, artifact)
                }
                fn process(input: __types::Batch) -> Result<Vec<__types::Column>, String> {
                    $crate::__glue::process::<$model>(input)
                }
                fn snapshot() -> Vec<__types::KeyedState> {
                    $crate::__glue::snapshot::<$model>()
                }
                fn restore(states: Vec<__types::KeyedState>) -> Result<(), String> {
                    $crate::__glue::restore::<$model>(states)
                }
            }
            $crate::__glue::bindings::__export_model!(
                __TickflowPlugin with_types_in $crate::__glue::bindings
            );
        };
    };
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __glue;
