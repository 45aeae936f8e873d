//! From a parsed spec to a typed graph: names resolved, inputs connected, field names and types
//! checked through every step, window parameters checked. Errors carry dotted paths that the
//! spec loader turns into `FILE:LINE:COL`.

pub mod graph;

use std::collections::HashSet;

use crate::dataflow::window::config::{
    AggregateFn, PartialWindows, WindowEngine, WindowSpec, WindowStepConfig,
};
use crate::record::{Field, FieldType, Schema};
use crate::sinks::SinkSpec;
use crate::sinks::dead_letter::config::DeadLetterSpec;
use crate::sources::{ReplayConfig, SourceSpec};
use crate::spec::diagnostic::suggest;
use crate::spec::{Diagnostic, LoadedSpec, SpecErrors, StepSpec};

/// The most hopping windows one record may belong to (`size / slide`): each costs state and a
/// row per window, so `size: 1d, slide: 1ms` (86 million) is refused at validation.
pub const MAX_WINDOWS_PER_RECORD: i64 = 10_000;

/// Where a stream comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRef {
    Source(usize),
    Window(usize),
    /// A model (plugin) step.
    Model(usize),
}

impl NodeRef {
    /// The node's number when sources, windows and models are counted together, in that order
    /// (how checkpoints count records per node).
    pub fn node_index(self, sources: usize, windows: usize) -> usize {
        match self {
            NodeRef::Source(s) => s,
            NodeRef::Window(w) => sources + w,
            NodeRef::Model(m) => sources + windows + m,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceNode {
    pub name: String,
    pub config: SourceSpec,
    pub schema: Schema,
    /// Granularity (ms) of the dataflow timestamps this source emits: the coarsest that still
    /// fires every downstream window on time.
    pub time_quantum_ms: u64,
}

impl SourceNode {
    pub fn max_out_of_orderness_ms(&self) -> i64 {
        self.config.max_out_of_orderness_ms()
    }
}

/// Numeric trade fields an aggregate can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeField {
    Price,
    Volume,
}

#[derive(Debug, Clone)]
pub struct AggregatePlan {
    pub name: String,
    pub func: AggregateFn,
    pub field: TradeField,
}

/// Window shape in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling { size: i64 },
    Hopping { size: i64, slide: i64 },
    Session { gap: i64 },
}

#[derive(Debug, Clone)]
pub struct WindowNode {
    pub name: String,
    pub input: usize,
    pub kind: WindowKind,
    pub allowed_lateness_ms: i64,
    pub aggregates: Vec<AggregatePlan>,
    /// `key`, `window_start`, `window_end`, the aggregates, then `revision` when late records
    /// can revise a window.
    pub schema: Schema,
    /// Whether differential dataflow maintains the windows (else the timely operator).
    pub differential: bool,
    /// Windows that started before the run are not emitted (a live input, `partial_windows:
    /// skip`).
    pub skip_partial: bool,
}

#[derive(Debug, Clone)]
pub struct SinkNode {
    pub name: String,
    pub input: NodeRef,
    pub config: SinkSpec,
    pub schema: Schema,
    /// Index of the timestamp field used for `date`/`hour` partitions.
    pub partition_time_index: Option<usize>,
}

/// A model step: rows scored by a plugin, out with the plugin's columns appended.
#[derive(Debug, Clone)]
pub struct ModelNode {
    pub name: String,
    pub input: NodeRef,
    pub plugin: std::sync::Arc<crate::plugins::Plugin>,
    /// For each plugin input, the index of the incoming field it reads (the first is the key).
    pub input_fields: Vec<usize>,
    /// The incoming fields, then the plugin's outputs.
    pub schema: Schema,
    pub config: String,
    pub limits: crate::plugins::Limits,
    pub on_error: crate::plugins::config::OnError,
    pub on_nan: crate::plugins::config::OnNan,
    pub batch_rows: usize,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub sources: Vec<SourceNode>,
    pub windows: Vec<WindowNode>,
    pub models: Vec<ModelNode>,
    pub sinks: Vec<SinkNode>,
    pub dead_letters: Option<DeadLetterSpec>,
    pub checkpoints: Option<crate::checkpoint::CheckpointSpec>,
    pub metrics: Option<crate::spec::model::MetricsSpec>,
    /// Key groups: windows route keys by `hash mod key_groups`, and workers own groups
    /// `mod workers`.
    pub key_groups: u32,
}

impl Plan {
    pub fn schema_of(&self, node: NodeRef) -> &Schema {
        match node {
            NodeRef::Source(i) => &self.sources[i].schema,
            NodeRef::Window(i) => &self.windows[i].schema,
            NodeRef::Model(i) => &self.models[i].schema,
        }
    }
    pub fn name_of(&self, node: NodeRef) -> &str {
        match node {
            NodeRef::Source(i) => &self.sources[i].name,
            NodeRef::Window(i) => &self.windows[i].name,
            NodeRef::Model(i) => &self.models[i].name,
        }
    }
}

/// Plans a loaded spec, reporting every problem at once.
pub fn build(loaded: &LoadedSpec) -> Result<Plan, SpecErrors> {
    let mut diags = Vec::new();
    let plan = plan(&loaded.spec, &mut diags);
    if diags.is_empty() && loaded.pending.is_empty() {
        Ok(plan)
    } else {
        Err(loaded.locate(diags))
    }
}

fn plan(spec: &crate::spec::PipelineSpec, diags: &mut Vec<Diagnostic>) -> Plan {
    let mut err = |path: String, msg: String| diags.push(Diagnostic::new(path, msg));
    if spec.sources.is_empty() {
        err(
            "sources".into(),
            "a pipeline needs at least one source".into(),
        );
    }
    if spec.sinks.is_empty() {
        err("sinks".into(), "a pipeline needs at least one sink".into());
    }
    let mut seen = HashSet::new();
    for (section, names) in [
        ("sources", spec.sources.keys().collect::<Vec<_>>()),
        ("steps", spec.steps.keys().collect()),
        ("sinks", spec.sinks.keys().collect()),
    ] {
        for name in names {
            if !seen.insert(name.as_str()) {
                err(
                    format!("{section}.{name}"),
                    format!(
                        "the name `{name}` is used twice; sources, steps and sinks share one namespace"
                    ),
                );
            }
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                err(
                    format!("{section}.{name}"),
                    format!("invalid name `{name}`: use letters, digits, `_` and `-`"),
                );
            }
        }
    }

    // Sources.
    let mut sources: Vec<SourceNode> = Vec::new();
    for (name, cfg) in &spec.sources {
        match cfg {
            SourceSpec::Replay(ReplayConfig {
                path,
                speed,
                max_out_of_orderness,
                ..
            }) => {
                let p = format!("sources.{name}");
                if path.trim().is_empty() {
                    err(format!("{p}.path"), "the replay file path is empty".into());
                } else if path.starts_with("gs://") {
                    // Checked when the run opens it (credentials and network are run-time).
                    if crate::sinks::gcs::object_url(path).is_none() {
                        err(
                            format!("{p}.path"),
                            format!("`{path}`: expected gs://BUCKET/PATH of an object"),
                        );
                    }
                } else if let Some(scheme) = path.split_once("://").map(|(s, _)| s)
                    && scheme != "file"
                {
                    err(
                        format!("{p}.path"),
                        format!(
                            "unsupported scheme `{scheme}://` (a replay reads a local path, file:// or gs://)"
                        ),
                    );
                } else if let Err(e) =
                    std::fs::metadata(path.strip_prefix("file://").unwrap_or(path))
                {
                    err(format!("{p}.path"), format!("cannot open `{path}`: {e}"));
                }
                if !speed.is_finite() || *speed < 0.0 {
                    err(
                        format!("{p}.speed"),
                        format!(
                            "speed must be 0 (as fast as possible) or a positive factor, got {speed}"
                        ),
                    );
                }
                if max_out_of_orderness.as_millis() < 0 {
                    err(
                        format!("{p}.max_out_of_orderness"),
                        "must not be negative".into(),
                    );
                }
            }
            SourceSpec::Finnhub(c) => check_finnhub(&format!("sources.{name}"), c, &mut err),
            SourceSpec::Kafka(c) => {
                let p = format!("sources.{name}");
                if c.brokers.trim().is_empty() {
                    err(
                        format!("{p}.brokers"),
                        "no Kafka brokers given (e.g. `127.0.0.1:9092`)".into(),
                    );
                }
                check_topic(&format!("{p}.topic"), &c.topic, &mut err);
                if c.group_id.trim().is_empty() {
                    err(format!("{p}.group_id"), "must not be empty".into());
                }
                if c.max_out_of_orderness.as_millis() < 0 {
                    err(
                        format!("{p}.max_out_of_orderness"),
                        "must not be negative".into(),
                    );
                }
                if c.idle_timeout.as_millis() <= 0 {
                    err(format!("{p}.idle_timeout"), "must be positive".into());
                }
            }
        }
        sources.push(SourceNode {
            name: name.clone(),
            config: cfg.clone(),
            schema: Schema::trades(),
            time_quantum_ms: 1000,
        });
    }

    // Steps: resolve inputs (windows read trades from sources), detect cycles among steps.
    let step_names: Vec<&str> = spec.steps.keys().map(String::as_str).collect();
    let all_names: Vec<&str> = spec
        .sources
        .keys()
        .chain(spec.steps.keys())
        .map(String::as_str)
        .collect();
    for name in spec.steps.keys() {
        if let Some(cycle) = find_cycle(spec, name) {
            err(
                format!("steps.{name}.input"),
                format!("steps form a cycle: {}", cycle.join(" → ")),
            );
        }
    }
    let mut windows: Vec<WindowNode> = Vec::new();
    for (name, step) in &spec.steps {
        let StepSpec::Window(cfg) = step else {
            continue;
        };
        let p = format!("steps.{name}");
        let input = if let Some(i) = spec.sources.get_index_of(&cfg.input) {
            Some(i)
        } else if step_names.contains(&cfg.input.as_str()) {
            err(
                format!("{p}.input"),
                format!(
                    "window steps read trades from a source; `{}` is a step (chaining windows is not supported yet)",
                    cfg.input
                ),
            );
            None
        } else {
            err(
                format!("{p}.input"),
                format!(
                    "unknown input `{}`{}",
                    cfg.input,
                    suggest(&cfg.input, all_names.iter().copied())
                ),
            );
            None
        };
        let live = input.is_some_and(|i| matches!(sources[i].config, SourceSpec::Finnhub(_)));
        if let Some(node) = plan_window(name, cfg, input.unwrap_or(0), live, &mut err) {
            windows.push(node);
        }
    }

    // Model steps read windows or earlier model steps.
    let mut models: Vec<ModelNode> = Vec::new();
    for (name, step) in &spec.steps {
        let StepSpec::Model(cfg) = step else {
            continue;
        };
        let p = format!("steps.{name}");
        let input = if let Some(i) = windows.iter().position(|w| w.name == cfg.input) {
            Some(NodeRef::Window(i))
        } else if let Some(i) = models.iter().position(|m| m.name == cfg.input) {
            Some(NodeRef::Model(i))
        } else if spec.sources.contains_key(&cfg.input) {
            err(
                format!("{p}.input"),
                format!(
                    "model steps score rows of a window or model step; `{}` is a source",
                    cfg.input
                ),
            );
            None
        } else if let Some(at) = spec.steps.get_index_of(&cfg.input) {
            // An earlier step that failed to plan has its own error already.
            if at > spec.steps.get_index_of(name).unwrap_or(0) {
                err(
                    format!("{p}.input"),
                    format!("`{}` must come before `{name}` in `steps`", cfg.input),
                );
            }
            None
        } else {
            err(
                format!("{p}.input"),
                format!(
                    "unknown input `{}`{}",
                    cfg.input,
                    suggest(&cfg.input, all_names.iter().copied())
                ),
            );
            None
        };
        let incoming = input.map(|i| match i {
            NodeRef::Source(s) => sources[s].schema.clone(),
            NodeRef::Window(w) => windows[w].schema.clone(),
            NodeRef::Model(m) => models[m].schema.clone(),
        });
        if let Some(node) =
            crate::plugins::operator::plan_model(name, cfg, input, incoming, &mut err)
        {
            models.push(node);
        }
    }

    // Time quantum per source: gcd of the window boundaries that read it.
    for (i, src) in sources.iter_mut().enumerate() {
        let mut q: u64 = 0;
        for w in windows.iter().filter(|w| w.input == i) {
            let step = match w.kind {
                WindowKind::Tumbling { size } => size as u64,
                WindowKind::Hopping { size, slide } => gcd(size as u64, slide as u64),
                WindowKind::Session { .. } => 1000,
            };
            q = gcd(q, step.max(1));
        }
        src.time_quantum_ms = if q == 0 { 1000 } else { q };
    }

    // Sinks.
    let mut sinks = Vec::new();
    for (name, sink) in &spec.sinks {
        let p = format!("sinks.{name}");
        let input_name = sink.input();
        let input = if let Some(i) = spec.sources.get_index_of(input_name) {
            Some(NodeRef::Source(i))
        } else if let Some(i) = windows.iter().position(|w| w.name == input_name) {
            Some(NodeRef::Window(i))
        } else if let Some(i) = models.iter().position(|m| m.name == input_name) {
            Some(NodeRef::Model(i))
        } else {
            if !step_names.contains(&input_name) {
                err(
                    format!("{p}.input"),
                    format!(
                        "unknown input `{input_name}`{}",
                        suggest(input_name, all_names.iter().copied())
                    ),
                );
            }
            None
        };
        let mut partition_time_index = None;
        match sink {
            SinkSpec::Kafka(cfg) => {
                if cfg.brokers.trim().is_empty() {
                    err(
                        format!("{p}.brokers"),
                        "no Kafka brokers given (e.g. `127.0.0.1:9092`)".into(),
                    );
                }
                check_topic(&format!("{p}.topic"), &cfg.topic, &mut err);
                if cfg.delivery_timeout.as_millis() <= 0 {
                    err(format!("{p}.delivery_timeout"), "must be positive".into());
                }
                if let Some(NodeRef::Window(_) | NodeRef::Model(_)) = input {
                    err(
                        format!("{p}.input"),
                        format!(
                            "a kafka sink writes trades: `{input_name}` is a step (write its rows to a parquet sink)"
                        ),
                    );
                    continue;
                }
            }
            SinkSpec::Parquet(cfg) => {
                if cfg.path.trim().is_empty() {
                    err(format!("{p}.path"), "the output path is empty".into());
                }
                if !(1..=22).contains(&cfg.zstd_level) {
                    err(
                        format!("{p}.zstd_level"),
                        format!(
                            "zstd level must be between 1 and 22, got {}",
                            cfg.zstd_level
                        ),
                    );
                }
                if cfg.rolling.max_rows == 0 {
                    err(format!("{p}.rolling.max_rows"), "must be at least 1".into());
                }
                if cfg.rolling.max_bytes.0 == 0 {
                    err(
                        format!("{p}.rolling.max_bytes"),
                        "must be at least 1B (e.g. 128MiB)".into(),
                    );
                }
                if cfg.rolling.max_age.as_millis() <= 0 {
                    err(format!("{p}.rolling.max_age"), "must be positive".into());
                }
                let Some(input) = input else { continue };
                let schema = match input {
                    NodeRef::Source(i) => &sources[i].schema,
                    NodeRef::Window(i) => &windows[i].schema,
                    NodeRef::Model(i) => &models[i].schema,
                };
                let time_field = cfg
                    .partition_time_field
                    .clone()
                    .unwrap_or_else(|| match input {
                        NodeRef::Source(_) => "timestamp".to_string(),
                        NodeRef::Window(_) | NodeRef::Model(_) => "window_start".to_string(),
                    });
                for (k, part) in cfg.partition_by.iter().enumerate() {
                    match part.as_str() {
                        "date" | "hour" => match schema.field(&time_field) {
                            Some(f) if f.ty == FieldType::Timestamp => {
                                partition_time_index = schema.index_of(&time_field)
                            }
                            Some(f) => err(
                                format!("{p}.partition_time_field"),
                                format!(
                                    "`{time_field}` is a {}, `date`/`hour` partitions need a timestamp field",
                                    f.ty.name()
                                ),
                            ),
                            None => err(
                                format!("{p}.partition_time_field"),
                                format!(
                                    "unknown field `{time_field}`{}",
                                    suggest(&time_field, schema.names())
                                ),
                            ),
                        },
                        other => match schema.field(other) {
                            Some(f) if f.ty == FieldType::Utf8 => {}
                            Some(f) => err(
                                format!("{p}.partition_by.{k}"),
                                format!(
                                    "cannot partition by `{other}` ({}): use `date`, `hour` or a string field",
                                    f.ty.name()
                                ),
                            ),
                            None => err(
                                format!("{p}.partition_by.{k}"),
                                format!(
                                    "unknown partition `{other}`{}",
                                    suggest(
                                        other,
                                        ["date", "hour"].into_iter().chain(schema.names())
                                    )
                                ),
                            ),
                        },
                    }
                }
            }
        }
        let Some(input) = input else { continue };
        let schema = match input {
            NodeRef::Source(i) => sources[i].schema.clone(),
            NodeRef::Window(i) => windows[i].schema.clone(),
            NodeRef::Model(i) => models[i].schema.clone(),
        };
        sinks.push(SinkNode {
            name: name.clone(),
            input,
            config: sink.clone(),
            schema,
            partition_time_index,
        });
    }
    if let Some(dl) = &spec.dead_letters
        && dl.path.trim().is_empty()
    {
        err(
            "dead_letters.path".into(),
            "the dead-letter path is empty".into(),
        );
    }
    overlapping_folders(spec, &mut err);
    if let Some(c) = &spec.checkpoints {
        if c.path.trim().is_empty() {
            err(
                "checkpoints.path".into(),
                "the checkpoint path is empty".into(),
            );
        }
        if c.interval.as_millis() <= 0 {
            err("checkpoints.interval".into(), "must be positive".into());
        }
        if c.key_groups == 0 || c.key_groups > 32_768 {
            err(
                "checkpoints.key_groups".into(),
                format!("must be between 1 and 32768, got {}", c.key_groups),
            );
        }
        for (name, s) in &spec.sources {
            if !matches!(s, SourceSpec::Kafka(_)) {
                err(
                    format!("sources.{name}.type"),
                    format!(
                        "checkpoints need sources that can rewind: `{}` cannot (use a kafka source, or remove `checkpoints`)",
                        s.type_name()
                    ),
                );
            }
        }
        for w in &windows {
            if w.differential {
                err(
                    format!("steps.{}.engine", w.name),
                    "checkpoints support the timely engine only (use `engine: auto` or `timely`)"
                        .into(),
                );
            }
        }
    }
    if let Some(m) = &spec.metrics
        && let Err(message) = crate::metrics::server::check_addr(&m.addr)
    {
        err("metrics.addr".into(), message);
    }
    let key_groups = spec
        .checkpoints
        .as_ref()
        .map(|c| c.key_groups)
        .filter(|g| *g > 0)
        .unwrap_or(crate::checkpoint::config::default_key_groups());
    Plan {
        name: spec.name.clone(),
        sources,
        windows,
        models,
        sinks,
        dead_letters: spec.dead_letters.clone(),
        checkpoints: spec.checkpoints.clone(),
        metrics: spec.metrics.clone(),
        key_groups,
    }
}

fn plan_window(
    name: &str,
    cfg: &WindowStepConfig,
    input: usize,
    live: bool,
    err: &mut impl FnMut(String, String),
) -> Option<WindowNode> {
    let p = format!("steps.{name}");
    let trades = Schema::trades();
    let mut ok = true;
    match trades.field(&cfg.key) {
        Some(f) if f.ty == FieldType::Utf8 => {}
        Some(f) => {
            err(
                format!("{p}.key"),
                format!(
                    "cannot group by `{}` ({}): the key must be a string field",
                    cfg.key,
                    f.ty.name()
                ),
            );
            ok = false;
        }
        None => {
            err(
                format!("{p}.key"),
                format!(
                    "unknown field `{}`{}",
                    cfg.key,
                    suggest(&cfg.key, trades.names())
                ),
            );
            ok = false;
        }
    }
    let positive =
        |d: crate::spec::units::Duration, field: &str, err: &mut dyn FnMut(String, String)| {
            if d.as_millis() <= 0 {
                err(
                    format!("{p}.window.{field}"),
                    format!("must be positive, got {d}"),
                );
                false
            } else {
                true
            }
        };
    let kind = match cfg.window {
        WindowSpec::Tumbling { size } => {
            ok &= positive(size, "size", err);
            WindowKind::Tumbling {
                size: size.as_millis(),
            }
        }
        WindowSpec::Hopping { size, slide } => {
            ok &= positive(size, "size", err) & positive(slide, "slide", err);
            if slide > size {
                err(
                    format!("{p}.window.slide"),
                    format!("slide ({slide}) must not exceed size ({size})"),
                );
                ok = false;
            } else if slide.as_millis() > 0
                && size.as_millis() / slide.as_millis() > MAX_WINDOWS_PER_RECORD
            {
                err(
                    format!("{p}.window.slide"),
                    format!(
                        "every record would belong to {} windows (size {size} / slide {slide}); at most {MAX_WINDOWS_PER_RECORD} are allowed: use a larger slide or a smaller size",
                        size.as_millis() / slide.as_millis()
                    ),
                );
                ok = false;
            }
            WindowKind::Hopping {
                size: size.as_millis(),
                slide: slide.as_millis(),
            }
        }
        WindowSpec::Session { gap } => {
            ok &= positive(gap, "gap", err);
            if cfg.allowed_lateness.as_millis() > 0 {
                err(
                    format!("{p}.allowed_lateness"),
                    "allowed_lateness is not supported for session windows yet; use 0s".into(),
                );
                ok = false;
            }
            WindowKind::Session {
                gap: gap.as_millis(),
            }
        }
    };
    if cfg.allowed_lateness.as_millis() < 0 {
        err(
            format!("{p}.allowed_lateness"),
            "must not be negative".into(),
        );
    }
    if cfg.aggregates.is_empty() {
        err(
            format!("{p}.aggregates"),
            "a window needs at least one aggregate".into(),
        );
        ok = false;
    }
    let revisions = cfg.allowed_lateness.as_millis() > 0;
    let mut fields = vec![
        Field::new(&cfg.key, FieldType::Utf8, false),
        Field::new("window_start", FieldType::Timestamp, false),
        Field::new("window_end", FieldType::Timestamp, false),
    ];
    let mut aggregates = Vec::new();
    for (col, agg) in &cfg.aggregates {
        let ap = format!("{p}.aggregates.{col}");
        if fields.iter().any(|f| &f.name == col) || (revisions && col == "revision") {
            err(
                ap.clone(),
                format!(
                    "column `{col}` clashes with a column the window adds (`{}`, `window_start`, `window_end`{})",
                    cfg.key,
                    if revisions { ", `revision`" } else { "" }
                ),
            );
            ok = false;
        }
        let field = match (&agg.field, agg.func.takes_field()) {
            (Some(f), false) => {
                err(
                    format!("{ap}.field"),
                    format!(
                        "`{}` takes no field (remove `field: {f}`)",
                        fn_name(agg.func)
                    ),
                );
                ok = false;
                TradeField::Price
            }
            (None, false) => TradeField::Price,
            (None, true) => {
                err(
                    format!("{ap}.field"),
                    format!(
                        "`{}` needs a `field` (one of `price`, `volume`)",
                        fn_name(agg.func)
                    ),
                );
                ok = false;
                TradeField::Price
            }
            (Some(f), true) => match trades.field(f) {
                Some(_) if f == "price" => TradeField::Price,
                Some(_) if f == "volume" => TradeField::Volume,
                Some(fd) => {
                    err(
                        format!("{ap}.field"),
                        format!(
                            "`{f}` is a {}; `{}` needs a numeric field (`price`, `volume`)",
                            fd.ty.name(),
                            fn_name(agg.func)
                        ),
                    );
                    ok = false;
                    TradeField::Price
                }
                None => {
                    err(
                        format!("{ap}.field"),
                        format!("unknown field `{f}`{}", suggest(f, ["price", "volume"])),
                    );
                    ok = false;
                    TradeField::Price
                }
            },
        };
        let (ty, nullable) = match agg.func {
            AggregateFn::Count => (FieldType::Int64, false),
            AggregateFn::Stddev | AggregateFn::Vwap => (FieldType::Float64, true),
            _ => (FieldType::Float64, false),
        };
        fields.push(Field::new(col, ty, nullable));
        aggregates.push(AggregatePlan {
            name: col.clone(),
            func: agg.func,
            field,
        });
    }
    if revisions {
        fields.push(Field::new("revision", FieldType::Int64, false));
    }
    let session = matches!(kind, WindowKind::Session { .. });
    let differential = match cfg.engine {
        // Measured: the timely operator is 4–5× faster than differential dataflow on revisable
        // bars (BENCHMARKS.md), and both give identical rows; so `auto` picks timely.
        WindowEngine::Auto => false,
        WindowEngine::Timely => false,
        WindowEngine::Differential if session => {
            err(
                format!("{p}.engine"),
                "the differential engine does not support session windows; use `timely` or `auto`"
                    .into(),
            );
            ok = false;
            false
        }
        WindowEngine::Differential => true,
    };
    let skip_partial = live && cfg.partial_windows == PartialWindows::Skip;
    if differential && skip_partial {
        err(
            format!("{p}.partial_windows"),
            "the differential engine emits partial first windows of a live source: set `partial_windows: keep`, or use `engine: timely`".into(),
        );
        ok = false;
    }
    ok.then(|| WindowNode {
        name: name.to_string(),
        input,
        kind,
        allowed_lateness_ms: cfg.allowed_lateness.as_millis().max(0),
        aggregates,
        schema: Schema { fields },
        differential,
        skip_partial,
    })
}

fn fn_name(f: AggregateFn) -> &'static str {
    AggregateFn::NAMES[f as usize]
}

/// Kafka topic names: 1–249 characters of letters, digits, `.`, `_` and `-`.
fn check_topic(path: &str, topic: &str, err: &mut impl FnMut(String, String)) {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && topic != "."
        && topic != "..";
    if !ok {
        err(
            path.to_string(),
            format!(
                "`{topic}` is not a valid Kafka topic name (letters, digits, `.`, `_`, `-`; at most 249)"
            ),
        );
    }
}

fn check_finnhub(p: &str, c: &crate::sources::FinnhubConfig, err: &mut impl FnMut(String, String)) {
    if !(c.url.starts_with("ws://") || c.url.starts_with("wss://")) {
        err(
            format!("{p}.url"),
            format!("`{}` is not a websocket URL (ws:// or wss://)", c.url),
        );
    }
    if c.url.contains("token=") {
        err(
            format!("{p}.url"),
            format!(
                "do not put the token in the URL; set the `{}` environment variable instead",
                c.token_env
            ),
        );
    }
    if c.token_env.is_empty()
        || !c
            .token_env
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
    {
        err(
            format!("{p}.token_env"),
            format!("`{}` is not an environment variable name", c.token_env),
        );
    }
    if c.symbols.is_empty() {
        err(
            format!("{p}.symbols"),
            "subscribe to at least one symbol".into(),
        );
    }
    if c.symbols.len() > c.max_symbols {
        err(
            format!("{p}.symbols"),
            format!(
                "{} symbols is more than one Finnhub connection allows ({}, `max_symbols`)",
                c.symbols.len(),
                c.max_symbols
            ),
        );
    }
    for (i, s) in c.symbols.iter().enumerate() {
        if s.trim().is_empty() || s.contains(char::is_whitespace) {
            err(format!("{p}.symbols.{i}"), format!("`{s}` is not a symbol"));
        } else if c.symbols[..i].contains(s) {
            err(format!("{p}.symbols.{i}"), format!("`{s}` is listed twice"));
        }
    }
    for (field, d) in [
        ("silence_timeout", c.silence_timeout),
        ("idle_timeout", c.idle_timeout),
        ("stale_after", c.stale_after),
        ("backoff_min", c.backoff_min),
        ("backoff_max", c.backoff_max),
    ] {
        if d.as_millis() <= 0 {
            err(format!("{p}.{field}"), format!("must be positive, got {d}"));
        }
    }
    if c.backoff_max < c.backoff_min {
        err(
            format!("{p}.backoff_max"),
            format!("must not be below backoff_min ({})", c.backoff_min),
        );
    }
    if c.max_out_of_orderness.as_millis() < 0 {
        err(
            format!("{p}.max_out_of_orderness"),
            "must not be negative".into(),
        );
    }
    if !(c.simulator.rate.is_finite() && c.simulator.rate > 0.0) {
        err(
            format!("{p}.simulator.rate"),
            format!(
                "must be a positive number of trades per second, got {}",
                c.simulator.rate
            ),
        );
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The chain of steps from `start` back to itself, if its inputs loop.
fn find_cycle(spec: &crate::spec::PipelineSpec, start: &str) -> Option<Vec<String>> {
    let mut chain = vec![start.to_string()];
    let mut current = start;
    loop {
        let step = spec.steps.get(current)?;
        let next = step.input();
        if next == start {
            chain.push(start.to_string());
            return Some(chain);
        }
        if chain.iter().any(|c| c == next) {
            return None; // a cycle that does not pass through `start`: reported by its own members
        }
        chain.push(next.to_string());
        current = next;
    }
}

/// Every sink, the dead letters and the checkpoints write into a folder of their own: two
/// writers in one folder (or one inside the other) overwrite or mix each other's files.
fn overlapping_folders(spec: &crate::spec::PipelineSpec, err: &mut impl FnMut(String, String)) {
    let mut folders: Vec<(String, String, String)> = Vec::new(); // (field, who, location)
    for (name, sink) in &spec.sinks {
        if let SinkSpec::Parquet(cfg) = sink {
            folders.push((
                format!("sinks.{name}.path"),
                format!("sink `{name}`"),
                cfg.path.clone(),
            ));
        }
    }
    if let Some(dl) = &spec.dead_letters {
        folders.push((
            "dead_letters.path".into(),
            "the dead letters".into(),
            dl.path.clone(),
        ));
    }
    if let Some(c) = &spec.checkpoints {
        folders.push((
            "checkpoints.path".into(),
            "the checkpoints".into(),
            c.path.clone(),
        ));
    }
    let located: Vec<Option<String>> = folders.iter().map(|(_, _, p)| folder_location(p)).collect();
    for j in 1..folders.len() {
        let Some(b) = &located[j] else { continue };
        for i in 0..j {
            let Some(a) = &located[i] else { continue };
            let inside = |x: &str, y: &str| x == y || y.starts_with(&format!("{x}/"));
            if inside(a, b) || inside(b, a) {
                let (field, _, path) = &folders[j];
                let (_, who, other) = &folders[i];
                err(
                    field.clone(),
                    format!(
                        "`{path}` overlaps the folder of {who} (`{other}`): give every sink, the dead letters and the checkpoints a folder of their own"
                    ),
                );
                break;
            }
        }
    }
}

/// A storage URL as one comparable string: local paths absolute and lexically normalised
/// (`./out/../data/` → `file:///cwd/data`), remote ones without trailing slashes. `None` for an
/// empty path (reported elsewhere).
fn folder_location(url: &str) -> Option<String> {
    let url = url.trim();
    if url.is_empty() {
        return None;
    }
    let local = match url.strip_prefix("file://") {
        Some(rest) => rest,
        None if url.contains("://") => {
            let (scheme, rest) = url.split_once("://")?;
            let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
            return Some(format!("{scheme}://{}", parts.join("/")));
        }
        None => url,
    };
    let path = std::path::Path::new(local);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let mut parts: Vec<String> = Vec::new();
    for c in abs.components() {
        match c {
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    Some(format!("file:///{}", parts.join("/")))
}
