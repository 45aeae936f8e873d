//! From a parsed spec to a typed graph: names resolved, inputs connected, field names and types
//! checked through every step, window parameters checked. Errors carry dotted paths that the
//! spec loader turns into `FILE:LINE:COL`.

pub mod graph;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::base::diagnostic::suggest;
use crate::base::kinds::Checks;
use crate::base::record::Schema;
use crate::output::dead_letter::config::DeadLetterSpec;
use crate::sources::SourceSpec;
use crate::spec::{Diagnostic, LoadedSpec, SpecErrors};
pub use crate::steps::{StepOp, StreamInfo, StreamKind};

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

#[derive(Debug, Clone)]
pub struct SinkNode {
    pub name: String,
    pub input: NodeRef,
    /// What it writes.
    pub schema: Schema,
    /// Trades or rows.
    pub kind: StreamKind,
    pub op: Arc<dyn crate::sinks::SinkOp>,
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
    /// Its other inputs (a join's right side).
    pub sides: Vec<NodeRef>,
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
    let mut plan = plan(&loaded.spec, &loaded.broken, &mut diags, &mut warnings);
    if diags.is_empty() && loaded.pending.is_empty() {
        let spec = &loaded.spec;
        let local: Vec<(&str, &str, &str)> = spec
            .sources
            .iter()
            .flat_map(|(name, s)| {
                let fields = s.kind().local_fields();
                fields.iter().map(move |f| ("sources", name.as_str(), *f))
            })
            .collect();
        let files: Vec<&str> = spec.steps.values().flat_map(|s| s.kind().files()).collect();
        plan.fingerprint = crate::cluster::fingerprint::Fingerprint::of_spec(
            &loaded.tree.root.to_json(),
            &local,
            &files,
        );
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

/// `broken`: components left out of `spec` because their own config has errors (already
/// reported): a reference to one is neither unknown nor planned.
fn plan(
    spec: &crate::spec::PipelineSpec,
    broken: &[String],
    diags: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Plan {
    // A name of a step that is not planned (its own errors are reported) or of a broken component.
    let unplanned = |n: &str| spec.steps.contains_key(n) || broken.iter().any(|b| b == n);
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
        ("tables", spec.tables.keys().collect()),
        ("steps", spec.steps.keys().collect()),
        ("sinks", spec.sinks.keys().collect()),
    ] {
        for name in names {
            if !seen.insert(name.as_str()) {
                err(
                    format!("{section}.{name}"),
                    format!(
                        "the name `{name}` is used twice; sources, tables, steps and sinks share one namespace"
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
        cfg.kind().check(&mut Checks {
            path: format!("sources.{name}"),
            err: &mut err,
        });
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
                live: cfg.kind().live(),
                complete: Vec::new(),
                unwindowable: None,
                revised: None,
                dates: None,
            },
            schema,
            time_quantum_ms: 1000,
        });
    }

    // Tables: read now, so that a missing or malformed file is found before the run.
    // A table that failed is still known by name (its lookups say nothing more).
    let tables: Vec<(String, Option<std::sync::Arc<crate::tables::Table>>)> = spec
        .tables
        .iter()
        .map(|(name, cfg)| (name.clone(), crate::tables::plan(name, cfg, &mut err)))
        .collect();

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
            None if unplanned(input_name) => continue,
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
        // The other streams it reads.
        let mut side_refs = Vec::new();
        let mut side_streams = Vec::new();
        let mut sides_known = true;
        for (field, side) in step.kind().also_reads() {
            match planned.get(side) {
                Some(n) => {
                    side_refs.push(*n);
                    side_streams.push(match n {
                        NodeRef::Source(i) => sources[*i].stream.clone(),
                        NodeRef::Step(i) => steps[*i].output.clone(),
                    });
                }
                None => {
                    sides_known = false;
                    if !unplanned(side) {
                        err(
                            format!("steps.{name}.{field}"),
                            format!(
                                "unknown input `{side}`{}",
                                suggest(side, all_names.iter().copied())
                            ),
                        );
                    }
                }
            }
        }
        if !sides_known {
            side_streams.clear();
        }
        let mut cx = crate::steps::PlanCx {
            name,
            path: format!("steps.{name}"),
            input: &stream,
            input_known: input.is_some() && sides_known,
            sides: &side_streams,
            tables: &tables,
            err: &mut err,
        };
        let planned_step = step.kind().plan(&mut cx);
        // Columns that differ only in case are one column to DuckDB, Spark and most SQL readers.
        let planned_step = planned_step.filter(|p| {
            let fields = &p.output.schema.fields;
            let clash = fields.iter().enumerate().find_map(|(i, a)| {
                fields[..i]
                    .iter()
                    .find(|b| b.name != a.name && b.name.eq_ignore_ascii_case(&a.name))
                    .map(|b| (b.name.clone(), a.name.clone()))
            });
            if let Some((a, b)) = &clash {
                err(
                    format!("steps.{name}"),
                    format!("columns `{a}` and `{b}` differ only in case: SQL readers (DuckDB, Spark) take them for one column; rename one"),
                );
            }
            clash.is_none()
        });
        if let (Some(p), Some(input), true) = (planned_step, input, sides_known) {
            steps.push(StepNode {
                name: name.clone(),
                input,
                sides: side_refs,
                output: p.output,
                op: p.op,
            });
            planned.insert(name.as_str(), NodeRef::Step(steps.len() - 1));
        }
    }
    for (name, step) in &spec.steps {
        let read = spec
            .steps
            .values()
            .any(|s| s.inputs().contains(&name.as_str()))
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
        let read = spec
            .steps
            .values()
            .any(|s| s.inputs().contains(&name.as_str()))
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
                if !unplanned(input_name) {
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
        let mut cx = crate::sinks::SinkPlanCx {
            name,
            pipeline: &spec.name,
            checkpoints: spec.checkpoints.as_ref(),
            input: stream.as_ref(),
            checks: Checks {
                path: p,
                err: &mut err,
            },
        };
        let op = sink.kind().plan(&mut cx);
        let (Some(input), Some(stream), Some(op)) = (input, stream, op) else {
            continue;
        };
        sinks.push(SinkNode {
            name: name.clone(),
            input,
            kind: stream.kind,
            schema: stream.schema,
            op,
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
            if s.kind().rewinds().is_none() {
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
            // The first of its inputs that is a step not placed yet.
            while let Some(up) = spec.steps[at]
                .inputs()
                .into_iter()
                .filter_map(|n| spec.steps.get_index_of(n))
                .find(|&up| !placed[up])
            {
                if hops > spec.steps.len() {
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
    // Depth first over every input; a path back to `start` is the cycle.
    fn walk(
        spec: &crate::spec::PipelineSpec,
        start: &str,
        at: &str,
        chain: &mut Vec<String>,
    ) -> bool {
        let Some(step) = spec.steps.get(at) else {
            return false;
        };
        for next in step.inputs() {
            if next == start {
                chain.push(start.to_string());
                return true;
            }
            // A cycle that does not pass through `start` is reported by its own members.
            if chain.iter().any(|c| c == next) || !spec.steps.contains_key(next) {
                continue;
            }
            chain.push(next.to_string());
            if walk(spec, start, next, chain) {
                return true;
            }
            chain.pop();
        }
        false
    }
    let mut chain = vec![start.to_string()];
    walk(spec, start, start, &mut chain).then_some(chain)
}

/// Every sink, the dead letters and the checkpoints write into a folder of their own: two
/// writers in one folder (or one inside the other) overwrite or mix each other's files.
fn overlapping_folders(spec: &crate::spec::PipelineSpec, err: &mut impl FnMut(String, String)) {
    let mut folders: Vec<(String, String, String)> = Vec::new(); // (field, who, location)
    for (name, sink) in &spec.sinks {
        if let Some(folder) = sink.kind().folder() {
            folders.push((
                format!("sinks.{name}.path"),
                format!("sink `{name}`"),
                folder.to_string(),
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
    // Through symbolic links: the longest part of the path that exists, resolved.
    let mut base: std::path::PathBuf = std::iter::once("/".to_string())
        .chain(parts.iter().cloned())
        .collect();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    while !base.exists() {
        match base.file_name() {
            Some(n) => rest.push(n.to_os_string()),
            None => break,
        }
        base.pop();
    }
    let mut real = base.canonicalize().unwrap_or(base);
    real.extend(rest.iter().rev());
    let parts: Vec<String> = real
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    Some(format!("file:///{}", parts.join("/")))
}
