//! The model step: planning (plugin loaded, inputs checked against the incoming fields) and the
//! timely operator (rows routed by key, batched per timestamp, scored, columns appended).

use std::cell::RefCell;
use std::collections::BTreeMap;

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use compact_str::CompactString;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::Operator;

use super::config::{ModelStepConfig, OnError, OnNan};
use serde::{Deserialize, Serialize};

use crate::plugins::host_types::{
    Column, ColumnType, KeyedState, column_len, text_column, text_values,
};
use crate::plugins::{CallError, ErrorKind, Instance, Limits};
use crate::base::keys::key_group;
use crate::base::record::{Field, FieldType, Row, Schema, Value};
use crate::base::reject::RejectReason;
use crate::checkpoint::{GroupedState, Role};
use crate::worker::context::RunContext;
use crate::worker::stash::{Stash, stash_stamp};
use crate::output::dead_letter::{DeadLetter, DeadLetters};
use super::ModelNode;

fn field_type(ty: ColumnType) -> FieldType {
    match ty {
        ColumnType::Float64 => FieldType::Float64,
        ColumnType::Int64 => FieldType::Int64,
        ColumnType::Text => FieldType::Utf8,
        ColumnType::TimestampMs => FieldType::Timestamp,
    }
}

/// Plans a model step: loads the plugin and maps its inputs onto the incoming fields.
pub fn plan_model(
    name: &str,
    cfg: &ModelStepConfig,
    incoming: &Schema,
    default_key: usize,
    err: &mut dyn FnMut(String, String),
) -> Option<ModelNode> {
    let p = format!("steps.{name}");
    if cfg.timeout.as_millis() <= 0 {
        err(format!("{p}.timeout"), "must be positive".into());
    }
    if cfg.max_memory.0 < (1 << 20) {
        err(format!("{p}.max_memory"), "must be at least 1MiB".into());
    }
    if cfg.batch_rows == 0 {
        err(format!("{p}.batch_rows"), "must be at least 1".into());
    }
    let plugin = match super::setup::plugin_path(&cfg.plugin)
        .and_then(|path| crate::plugins::load(&path))
    {
        Ok(plugin) => plugin,
        Err(message) => {
            err(format!("{p}.plugin"), message);
            return None;
        }
    };
    let artifact: Arc<[u8]> = match super::setup::artifact(cfg) {
        Ok(bytes) => bytes.into(),
        Err(message) => {
            let url = cfg.model.as_deref().unwrap_or_default();
            err(format!("{p}.model"), format!("cannot read `{url}`: {message}"));
            return None;
        }
    };
    let config = match super::setup::init_config(cfg) {
        Ok(config) => config,
        Err((field, message)) => {
            err(format!("{p}.{field}"), message);
            return None;
        }
    };
    if let Some(schema) = &plugin.config_schema {
        let problems = super::setup::schema_problems(cfg, schema, &config);
        let found = !problems.is_empty();
        for (field, message) in problems {
            err(format!("{p}.{field}"), format!("{message} (the plugin's config schema)"));
        }
        if found {
            return None;
        }
    }
    let limits = Limits {
        timeout: cfg.timeout.to_std(),
        max_memory: cfg.max_memory.0 as usize,
    };
    // The plugin's `init` sees the config and the model now, so `validate` reports what it
    // refuses; its answer says the instance's inputs and outputs. Planning is not timed like a
    // call: a large model may take longer to load than a batch to score.
    let plan_limits = Limits {
        timeout: limits.timeout.max(std::time::Duration::from_secs(60)),
        max_memory: limits.max_memory,
    };
    let info = match Instance::new(
        Arc::clone(&plugin),
        config.to_string(),
        Arc::clone(&artifact),
        plan_limits,
    ) {
        Ok(instance) => instance.info().clone(),
        Err(e) => {
            let field = if cfg.model.is_some() { "model" } else { "config" };
            err(
                format!("{p}.{field}"),
                format!("plugin `{}` refused it: {}", plugin.info.name, e.message),
            );
            return None;
        }
    };
    let map = match &cfg.inputs {
        super::config::ModelInputs::Map(map) => map.clone(),
        super::config::ModelInputs::List(_) => Default::default(),
    };
    for k in map.keys() {
        if !info.inputs.iter().any(|f| &f.name == k) {
            let names: Vec<&str> = info.inputs.iter().map(|f| f.name.as_str()).collect();
            err(
                format!("{p}.inputs.{k}"),
                format!(
                    "plugin `{}` has no input `{k}` (its inputs: {})",
                    info.name,
                    names.join(", ")
                ),
            );
        }
    }
    let mut input_fields = Vec::new();
    let mut ok = true;
    for (n, f) in info.inputs.iter().enumerate() {
        let source = map.get(&f.name).unwrap_or(&f.name);
        let want = field_type(f.ty);
        // The key (first input) defaults to the incoming rows' key (their first field).
        let found = match incoming.index_of(source) {
            None if n == 0 && !map.contains_key(&f.name) => Some(default_key),
            found => found,
        };
        match found {
            Some(i) if incoming.fields[i].ty == want => input_fields.push(i),
            Some(i) => {
                ok = false;
                err(
                    format!("{p}.inputs.{}", f.name),
                    format!(
                        "plugin input `{}` is {}, but field `{source}` is {}",
                        f.name,
                        want.name(),
                        incoming.fields[i].ty.name()
                    ),
                );
            }
            None => {
                ok = false;
                let names: Vec<&str> = incoming.names().collect();
                err(
                    format!("{p}.inputs.{}", f.name),
                    format!(
                        "plugin input `{}` needs a field; `{source}` is not one of the incoming fields ({}): map it with `inputs: {{{}: FIELD}}`",
                        f.name,
                        names.join(", "),
                        f.name
                    ),
                );
            }
        }
    }
    let model = cfg.model.as_ref().map(|url| super::ModelFile {
        url: url.clone(),
        version: super::model_version(&artifact),
        reload: cfg.reload.map(|d| d.to_std()),
    });
    if cfg.reload.is_some() && model.is_none() {
        ok = false;
        err(format!("{p}.reload"), "needs a `model:` file to check".into());
    }
    if let Some(r) = cfg.reload
        && r.as_millis() < 100
    {
        ok = false;
        err(format!("{p}.reload"), "must be at least 100ms".into());
    }
    let mut schema = incoming.clone();
    for f in &info.outputs {
        if schema.index_of(&f.name).is_some() {
            ok = false;
            err(
                format!("{p}.plugin"),
                format!(
                    "plugin output `{}` clashes with an incoming field of the same name",
                    f.name
                ),
            );
        }
        schema
            .fields
            .push(Field::new(&f.name, field_type(f.ty), true));
    }
    if model.is_some() {
        // Which model scored the row: the content hash of its `model:` bytes.
        if schema.index_of(MODEL_VERSION).is_some() {
            ok = false;
            err(
                format!("{p}.model"),
                format!("the rows get a `{MODEL_VERSION}` column, but the input has one"),
            );
        }
        schema
            .fields
            .push(Field::new(MODEL_VERSION, FieldType::Utf8, false));
    }
    ok.then(|| ModelNode {
        name: name.to_string(),
        incoming: incoming.clone(),
        plugin,
        input_fields,
        schema,
        config: config.to_string(),
        artifact,
        model,
        info,
        limits,
        on_error: cfg.on_error,
        on_nan: cfg.on_nan,
        batch_rows: cfg.batch_rows.max(1),
    })
}

/// The column that says which model (the content hash of its bytes) scored a row.
pub const MODEL_VERSION: &str = "model_version";

fn key_of(row: &Row, key: usize) -> &str {
    match &row[key] {
        Value::Str(s) => s.as_str(),
        _ => "",
    }
}

/// The plugin's input columns for `rows`.
fn columns(node: &ModelNode, rows: &[Row]) -> Vec<Column> {
    node.info
        .inputs
        .iter()
        .zip(&node.input_fields)
        .map(|(f, &i)| match f.ty {
            ColumnType::Float64 => Column::Float64(
                rows.iter()
                    .map(|r| match r[i] {
                        Value::F64(x) => x,
                        Value::I64(x) => x as f64,
                        _ => f64::NAN,
                    })
                    .collect(),
            ),
            ColumnType::Int64 | ColumnType::TimestampMs => {
                let v = rows
                    .iter()
                    .map(|r| match r[i] {
                        Value::I64(x) | Value::Ts(x) => x,
                        _ => 0,
                    })
                    .collect();
                if f.ty == ColumnType::Int64 {
                    Column::Int64(v)
                } else {
                    Column::TimestampMs(v)
                }
            }
            ColumnType::Text => text_column(rows.iter().map(|r| match &r[i] {
                Value::Str(s) => s.as_str(),
                _ => "",
            })),
        })
        .collect()
}

/// Appends the output columns to the rows (NaN → null, or an error under `on_nan: error`).
fn append(
    rows: &mut [Row],
    out: Vec<Column>,
    on_nan: OnNan,
    names: &[String],
) -> Result<(), CallError> {
    if on_nan == OnNan::Error {
        for (c, name) in out.iter().zip(names) {
            if let Column::Float64(v) = c
                && let Some(i) = v.iter().position(|x| x.is_nan())
            {
                return Err(CallError {
                    kind: ErrorKind::BadOutput,
                    message: format!("column `{name}` is NaN at row {i} (on_nan: error)"),
                });
            }
        }
    }
    for c in out {
        debug_assert_eq!(column_len(&c), rows.len());
        match c {
            Column::Float64(v) => rows.iter_mut().zip(v).for_each(|(r, x)| {
                r.push(if x.is_nan() {
                    Value::Null
                } else {
                    Value::F64(x)
                })
            }),
            Column::Int64(v) => rows
                .iter_mut()
                .zip(v)
                .for_each(|(r, x)| r.push(Value::I64(x))),
            Column::TimestampMs(v) => rows
                .iter_mut()
                .zip(v)
                .for_each(|(r, x)| r.push(Value::Ts(x))),
            Column::Text(t) => rows
                .iter_mut()
                .zip(text_values(&t))
                .for_each(|(r, x)| r.push(Value::Str(CompactString::from(x)))),
        }
    }
    Ok(())
}

/// A model read from the step's file and checked, not scoring yet.
struct Loaded {
    version: String,
    bytes: Arc<[u8]>,
    instance: Instance,
}

/// A worker's view of its model file: the version scoring, the last version refused, and when
/// the file was last looked at.
struct Swap {
    version: String,
    /// The bytes of `version`.
    bytes: Arc<[u8]>,
    refused: Option<String>,
    checked: Instant,
    /// A local file's modification time and length when last read: unchanged, it is not read
    /// and hashed again (a bucket's object is, each `reload`).
    seen: Option<(std::time::SystemTime, u64)>,
    /// With checkpoints, on the first worker: a new model, waiting for the next checkpoint to
    /// decide it for every worker.
    staged: Option<Loaded>,
    /// With checkpoints: the epoch whose decision this worker adopted last.
    adopted: u64,
    /// With checkpoints, on the first worker: whether a checkpoint decided the model scoring
    /// yet (the first one does, so that the processes of a cluster agree even when they read
    /// the file at different moments).
    announced: bool,
}

impl Swap {
    fn new(file: &super::ModelFile, bytes: Arc<[u8]>, completed: u64) -> Swap {
        Swap {
            version: file.version.clone(),
            bytes,
            refused: None,
            checked: Instant::now(),
            seen: None,
            staged: None,
            adopted: completed,
            announced: false,
        }
    }

    /// The file's model when it changed and the new model loads with the same inputs and outputs
    /// as the one planned; `None` otherwise (a model that does not is logged and counted once,
    /// and the old one keeps scoring).
    fn load(
        &mut self,
        node: &ModelNode,
        file: &super::ModelFile,
        stats: &crate::plugins::stats::PluginStats,
    ) -> Option<Loaded> {
        if !file.url.contains("://") || file.url.starts_with("file://") {
            let path = file.url.strip_prefix("file://").unwrap_or(&file.url);
            let stamp = std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            if stamp.is_some() && stamp == self.seen {
                return None;
            }
            self.seen = stamp;
        }
        let bytes = match crate::base::storage::read_file(&file.url, super::setup::MAX_MODEL_BYTES, "a model file") {
            Ok(b) => b,
            Err(e) => {
                if self.refused.as_deref() != Some("unreadable") {
                    self.refused = Some("unreadable".into());
                    stats.model_swap_errors.fetch_add(1, Relaxed);
                    tracing::warn!(step = %node.name, model = %file.url, error = %e, "cannot read the model file; the current model keeps scoring");
                }
                return None;
            }
        };
        let version = super::model_version(&bytes);
        let staged = self.staged.as_ref().map(|s| s.version.as_str());
        if version == self.version
            || self.refused.as_deref() == Some(version.as_str())
            || staged == Some(version.as_str())
        {
            return None;
        }
        match instantiate(node, bytes.into()) {
            Ok(next) => Some(next),
            Err(why) => {
                self.refused = Some(version.clone());
                stats.model_swap_errors.fetch_add(1, Relaxed);
                tracing::warn!(step = %node.name, model = %file.url, version = %version, error = %why, "the new model is refused; the current model keeps scoring");
                None
            }
        }
    }

    /// Makes `next` the model scoring: a stateful plugin's keys' state is carried over from
    /// `current`. On an error the current model stays.
    fn adopt(
        &mut self,
        node: &ModelNode,
        mut next: Loaded,
        current: Option<&mut Instance>,
        stats: &crate::plugins::stats::PluginStats,
        epoch: Option<u64>,
    ) -> Result<Instance, String> {
        if let Some(current) = current {
            let carried = current.snapshot().and_then(|states| next.instance.restore(states));
            if let Err(e) = carried {
                self.refused = Some(next.version.clone());
                stats.model_swap_errors.fetch_add(1, Relaxed);
                return Err(format!("carrying the keys' state over to model {}: {e}", next.version));
            }
        }
        stats.model_swaps.fetch_add(1, Relaxed);
        match epoch {
            Some(epoch) => tracing::info!(step = %node.name, from = %self.version, to = %next.version, checkpoint = epoch, "model swapped"),
            None => tracing::info!(step = %node.name, from = %self.version, to = %next.version, "model swapped"),
        }
        self.version = next.version;
        self.bytes = next.bytes;
        self.refused = None;
        Ok(next.instance)
    }

    /// The model a checkpoint decided (`epoch`, the model file's `bytes`), on this worker: the
    /// staged one when it is that model, else loaded from the bytes. `Ok(None)`: it scores
    /// already.
    fn adopt_decided(
        &mut self,
        node: &ModelNode,
        bytes: Arc<[u8]>,
        epoch: u64,
        current: Option<&mut Instance>,
        stats: &crate::plugins::stats::PluginStats,
    ) -> Result<Option<Instance>, String> {
        self.adopted = epoch;
        let version = super::model_version(&bytes);
        let staged = self.staged.take();
        if version == self.version {
            return Ok(None);
        }
        let next = match staged {
            Some(s) if s.version == version => s,
            _ => instantiate(node, bytes).map_err(|e| {
                format!("the model checkpoint {epoch} decided ({version}) does not load here: {e}")
            })?,
        };
        self.adopt(node, next, current, stats, Some(epoch)).map(Some)
    }
}

/// A model step's plugin instance on the model `bytes`, checked to have the inputs and outputs
/// the step was planned with.
fn instantiate(node: &ModelNode, bytes: Arc<[u8]>) -> Result<Loaded, String> {
    let version = super::model_version(&bytes);
    let instance = Instance::new(Arc::clone(&node.plugin), node.config.clone(), Arc::clone(&bytes), node.limits)
        .map_err(|e| e.to_string())?;
    let same = |a: &[crate::plugins::host_types::Field], b: &[crate::plugins::host_types::Field]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.name == y.name && x.ty == y.ty)
    };
    if !same(&instance.info().inputs, &node.info.inputs) || !same(&instance.info().outputs, &node.info.outputs) {
        return Err("its inputs or outputs differ from the model the run started with (restart the run to change them)".into());
    }
    Ok(Loaded { version, bytes, instance })
}

/// A key group's share of a model step's state in a checkpoint: the plugin's keyed state and the
/// rows received but not scored yet (their timestamp is not complete).
#[derive(Debug, Default, Serialize, Deserialize)]
struct ModelGroupBlob {
    keys: Vec<(String, Vec<u8>)>,
    stash: Vec<(u64, Vec<Row>)>,
}

/// The plugin's state and the unscored rows, by key group.
fn snapshot(
    instance: &mut Instance,
    stash: &Stash<Row>,
    key: usize,
    group_of: impl Fn(&str) -> u32,
) -> Result<GroupedState, CallError> {
    let mut groups: BTreeMap<u32, ModelGroupBlob> = BTreeMap::new();
    for s in instance.snapshot()? {
        groups
            .entry(group_of(&s.key))
            .or_default()
            .keys
            .push((s.key, s.state));
    }
    for (&time, (_, rows)) in stash {
        for row in rows {
            let blob = groups.entry(group_of(key_of(row, key))).or_default();
            match blob.stash.last_mut() {
                Some((t, rows)) if *t == time => rows.push(row.clone()),
                _ => blob.stash.push((time, vec![row.clone()])),
            }
        }
    }
    Ok(groups
        .into_iter()
        .map(|(g, blob)| {
            let bytes = bincode::serialize(&blob).expect("model state serializes");
            (g, bytes)
        })
        .collect())
}

pub fn model_stream<'scope>(
    stream: StreamVec<'scope, u64, Row>,
    ctx: &Arc<RunContext>,
    node: &ModelNode,
    index: usize,
    input_node: usize,
    dead: Rc<RefCell<DeadLetters>>,
) -> StreamVec<'scope, u64, Row> {
    let node = node.clone();
    let incoming = node.incoming.clone();
    let key = node.input_fields[0];
    let key_groups = ctx.key_groups as u64;
    let group_of = move |k: &str| key_group(k, key_groups) as u32;
    let ctx = Arc::clone(ctx);
    let stats = ctx
        .metrics
        .part::<crate::plugins::stats::PluginMetrics>()
        .step(&node.name);
    let step_stats = ctx.metrics.step(&node.name, "model");
    let exchange = crate::worker::batches::exchange(move |r: &Row| key_group(key_of(r, key), key_groups));
    let scope = stream.scope();
    let (worker, peers) = (scope.index(), scope.peers());
    let fail = {
        let (step, path) = (node.name.clone(), node.plugin.path.display().to_string());
        move |ctx: &RunContext, what: String| {
            ctx.fail(format!("step `{step}`: plugin `{path}`: {what}"))
        }
    };
    let mut instance =
        match Instance::new(
            Arc::clone(&node.plugin),
            node.config.clone(),
            Arc::clone(&node.artifact),
            node.limits,
        ) {
            Ok(i) => Some(i),
            Err(e) => {
                fail(&ctx, e.to_string());
                None
            }
        };
    let outputs: Vec<String> = node
        .info
        .outputs
        .iter()
        .map(|f| f.name.clone())
        .collect();
    let mut cp = ctx
        .checkpoint
        .as_ref()
        .map(|c| c.participant(Role::Step, index, worker, Some(input_node)));
    // With checkpoints the first worker reads the model file; every worker swaps models when
    // the checkpoint that decided one completes.
    let first = worker == 0;
    let decider = cp.as_ref().map(|c| c.decider());
    let completed = cp.as_ref().map_or(0, |c| c.coordinator().completed_epoch());
    let mut swap = node
        .model
        .as_ref()
        .map(|m| Swap::new(m, Arc::clone(&node.artifact), completed));
    stream.unary_frontier(exchange, &format!("Model({})", node.name), move |initial, info| {
        let activator = scope.activator_for(info.address);
        let mut stash: Stash<Row> = Stash::new();
        // Restore the key groups this worker owns: the plugin's keys, then the unscored rows.
        if let (Some(cp), Some(inst)) = (cp.as_ref(), instance.as_mut()) {
            let mut states = Vec::new();
            for bytes in cp.coordinator().restored_groups(&node.name, worker, peers) {
                match bincode::deserialize::<ModelGroupBlob>(bytes) {
                    Ok(blob) => {
                        states.extend(blob.keys.into_iter().map(|(key, state)| KeyedState { key, state }));
                        for (time, rows) in blob.stash {
                            stash.entry(time).or_insert_with(|| (initial.delayed(&time), Vec::new())).1.extend(rows);
                        }
                    }
                    Err(e) => fail(&ctx, format!("restoring its state: {e}")),
                }
            }
            if !states.is_empty()
                && let Err(e) = inst.restore(states)
            {
                fail(&ctx, e.to_string());
            }
        }
        drop(initial);
        move |(input, frontier), output| {
            let mut received = 0;
            input.for_each_stamp(|cap, data| received += stash_stamp(&mut stash, cap, data));
            step_stats.records_in.fetch_add(received as u64, Relaxed);
            // Frozen while a checkpoint is in progress: nothing is scored.
            let take_snapshot = || {
                let inst = instance.as_mut()?;
                let groups = snapshot(inst, &stash, key, group_of)
                    // Without the plugin's state no checkpoint can be complete.
                    .map_err(|e| fail(&ctx, format!("snapshot for a checkpoint: {e}")))
                    .ok()?;
                // The first worker decides the model every worker scores with after this
                // checkpoint: a new one it loaded, or (at the first) the one scoring.
                if let (true, Some(swap), Some(decider)) = (first, swap.as_mut(), decider.as_ref()) {
                    if let Some(staged) = &swap.staged {
                        decider.decide(&node.name, staged.bytes.to_vec());
                    } else if !swap.announced {
                        decider.decide(&node.name, swap.bytes.to_vec());
                    }
                    swap.announced = true;
                }
                Some(groups)
            };
            if let Some(cp) = cp.as_mut()
                && cp.stateful_turn(&node.name, received, &activator, take_snapshot)
            {
                return;
            }
            if instance.is_none() {
                // The plugin failed under `on_error: fail` (or never loaded): the run is stopping
                // with its error. Holding rows (and their capabilities) would keep the dataflow
                // from ever completing, so let them go.
                stash.clear();
                if let Some(cp) = cp.as_mut() {
                    cp.finish();
                }
                return;
            }
            // A model decided at a checkpoint that completed since the last turn.
            if let (Some(c), Some(swap)) = (cp.as_ref(), swap.as_mut())
                && let Some((epoch, bytes)) = c.coordinator().decision(&node.name, swap.adopted)
            {
                match swap.adopt_decided(&node, bytes, epoch, instance.as_mut(), &stats) {
                    Ok(Some(next)) => instance = Some(next),
                    Ok(None) => {}
                    // Scoring on with the old model would mix versions in one epoch.
                    Err(e) => {
                        fail(&ctx, e);
                        instance = None;
                        stash.clear();
                        if let Some(cp) = cp.as_mut() {
                            cp.finish();
                        }
                        return;
                    }
                }
            }
            if let (Some(swap), Some(file)) = (swap.as_mut(), node.model.as_ref())
                && let Some(every) = file.reload
                && swap.checked.elapsed() >= every
                && (cp.is_none() || first)
                && (cp.is_some() || !stash.is_empty())
            {
                swap.checked = Instant::now();
                if let Some(next) = swap.load(&node, file, &stats) {
                    if cp.is_some() {
                        tracing::info!(step = %node.name, version = %next.version, "new model loaded; every worker swaps to it when the next checkpoint completes");
                        swap.staged = Some(next);
                    } else {
                        match swap.adopt(&node, next, instance.as_mut(), &stats, None) {
                            Ok(next) => instance = Some(next),
                            Err(why) => tracing::warn!(step = %node.name, model = %file.url, error = %why, "the new model is refused; the current model keeps scoring"),
                        }
                    }
                }
            }
            while let Some((&t, _)) = stash.first_key_value() {
                if frontier.frontier().iter().any(|u| *u <= t) {
                    break;
                }
                let (_, (cap, mut rows)) = stash.pop_first().expect("checked non-empty");
                // Grouped by key, each key's rows in arrival (event-time) order.
                rows.sort_by(|a, b| key_of(a, key).cmp(key_of(b, key)));
                let mut scored: Vec<Row> = Vec::with_capacity(rows.len());
                let mut rest = rows;
                while !rest.is_empty() {
                    let tail = rest.split_off(rest.len().min(node.batch_rows));
                    let mut chunk = std::mem::replace(&mut rest, tail);
                    let Some(inst) = instance.as_mut() else { return };
                    let started = Instant::now();
                    let result = inst
                        .process(columns(&node, &chunk), chunk.len())
                        .and_then(|out| append(&mut chunk, out, node.on_nan, &outputs));
                    if let (Ok(()), Some(swap)) = (&result, swap.as_ref()) {
                        let version = Value::Str(CompactString::from(swap.version.as_str()));
                        chunk.iter_mut().for_each(|r| r.push(version.clone()));
                    }
                    stats.record(started.elapsed(), chunk.len(), inst.memory_peak());
                    match result {
                        Ok(()) => scored.append(&mut chunk),
                        Err(e) => {
                            stats.errors[e.kind as usize].fetch_add(1, Relaxed);
                            let what = format!("plugin `{}`: {e}", node.info.name);
                            match node.on_error {
                                OnError::Fail => {
                                    ctx.fail(format!("step `{}`: {what}", node.name));
                                    instance = None;
                                    stash.clear();
                                    if let Some(cp) = cp.as_mut() {
                                        cp.finish();
                                    }
                                    return;
                                }
                                OnError::Skip => {
                                    stats.rows_skipped.fetch_add(chunk.len() as u64, Relaxed);
                                    tracing::warn!(step = %node.name, rows = chunk.len(), error = %what, "skipped a batch the plugin could not score");
                                }
                                OnError::DeadLetter => {
                                    let mut d = dead.borrow_mut();
                                    for r in &chunk {
                                        d.push(DeadLetter {
                                            source: &node.name,
                                            reason: RejectReason::PluginError,
                                            detail: what.clone(),
                                            raw: crate::output::dead_letter::row_json(&incoming, &r[..incoming.fields.len()]),
                                            line: 0,
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
                if !scored.is_empty() {
                    step_stats.records_out.fetch_add(scored.len() as u64, Relaxed);
                    if let Some(cp) = cp.as_ref() {
                        cp.emitted(scored.len());
                    }
                    output.session(&cap).give_iterator(scored.into_iter());
                }
            }
            if frontier.frontier().is_empty()
                && let Some(cp) = cp.as_mut()
            {
                cp.finish();
            }
        }
    })
}
