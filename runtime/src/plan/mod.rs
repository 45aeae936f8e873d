//! From a parsed spec to a typed graph: names resolved, inputs connected, field names and types
//! checked through every step, window parameters checked. Errors carry dotted paths that the
//! spec loader turns into `FILE:LINE:COL`.

pub mod graph;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::dataflow::window::config::AggregateFn;
use crate::record::{FieldType, Schema};
use crate::sinks::SinkSpec;
use crate::sinks::dead_letter::config::DeadLetterSpec;
use crate::sources::{ReplayConfig, SourceSpec};
use crate::spec::diagnostic::suggest;
use crate::spec::{Diagnostic, LoadedSpec, SpecErrors};
pub use crate::steps::{StepOp, StreamInfo, StreamKind};

/// The most hopping windows one record may belong to (`size / slide`): each costs state and a
/// row per window, so `size: 1d, slide: 1ms` (86 million) is refused at validation.
pub const MAX_WINDOWS_PER_RECORD: i64 = 10_000;

/// Where a stream comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRef {
    Source(usize),
    /// A step, by its place in [`Plan::steps`].
    Step(usize),
}

impl NodeRef {
    /// The node's number when sources and steps are counted together, in that order (how
    /// checkpoints count records per node).
    pub fn node_index(self, sources: usize) -> usize {
        match self {
            NodeRef::Source(s) => s,
            NodeRef::Step(i) => sources + i,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceNode {
    pub name: String,
    pub config: SourceSpec,
    pub schema: Schema,
    /// The trades it emits, as steps see them.
    pub stream: StreamInfo,
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
    /// The source at the root of its input (its trades' positions, its time quantum).
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
    /// Trades or rows.
    pub kind: StreamKind,
    /// The column that keys its records (a Kafka record's key).
    pub key: Option<usize>,
    /// Index of the timestamp field used for `date`/`hour` partitions.
    pub partition_time_index: Option<usize>,
}

/// A model step: rows scored by a plugin, out with the plugin's columns appended.
#[derive(Debug, Clone)]
pub struct ModelNode {
    pub name: String,
    /// The schema of the rows it scores.
    pub incoming: Schema,
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
    /// Every step, in an order where each comes after the node it reads.
    pub steps: Vec<StepNode>,
    pub sinks: Vec<SinkNode>,
    pub dead_letters: Option<DeadLetterSpec>,
    pub checkpoints: Option<crate::checkpoint::CheckpointSpec>,
    pub metrics: Option<crate::spec::model::MetricsSpec>,
    /// Key groups: windows route keys by `hash mod key_groups`, and workers own groups
    /// `mod workers`.
    pub key_groups: u32,
    /// The pipeline's parts as hashes: every process of a cluster must have the same.
    pub fingerprint: crate::cluster::fingerprint::Fingerprint,
    /// Things that are allowed but probably not meant (a step nothing reads), as
    /// `FILE:LINE:COL: warning: path: message` lines.
    pub warnings: Vec<String>,
}

/// A planned step of any kind.
#[derive(Debug, Clone)]
pub struct StepNode {
    pub name: String,
    pub input: NodeRef,
    /// What it emits.
    pub output: StreamInfo,
    pub op: Arc<dyn StepOp>,
}

impl Plan {
    pub fn stream_of(&self, node: NodeRef) -> &StreamInfo {
        match node {
            NodeRef::Source(i) => &self.sources[i].stream,
            NodeRef::Step(i) => &self.steps[i].output,
        }
    }
    pub fn schema_of(&self, node: NodeRef) -> &Schema {
        &self.stream_of(node).schema
    }
    pub fn name_of(&self, node: NodeRef) -> &str {
        match node {
            NodeRef::Source(i) => &self.sources[i].name,
            NodeRef::Step(i) => &self.steps[i].name,
        }
    }
}

/// Plans a loaded spec, reporting every problem at once.
pub fn build(loaded: &LoadedSpec) -> Result<Plan, SpecErrors> {
    let mut diags = Vec::new();
    let mut warnings = Vec::new();
    let mut plan = plan(&loaded.spec, &mut diags, &mut warnings);
    if diags.is_empty() && loaded.pending.is_empty() {
        plan.fingerprint =
            crate::cluster::fingerprint::Fingerprint::of_spec(&loaded.tree.root.to_json());
        let located = loaded.locate_only(warnings);
        plan.warnings = located
            .diagnostics
            .iter()
            .map(|d| {
                format!(
                    "{}:{}:{}: warning: {}: {}",
                    located.file, d.line, d.column, d.path, d.message
                )
            })
            .collect();
        Ok(plan)
    } else {
        Err(loaded.locate(diags))
    }
}

fn plan(
    spec: &crate::spec::PipelineSpec,
    diags: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Plan {
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
        let schema = Schema::trades();
        sources.push(SourceNode {
            name: name.clone(),
            config: cfg.clone(),
            stream: StreamInfo {
                key: schema.index_of("symbol"),
                time: schema.index_of("timestamp"),
                schema: schema.clone(),
                kind: StreamKind::Trades,
                source: sources.len(),
                live: matches!(cfg, SourceSpec::Finnhub(_)),
            },
            schema,
            time_quantum_ms: 1000,
        });
    }

    // Steps, in the order their inputs need; each kind checks itself against its input stream.
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
    let mut steps: Vec<StepNode> = Vec::new();
    let mut planned: HashMap<&str, NodeRef> = spec
        .sources
        .keys()
        .enumerate()
        .map(|(i, n)| (n.as_str(), NodeRef::Source(i)))
        .collect();
    for at in dependency_order(spec) {
        let (name, step) = spec.steps.get_index(at).expect("an index of steps");
        let input_name = step.input();
        let input = match planned.get(input_name) {
            Some(n) => Some(*n),
            // An input step that failed to plan (or a cycle) has its own error already.
            None if spec.steps.contains_key(input_name) => continue,
            None => {
                err(
                    format!("steps.{name}.input"),
                    format!(
                        "unknown input `{input_name}`{}",
                        suggest(input_name, all_names.iter().copied())
                    ),
                );
                None
            }
        };
        // With an unknown input the step still checks what does not depend on it (against
        // trades, the most common input), and is then left out.
        let stream = match input {
            Some(NodeRef::Source(i)) => sources[i].stream.clone(),
            Some(NodeRef::Step(i)) => steps[i].output.clone(),
            None => match sources.first() {
                Some(s) => s.stream.clone(),
                None => continue,
            },
        };
        let mut cx = crate::steps::PlanCx {
            name,
            path: format!("steps.{name}"),
            input: &stream,
            input_known: input.is_some(),
            err: &mut err,
        };
        let planned_step = step.kind().plan(&mut cx);
        if let (Some(p), Some(input)) = (planned_step, input) {
            steps.push(StepNode {
                name: name.clone(),
                input,
                output: p.output,
                op: p.op,
            });
            planned.insert(name.as_str(), NodeRef::Step(steps.len() - 1));
        }
    }
    for (name, step) in &spec.steps {
        let read = spec.steps.values().any(|s| s.input() == name)
            || spec.sinks.values().any(|s| s.input() == name);
        if !read && planned.contains_key(name.as_str()) {
            warnings.push(Diagnostic::new(
                format!("steps.{name}"),
                format!(
                    "nothing reads the {} step `{name}` (no step or sink has `input: {name}`)",
                    step.type_name()
                ),
            ));
        }
    }
    for name in spec.sources.keys() {
        let read = spec.steps.values().any(|s| s.input() == name)
            || spec.sinks.values().any(|s| s.input() == name);
        if !read {
            warnings.push(Diagnostic::new(
                format!("sources.{name}"),
                format!("nothing reads the source `{name}` (no step or sink has `input: {name}`)"),
            ));
        }
    }

    // Time quantum per source: gcd of the event-time boundaries of the steps that read it.
    for (i, src) in sources.iter_mut().enumerate() {
        let mut q: u64 = 0;
        for st in steps.iter().filter(|st| st.output.source == i) {
            if let Some(step) = st.op.time_step_ms() {
                q = gcd(q, step.max(1));
            }
        }
        src.time_quantum_ms = if q == 0 { 1000 } else { q };
    }

    // Sinks.
    let mut sinks = Vec::new();
    for (name, sink) in &spec.sinks {
        let p = format!("sinks.{name}");
        let input_name = sink.input();
        let input = match planned.get(input_name) {
            Some(n) => Some(*n),
            None => {
                if !spec.steps.contains_key(input_name) {
                    err(
                        format!("{p}.input"),
                        format!(
                            "unknown input `{input_name}`{}",
                            suggest(input_name, all_names.iter().copied())
                        ),
                    );
                }
                None
            }
        };
        let stream = input.map(|n| match n {
            NodeRef::Source(i) => sources[i].stream.clone(),
            NodeRef::Step(i) => steps[i].output.clone(),
        });
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
                if let (Some(key), Some(stream)) = (&cfg.key, &stream) {
                    match stream.schema.field(key) {
                        Some(f) if f.ty == FieldType::Utf8 => {}
                        Some(f) => err(
                            format!("{p}.key"),
                            format!(
                                "the record key must be a string column; `{key}` is {}",
                                f.ty.name()
                            ),
                        ),
                        None => err(
                            format!("{p}.key"),
                            format!(
                                "unknown column `{key}`{}",
                                suggest(key, stream.schema.names())
                            ),
                        ),
                    }
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
                let Some(stream) = &stream else { continue };
                let schema = &stream.schema;
                let time_field = cfg
                    .partition_time_field
                    .clone()
                    .or_else(|| stream.time_name().map(str::to_string))
                    .unwrap_or_else(|| "timestamp".to_string());
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
        let (Some(input), Some(stream)) = (input, stream) else {
            continue;
        };
        sinks.push(SinkNode {
            name: name.clone(),
            input,
            config: sink.clone(),
            key: match sink {
                SinkSpec::Kafka(cfg) => cfg
                    .key
                    .as_deref()
                    .and_then(|k| stream.schema.index_of(k))
                    .or(stream.key),
                SinkSpec::Parquet(_) => stream.key,
            },
            kind: stream.kind,
            schema: stream.schema,
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
        for st in &steps {
            if let Some((field, message)) = st.op.checkpoint_problem() {
                err(format!("steps.{}.{field}", st.name), message);
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
        steps,
        sinks,
        dead_letters: spec.dead_letters.clone(),
        checkpoints: spec.checkpoints.clone(),
        metrics: spec.metrics.clone(),
        key_groups,
        warnings: Vec::new(),
        fingerprint: Default::default(),
    }
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

/// The steps' indices in an order where every step comes after the step it reads (declaration
/// order otherwise); steps in a cycle come last, in declaration order.
fn dependency_order(spec: &crate::spec::PipelineSpec) -> Vec<usize> {
    let mut order = Vec::with_capacity(spec.steps.len());
    let mut placed = vec![false; spec.steps.len()];
    for start in 0..spec.steps.len() {
        // Walk up the inputs to the first step not yet placed whose input is placed (or not a
        // step), place it, repeat; a walk longer than the number of steps is a cycle.
        let mut guard = 0;
        while !placed[start] && guard <= spec.steps.len() {
            let mut at = start;
            let mut hops = 0;
            while let Some(up) = spec.steps.get_index_of(spec.steps[at].input()) {
                if placed[up] || hops > spec.steps.len() {
                    break;
                }
                at = up;
                hops += 1;
            }
            if hops > spec.steps.len() {
                break;
            }
            placed[at] = true;
            order.push(at);
            guard += 1;
        }
    }
    for (i, p) in placed.iter().enumerate() {
        if !p {
            order.push(i);
        }
    }
    order
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
