//! Loading, checking and calling plugins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store};

pub(super) mod wit {
    wasmtime::component::bindgen!({
        path: "../plugins/wit",
        world: "model",
    });
}

/// The previous contract, still run: its types are converted to the current ones
/// ([`super::legacy`]).
pub(super) mod wit02 {
    wasmtime::component::bindgen!({
        path: "../plugins/wit/v0.2",
        world: "model",
    });
}

pub use wit::tickflow::model::types::{
    Column, ColumnType, Field, KeyedState, ModelInfo, TextColumn,
};

/// The WIT package plugins are built against.
pub const WIT_PACKAGE: &str = "tickflow:model@0.3.0";
/// The packages this host runs, newest first, with the one import a plugin may have (the
/// contract's own type definitions) and the functions it must export.
const CONTRACTS: [(Contract, &str, &str, &[&str]); 2] = [
    (
        Contract::V3,
        "tickflow:model@0.3.0",
        "tickflow:model/types@0.3.0",
        &[
            "describe",
            "config-schema",
            "init",
            "process",
            "snapshot",
            "restore",
        ],
    ),
    (
        Contract::V2,
        "tickflow:model@0.2.0",
        "tickflow:model/types@0.2.0",
        &["describe", "init", "process", "snapshot", "restore"],
    ),
];

/// Which package a plugin was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `tickflow:model@0.2.0`: `init(config)`, inputs and outputs fixed by `describe`.
    V2,
    /// `tickflow:model@0.3.0`: `init(config, artifact)` answers with the instance's inputs and
    /// outputs; `config-schema`.
    V3,
}

/// A live instance's exports, of either contract.
enum Bindings {
    V3(wit::Model),
    V2(wit02::Model),
}
/// Epoch tick of the call deadlines.
const TICK: Duration = Duration::from_millis(2);

/// Why a plugin call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The call ran past its deadline.
    Timeout,
    /// The instance tried to grow its memory past the cap.
    MemoryCap,
    /// The plugin trapped (a panic, an illegal operation).
    Trap,
    /// The plugin returned an error.
    PluginError,
    /// The output does not match the declared outputs (count, types, lengths, NaN policy).
    BadOutput,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Timeout,
        ErrorKind::MemoryCap,
        ErrorKind::Trap,
        ErrorKind::PluginError,
        ErrorKind::BadOutput,
    ];
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::MemoryCap => "memory_cap",
            ErrorKind::Trap => "trap",
            ErrorKind::PluginError => "plugin_error",
            ErrorKind::BadOutput => "bad_output",
        }
    }
}

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub kind: ErrorKind,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

/// Per-instance limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(100),
            max_memory: 64 << 20,
        }
    }
}

/// The process-wide engine: component model, epoch interruption, and a thread that ticks the
/// epoch.
static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    // Compiled plugins are kept on disk (wasmtime's cache: `$TICKFLOW_PLUGIN_CACHE`, else the
    // user's cache folder), so a large plugin (the stock onnx one) is compiled once, not at
    // every `validate` and every start. Without a cache folder, plugins are compiled each time.
    let mut cache = wasmtime::CacheConfig::new();
    if let Some(dir) = std::env::var_os("TICKFLOW_PLUGIN_CACHE") {
        cache.with_directory(dir);
    }
    match wasmtime::Cache::new(cache) {
        Ok(cache) => {
            config.cache(Some(cache));
        }
        Err(e) => tracing::debug!("no plugin cache: {e:#}"),
    }
    // `perf record` can name plugin functions when this is set (writes /tmp/perf-PID.map).
    if std::env::var_os("TICKFLOW_PLUGIN_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let engine = Engine::new(&config).expect("the wasmtime configuration is valid");
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("tickflow-plugin-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning a thread");
    engine
});

static LOADED: LazyLock<Mutex<HashMap<PathBuf, Arc<Plugin>>>> = LazyLock::new(Default::default);

/// A compiled, checked plugin.
pub struct Plugin {
    pub path: PathBuf,
    /// What `describe` says (a 0.3 plugin may leave its inputs and outputs to `init`).
    pub info: ModelInfo,
    pub contract: Contract,
    /// The JSON Schema of its config, if it declares one.
    pub config_schema: Option<String>,
    /// The component's imports (only the contract's types are accepted).
    pub imports: Vec<String>,
    component: Component,
    linker: Linker<HostState>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

/// The largest plugin file read (a component is a few MiB; `/dev/zero` must not fill memory).
pub const MAX_PLUGIN_BYTES: u64 = 256 << 20;

/// Reads a plugin file, refusing what is not a regular file or is larger than
/// [`MAX_PLUGIN_BYTES`]. A missing file under `plugins/dist/` says how to build the examples.
fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound
            && path.components().any(|c| c.as_os_str() == "dist")
        {
            " (the example plugins are built by `plugins/build`: run it first)"
        } else {
            ""
        };
        format!("cannot read `{shown}`: {e}{hint}")
    })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!("`{shown}` is not a regular file"));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_PLUGIN_BYTES) as usize);
    file.take(MAX_PLUGIN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    if bytes.len() as u64 > MAX_PLUGIN_BYTES {
        return Err(format!(
            "`{shown}` is larger than {} MiB: not a plugin",
            MAX_PLUGIN_BYTES >> 20
        ));
    }
    Ok(bytes)
}

/// Loads (compiles and checks) the plugin at `path`, once per process.
pub fn load(path: &Path) -> Result<Arc<Plugin>, String> {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(p) = LOADED.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(Arc::clone(p));
    }
    let plugin = Arc::new(Plugin::compile(path)?);
    LOADED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, Arc::clone(&plugin));
    Ok(plugin)
}

impl Plugin {
    fn compile(path: &Path) -> Result<Plugin, String> {
        let shown = path.display();
        let bytes = read_capped(path)?;
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(format!("`{shown}` is not a WebAssembly file"));
        }
        // Bytes 4..8: version 1 / layer 0 is a core module, layer 1 a component.
        if bytes[6..8] == [0, 0] {
            return Err(format!(
                "`{shown}` is a core WebAssembly module, not a component: build plugins with \
                 `plugins/build` (or wrap the module with `tickflow-componentize`)"
            ));
        }
        let engine = &*ENGINE;
        let component = Component::new(engine, &bytes)
            .map_err(|e| format!("`{shown}` is not a valid component: {e:#}"))?;
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        // The contract is the package of the types it imports (a plugin that uses none of them
        // imports nothing: it is told by its exports).
        let exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let (contract, package, types_import, wanted) = CONTRACTS
            .iter()
            .copied()
            .find(|(_, _, types, _)| imports.iter().any(|i| i == types))
            .or_else(|| {
                CONTRACTS
                    .iter()
                    .copied()
                    .find(|(_, _, _, wanted)| wanted.iter().all(|w| exports.iter().any(|e| e == w)))
            })
            .unwrap_or(CONTRACTS[0]);
        let refused: Vec<&String> = imports.iter().filter(|n| *n != types_import).collect();
        if let Some(name) = refused.first() {
            let list = refused
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            if let Some(rest) = name.strip_prefix("tickflow:model/") {
                let version = rest.split('@').nth(1).unwrap_or("?");
                let known: Vec<&str> = CONTRACTS.iter().map(|c| c.1).collect();
                return Err(format!(
                    "`{shown}` was built for tickflow:model@{version}; this tickflow runs {}: \
                     rebuild it with the matching tickflow-plugin",
                    known.join(" and ")
                ));
            }
            if refused.iter().any(|n| n.starts_with("wasi:")) {
                return Err(format!(
                    "`{shown}` imports WASI ({list}): plugins get no WASI capability (files, \
                     network, clock, environment); build it for wasm32-unknown-unknown without them"
                ));
            }
            return Err(format!(
                "`{shown}` imports {list}, which tickflow does not provide (plugins may import \
                 nothing)"
            ));
        }
        for want in wanted {
            if !exports.iter().any(|e| e == want) {
                return Err(format!(
                    "`{shown}` does not export `{want}`: not a {package} model (exports: {})",
                    if exports.is_empty() {
                        "none".to_string()
                    } else {
                        exports.join(", ")
                    }
                ));
            }
        }
        let mut linker = Linker::new(engine);
        if imports.iter().any(|i| i == types_import) {
            // Type definitions only: an empty instance satisfies the import.
            linker
                .instance(types_import)
                .map_err(|e| format!("preparing `{shown}`: {e:#}"))?;
        }
        let mut plugin = Plugin {
            path: path.to_path_buf(),
            info: ModelInfo {
                name: String::new(),
                version: String::new(),
                inputs: Vec::new(),
                outputs: Vec::new(),
            },
            contract,
            config_schema: None,
            imports,
            component,
            linker,
        };
        let (mut store, bindings) = plugin
            .instantiate(Limits::default())
            .map_err(|e| format!("`{shown}`: {e}"))?;
        let timeout = Limits::default().timeout;
        let info = call(&mut store, timeout, |s| bindings.describe(s))
            .map_err(|e| format!("`{shown}`: describe: {e}"))?;
        plugin.config_schema = call(&mut store, timeout, |s| bindings.config_schema(s))
            .map_err(|e| format!("`{shown}`: config-schema: {e}"))?;
        // A 0.3 plugin may leave its fields to `init`; what it declares is checked here.
        if contract == Contract::V2 || !info.inputs.is_empty() || !info.outputs.is_empty() {
            check_fields(&info).map_err(|e| format!("`{shown}` {e}"))?;
        }
        plugin.info = info;
        Ok(plugin)
    }

    fn instantiate(&self, limits: Limits) -> Result<(Store<HostState>, Bindings), CallError> {
        let mut store = Store::new(
            &ENGINE,
            HostState {
                max_memory: limits.max_memory,
                memory: 0,
                peak: 0,
                hit_cap: false,
                cap_message: String::new(),
            },
        );
        store.limiter(|s| s);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks(limits.timeout));
        let bindings = match self.contract {
            Contract::V3 => {
                wit::Model::instantiate(&mut store, &self.component, &self.linker).map(Bindings::V3)
            }
            Contract::V2 => wit02::Model::instantiate(&mut store, &self.component, &self.linker)
                .map(Bindings::V2),
        }
        .map_err(|e| classify(e, &store))?;
        Ok((store, bindings))
    }

    pub fn describe_type(ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::Float64 => "float64",
            ColumnType::Int64 => "int64",
            ColumnType::Text => "text",
            ColumnType::TimestampMs => "timestamp",
        }
    }
}

fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_micros() / TICK.as_micros()).max(1) as u64 + 1
}

/// What the store keeps: the memory cap and what was used.
struct HostState {
    max_memory: usize,
    memory: usize,
    peak: usize,
    hit_cap: bool,
    cap_message: String,
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory - current.min(self.memory) + desired;
        if total > self.max_memory {
            self.hit_cap = true;
            self.cap_message = format!(
                "memory cap of {} MiB reached (asked for {} MiB)",
                self.max_memory >> 20,
                total.div_ceil(1 << 20)
            );
            return Err(wasmtime::Error::msg(self.cap_message.clone()));
        }
        self.memory = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

fn classify(e: wasmtime::Error, store: &Store<HostState>) -> CallError {
    let kind = if store.data().hit_cap {
        ErrorKind::MemoryCap
    } else if matches!(
        e.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        ErrorKind::Timeout
    } else {
        ErrorKind::Trap
    };
    let message = match kind {
        ErrorKind::Timeout => "the call ran past its deadline".to_string(),
        ErrorKind::MemoryCap => store.data().cap_message.clone(),
        _ => match e.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => format!("the plugin trapped: {trap}"),
            None => e.root_cause().to_string(),
        },
    };
    CallError { kind, message }
}

fn call<T>(
    store: &mut Store<HostState>,
    timeout: Duration,
    f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<T>,
) -> Result<T, CallError> {
    store.set_epoch_deadline(deadline_ticks(timeout));
    let result = f(store);
    result.map_err(|e| classify(e, store))
}

/// One worker's instance of a plugin.
pub struct Instance {
    pub plugin: Arc<Plugin>,
    config: String,
    /// The bytes of the step's `model:` file (empty without one).
    artifact: Arc<[u8]>,
    limits: Limits,
    /// Its inputs and outputs, as `init` answered.
    info: ModelInfo,
    live: Option<(Store<HostState>, Bindings)>,
    /// Instances rebuilt after a trap.
    pub rebuilt: u64,
}

impl Instance {
    /// Instantiates the plugin and calls `init(config, artifact)`.
    pub fn new(
        plugin: Arc<Plugin>,
        config: String,
        artifact: Arc<[u8]>,
        limits: Limits,
    ) -> Result<Instance, CallError> {
        let info = plugin.info.clone();
        let mut instance = Instance {
            plugin,
            config,
            artifact,
            limits,
            info,
            live: None,
            rebuilt: 0,
        };
        instance.ensure_live()?;
        Ok(instance)
    }

    /// Its inputs (the first is the key) and outputs.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn ensure_live(&mut self) -> Result<(), CallError> {
        if self.live.is_some() {
            return Ok(());
        }
        let (mut store, bindings) = self.plugin.instantiate(self.limits)?;
        let (config, artifact) = (self.config.clone(), Arc::clone(&self.artifact));
        let described = &self.plugin.info;
        let info = call(&mut store, self.limits.timeout, |s| {
            bindings.init(s, &config, &artifact, described)
        })?
        .map_err(|message| CallError {
            kind: ErrorKind::PluginError,
            message: format!("init: {message}"),
        })?;
        check_fields(&info).map_err(|message| CallError {
            kind: ErrorKind::BadOutput,
            message: format!("init: {message}"),
        })?;
        self.info = info;
        self.live = Some((store, bindings));
        Ok(())
    }

    /// Peak linear memory of the live instance, in bytes.
    pub fn memory_peak(&self) -> usize {
        self.live.as_ref().map(|(s, _)| s.data().peak).unwrap_or(0)
    }

    /// Scores `rows` rows given in `columns`; checks the output against the declared outputs.
    pub fn process(&mut self, columns: Vec<Column>, rows: usize) -> Result<Vec<Column>, CallError> {
        self.ensure_live()?;
        let (store, bindings) = self.live.as_mut().expect("made live above");
        let batch = wit::tickflow::model::types::Batch { columns };
        let result = call(store, self.limits.timeout, |s| bindings.process(s, batch));
        let out = match result {
            Ok(Ok(out)) => out,
            Ok(Err(message)) => {
                return Err(CallError {
                    kind: ErrorKind::PluginError,
                    message,
                });
            }
            Err(e) => {
                // A trapped instance cannot be entered again: the next call gets a new one.
                self.live = None;
                self.rebuilt += 1;
                return Err(e);
            }
        };
        check_output(&self.info.outputs, &out, rows)?;
        Ok(out)
    }

    /// The state of every key (empty when the plugin keeps none).
    pub fn snapshot(&mut self) -> Result<Vec<KeyedState>, CallError> {
        self.ensure_live()?;
        let (store, bindings) = self.live.as_mut().expect("made live above");
        call(store, self.limits.timeout, |s| bindings.snapshot(s))
    }

    /// Loads keys' state.
    pub fn restore(&mut self, states: Vec<KeyedState>) -> Result<(), CallError> {
        self.ensure_live()?;
        let (store, bindings) = self.live.as_mut().expect("made live above");
        call(store, self.limits.timeout, |s| bindings.restore(s, states))?.map_err(|message| {
            CallError {
                kind: ErrorKind::PluginError,
                message: format!("restore: {message}"),
            }
        })
    }
}

/// Inputs and outputs a model step can use: the key (text) first, at least one output, no
/// name twice.
fn check_fields(info: &ModelInfo) -> Result<(), String> {
    if info.inputs.first().is_none_or(|f| f.ty != ColumnType::Text) {
        return Err(format!(
            "declares {}: the first input must be the key (text)",
            match info.inputs.first() {
                Some(f) => format!("`{}` ({}) first", f.name, Plugin::describe_type(f.ty)),
                None => "no inputs".into(),
            }
        ));
    }
    if info.outputs.is_empty() {
        return Err("declares no outputs".into());
    }
    for fields in [&info.inputs, &info.outputs] {
        for (i, f) in fields.iter().enumerate() {
            if fields[..i].iter().any(|g| g.name == f.name) {
                return Err(format!("declares `{}` twice", f.name));
            }
        }
    }
    Ok(())
}

impl Bindings {
    fn describe(&self, s: &mut Store<HostState>) -> wasmtime::Result<ModelInfo> {
        match self {
            Bindings::V3(b) => b.call_describe(s),
            Bindings::V2(b) => b.call_describe(s).map(super::legacy::info),
        }
    }

    fn config_schema(&self, s: &mut Store<HostState>) -> wasmtime::Result<Option<String>> {
        match self {
            Bindings::V3(b) => b.call_config_schema(s),
            Bindings::V2(_) => Ok(None),
        }
    }

    /// A 0.2 plugin's fields are what it described; it takes no artifact.
    fn init(
        &self,
        s: &mut Store<HostState>,
        config: &str,
        artifact: &[u8],
        described: &ModelInfo,
    ) -> wasmtime::Result<Result<ModelInfo, String>> {
        match self {
            Bindings::V3(b) => b.call_init(s, config, artifact),
            Bindings::V2(_) if !artifact.is_empty() => Ok(Err(
                "the plugin was built for tickflow:model@0.2.0, which takes no `model:` file"
                    .into(),
            )),
            Bindings::V2(b) => Ok(b.call_init(s, config)?.map(|()| described.clone())),
        }
    }

    fn process(
        &self,
        s: &mut Store<HostState>,
        batch: wit::tickflow::model::types::Batch,
    ) -> wasmtime::Result<Result<Vec<Column>, String>> {
        match self {
            Bindings::V3(b) => b.call_process(s, &batch),
            Bindings::V2(b) => Ok(b
                .call_process(s, &super::legacy::batch(batch))?
                .map(|cols| cols.into_iter().map(super::legacy::column).collect())),
        }
    }

    fn snapshot(&self, s: &mut Store<HostState>) -> wasmtime::Result<Vec<KeyedState>> {
        match self {
            Bindings::V3(b) => b.call_snapshot(s),
            Bindings::V2(b) => Ok(b
                .call_snapshot(s)?
                .into_iter()
                .map(|k| KeyedState {
                    key: k.key,
                    state: k.state,
                })
                .collect()),
        }
    }

    fn restore(
        &self,
        s: &mut Store<HostState>,
        states: Vec<KeyedState>,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Bindings::V3(b) => b.call_restore(s, &states),
            Bindings::V2(b) => {
                let states: Vec<_> = states
                    .into_iter()
                    .map(|k| wit02::tickflow::model::types::KeyedState {
                        key: k.key,
                        state: k.state,
                    })
                    .collect();
                b.call_restore(s, &states)
            }
        }
    }
}

fn column_type(c: &Column) -> ColumnType {
    match c {
        Column::Float64(_) => ColumnType::Float64,
        Column::Int64(_) => ColumnType::Int64,
        Column::Text(_) => ColumnType::Text,
        Column::TimestampMs(_) => ColumnType::TimestampMs,
    }
}

pub fn column_len(c: &Column) -> usize {
    match c {
        Column::Float64(v) => v.len(),
        Column::Int64(v) | Column::TimestampMs(v) => v.len(),
        Column::Text(t) => t.ends.len(),
    }
}

/// A text column from values.
pub fn text_column<'a>(values: impl IntoIterator<Item = &'a str>) -> Column {
    let mut data = String::new();
    let mut ends = Vec::new();
    for v in values {
        data.push_str(v);
        ends.push(data.len() as u32);
    }
    Column::Text(TextColumn { data, ends })
}

/// The values of a text column (checked by `check_output` for what a plugin returns).
pub fn text_values(t: &TextColumn) -> impl Iterator<Item = &str> {
    let mut start = 0usize;
    t.ends.iter().map(move |&end| {
        let v = t.data.get(start..end as usize).unwrap_or("");
        start = end as usize;
        v
    })
}

/// Whether a text column's offsets are in order, within its data and on character boundaries.
fn text_column_valid(t: &TextColumn) -> bool {
    let mut start = 0usize;
    t.ends.iter().all(|&end| {
        let end = end as usize;
        let ok = end >= start && t.data.get(start..end).is_some();
        start = end;
        ok
    })
}

fn check_output(declared: &[Field], out: &[Column], rows: usize) -> Result<(), CallError> {
    let bad = |message: String| CallError {
        kind: ErrorKind::BadOutput,
        message,
    };
    if out.len() != declared.len() {
        return Err(bad(format!(
            "returned {} columns, declared {}",
            out.len(),
            declared.len()
        )));
    }
    for (f, c) in declared.iter().zip(out) {
        if column_type(c) != f.ty {
            return Err(bad(format!(
                "column `{}` is {}, declared {}",
                f.name,
                Plugin::describe_type(column_type(c)),
                Plugin::describe_type(f.ty)
            )));
        }
        if let Column::Text(t) = c
            && !text_column_valid(t)
        {
            return Err(bad(format!(
                "text column `{}` has offsets out of order, past its data or inside a character",
                f.name
            )));
        }
        if column_len(c) != rows {
            return Err(bad(format!(
                "column `{}` has {} values for {rows} rows",
                f.name,
                column_len(c)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_columns_round_trip_and_bad_offsets_are_bad_output() {
        let c = text_column(["AAPL", "", "ÉTÉ"]);
        let Column::Text(t) = &c else { panic!() };
        assert_eq!(text_values(t).collect::<Vec<_>>(), ["AAPL", "", "ÉTÉ"]);
        let declared = [Field {
            name: "k".into(),
            ty: ColumnType::Text,
        }];
        assert!(check_output(&declared, std::slice::from_ref(&c), 3).is_ok());
        for ends in [vec![4, 2, 9], vec![4, 4, 99], vec![1, 4, 5]] {
            // Out of order; past the data; inside `É` (two bytes).
            let data = if ends[0] == 1 {
                "ÉAAPL".into()
            } else {
                t.data.clone()
            };
            let bad = Column::Text(TextColumn { data, ends });
            let e = check_output(&declared, &[bad], 3).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadOutput, "{}", e.message);
        }
    }
}
