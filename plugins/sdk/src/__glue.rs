//! The WIT glue (WebAssembly builds only): converts between the generated types and the SDK's.

use std::any::Any;
use std::cell::RefCell;

use crate::{Batch, Column, ColumnType, Model};

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "model",
        pub_export_macro: true,
        export_macro_name: "__export_model",
        default_bindings_module: "tickflow_plugin::__glue::bindings",
        runtime_path: "tickflow_plugin::__glue::__wit_bindgen::rt",
    });
}

pub use bindings::tickflow::model::types;

thread_local! {
    /// The instance's model (set by `init`) and its input names.
    static MODEL: RefCell<Option<(Box<dyn Any>, Vec<String>)>> = const { RefCell::new(None) };
}

fn ty(t: ColumnType) -> types::ColumnType {
    match t {
        ColumnType::Float64 => types::ColumnType::Float64,
        ColumnType::Int64 => types::ColumnType::Int64,
        ColumnType::Text => types::ColumnType::Text,
        ColumnType::TimestampMs => types::ColumnType::TimestampMs,
    }
}

fn field(f: crate::Field) -> types::Field {
    types::Field {
        name: f.name,
        ty: ty(f.ty),
    }
}

pub fn describe<M: Model>() -> types::ModelInfo {
    wit_info(M::info())
}

fn wit_info(info: crate::Info) -> types::ModelInfo {
    types::ModelInfo {
        name: info.name,
        version: info.version,
        inputs: info.inputs.into_iter().map(field).collect(),
        outputs: info.outputs.into_iter().map(field).collect(),
    }
}

pub fn init<M: Model>(config: String, artifact: Vec<u8>) -> Result<types::ModelInfo, String> {
    let model = M::init_with_artifact(&config, &artifact)?;
    let info = model.instance_info();
    let names = info.inputs.iter().map(|f| f.name.clone()).collect();
    MODEL.with(|m| *m.borrow_mut() = Some((Box::new(model), names)));
    Ok(wit_info(info))
}

fn with_model<M: Model, R>(f: impl FnOnce(&mut M, &[String]) -> R) -> Result<R, String> {
    MODEL.with(|m| {
        let mut m = m.borrow_mut();
        let (model, names) = m
            .as_mut()
            .ok_or("the host called the plugin before `init`")?;
        let model = model
            .downcast_mut::<M>()
            .ok_or("the plugin's model has another type")?;
        Ok(f(model, names))
    })
}

/// The values of a text column (offsets past the data or inside a character give "").
fn split(t: &types::TextColumn) -> Vec<String> {
    let mut start = 0usize;
    t.ends
        .iter()
        .map(|&end| {
            let v = t.data.get(start..end as usize).unwrap_or("").to_string();
            start = end as usize;
            v
        })
        .collect()
}

fn join(values: &[String]) -> types::TextColumn {
    let mut data = String::with_capacity(values.iter().map(|v| v.len()).sum());
    let mut ends = Vec::with_capacity(values.len());
    for v in values {
        data.push_str(v);
        ends.push(data.len() as u32);
    }
    types::TextColumn { data, ends }
}

pub fn process<M: Model>(input: types::Batch) -> Result<Vec<types::Column>, String> {
    let columns = input
        .columns
        .into_iter()
        .enumerate()
        .map(|(i, c)| match c {
            types::Column::Float64(v) => Column::Float64(v),
            types::Column::Int64(v) => Column::Int64(v),
            // The key column of a model that does not read it: empty strings allocate nothing.
            types::Column::Text(t) if i == 0 && !M::reads_keys() => {
                Column::Text(vec![String::new(); t.ends.len()])
            }
            types::Column::Text(t) => Column::Text(split(&t)),
            types::Column::TimestampMs(v) => Column::TimestampMs(v),
        })
        .collect();
    let out = with_model::<M, _>(|model, names| {
        let batch = Batch {
            names: names.to_vec(),
            columns,
        };
        model.process(&batch)
    })??;
    Ok(out
        .into_iter()
        .map(|c| match c {
            Column::Float64(v) => types::Column::Float64(v),
            Column::Int64(v) => types::Column::Int64(v),
            Column::Text(v) => types::Column::Text(join(&v)),
            Column::TimestampMs(v) => types::Column::TimestampMs(v),
        })
        .collect())
}

pub fn snapshot<M: Model>() -> Vec<types::KeyedState> {
    with_model::<M, _>(|model, _| model.snapshot())
        .unwrap_or_default()
        .into_iter()
        .map(|(key, state)| types::KeyedState { key, state })
        .collect()
}

pub fn restore<M: Model>(states: Vec<types::KeyedState>) -> Result<(), String> {
    with_model::<M, _>(|model, _| {
        model.restore(states.into_iter().map(|s| (s.key, s.state)).collect())
    })?
}
