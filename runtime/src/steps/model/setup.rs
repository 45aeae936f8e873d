//! What a model step gives its plugin: the plugin file (a path, or a plugin shipped with
//! tickflow by name), the bytes of its `model:` file, and the config `init` gets (the step's
//! `config:`, with list-form `inputs:` and `outputs:` in it), checked against the plugin's
//! config schema.

use std::path::{Path, PathBuf};

use super::config::{ModelInputs, ModelStepConfig, STOCK_PLUGINS};

/// The largest `model:` file read.
pub const MAX_MODEL_BYTES: usize = 256 << 20;

/// Where the plugin of `plugin:` is: a path as written, or a stock plugin's file. Stock plugins
/// are looked for in `$TICKFLOW_PLUGINS`, then `plugins/dist/` under the working directory or
/// the nearest folder above it that has one (a checkout), then `share/tickflow/plugins/` beside
/// the binary's folder (the container image).
pub fn plugin_path(plugin: &str) -> Result<PathBuf, String> {
    if !STOCK_PLUGINS.contains(&plugin) {
        return Ok(PathBuf::from(plugin));
    }
    let file = format!("{plugin}.wasm");
    let mut places: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("TICKFLOW_PLUGINS") {
        places.push(Path::new(&dir).join(&file));
    }
    match std::env::current_dir() {
        Ok(cwd) => {
            let found = cwd.ancestors().map(|d| d.join("plugins/dist")).find(|d| d.is_dir());
            places.push(found.unwrap_or_else(|| PathBuf::from("plugins/dist")).join(&file));
        }
        Err(_) => places.push(Path::new("plugins/dist").join(&file)),
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(bin) = exe.parent()
    {
        places.push(bin.join("../share/tickflow/plugins").join(&file));
    }
    places.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "`{plugin}` is a plugin shipped with tickflow, but `{file}` was not found (looked in {}): build it with `plugins/build {plugin}`, or set TICKFLOW_PLUGINS to the folder that has it",
            places
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// The bytes of the step's `model:` file (empty without one).
pub fn artifact(cfg: &ModelStepConfig) -> Result<Vec<u8>, String> {
    match &cfg.model {
        None => Ok(Vec::new()),
        Some(url) => crate::base::storage::read_file(url, MAX_MODEL_BYTES, "a model file"),
    }
}

/// The config `init` gets, as a JSON value: the step's `config:`, plus its `inputs:` when they
/// are a list and its `outputs:` (a plugin that takes them from the spec reads them there).
/// `Err((field, message))` when they cannot be put in it.
pub fn init_config(cfg: &ModelStepConfig) -> Result<serde_json::Value, (&'static str, String)> {
    let list = match &cfg.inputs {
        ModelInputs::List(columns) => Some(columns),
        ModelInputs::Map(_) => None,
    };
    if list.is_none() && cfg.outputs.is_none() {
        return Ok(match &cfg.config {
            serde_json::Value::Null => serde_json::json!({}),
            other => other.clone(),
        });
    }
    let mut config = match &cfg.config {
        serde_json::Value::Null => serde_json::Map::new(),
        serde_json::Value::Object(o) => o.clone(),
        _ => {
            return Err((
                "config",
                "must be an object when `inputs` is a list or `outputs` is given (they are passed in it)".into(),
            ));
        }
    };
    for (key, value, given) in [
        ("inputs", list.map(|l| serde_json::json!(l)), list.is_some()),
        ("outputs", cfg.outputs.clone(), cfg.outputs.is_some()),
    ] {
        if !given {
            continue;
        }
        if config.contains_key(key) {
            return Err((
                "config",
                format!("has `{key}`, which the step's own `{key}:` gives: keep one"),
            ));
        }
        config.insert(key.to_string(), value.expect("given"));
    }
    Ok(serde_json::Value::Object(config))
}

/// Every problem of `config` against the plugin's JSON Schema, as (field of the step, message):
/// a problem in `inputs` or `outputs` that the step gave is reported at that field.
pub fn schema_problems(
    cfg: &ModelStepConfig,
    schema: &str,
    config: &serde_json::Value,
) -> Vec<(String, String)> {
    let schema: serde_json::Value = match serde_json::from_str(schema) {
        Ok(s) => s,
        Err(e) => return vec![("plugin".into(), format!("declares a config schema that is not JSON: {e}"))],
    };
    let validator = match jsonschema::validator_for(&schema) {
        Ok(v) => v,
        Err(e) => {
            return vec![(
                "plugin".into(),
                format!("declares a config schema that is not a JSON Schema: {}", e.masked()),
            )];
        }
    };
    let from_step = |key: &str| match key {
        "inputs" => matches!(cfg.inputs, ModelInputs::List(_)),
        "outputs" => cfg.outputs.is_some(),
        _ => false,
    };
    validator
        .iter_errors(config)
        .map(|e| {
            let pointer = e.instance_path().as_str().to_string();
            let parts: Vec<String> = pointer
                .split('/')
                .skip(1)
                .map(|p| p.replace("~1", "/").replace("~0", "~"))
                .collect();
            let field = match parts.first() {
                Some(first) if from_step(first) => parts.join("."),
                _ if parts.is_empty() => "config".to_string(),
                _ => format!("config.{}", parts.join(".")),
            };
            // NB: masked: the message does not repeat the value (a config may hold a secret
            // from the environment).
            (field, e.masked().to_string())
        })
        .collect()
}
