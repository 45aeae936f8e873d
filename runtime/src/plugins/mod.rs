//! The WebAssembly model-plugin host (wasmtime, component model).
//!
//! A plugin is a component exporting the `model` world of `plugins/wit/model.wit`
//! (`tickflow:model@0.2.0`). It is compiled once per process ([`load`]) and instantiated once
//! per worker ([`Instance`]); each instance runs under a memory cap and each call under a
//! deadline (epoch interruption). Plugins import nothing: any import other than the contract's
//! own types is refused at load time. A trap, timeout, cap hit or bad output is a [`CallError`]
//! with a [`ErrorKind`]; the step's `on_error` decides what happens, and the instance is
//! rebuilt after a trap (a trapped instance cannot be re-entered).

mod host;
mod legacy;
pub mod stats;

pub use host::{CallError, Contract, ErrorKind, Instance, Limits, Plugin, WIT_PACKAGE, load};

/// The contract's types, as the host sees them.
pub mod host_types {
    pub use super::host::{
        Column, ColumnType, Field, KeyedState, ModelInfo, TextColumn, column_len, text_column,
        text_values,
    };
}
