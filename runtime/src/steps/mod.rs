//! Steps: every kind behind one contract.
//!
//! A kind is a folder with its config (what users write, the JSON Schema), its planning
//! ([`StepConfig::plan`]: check against the input stream, describe the output stream) and its
//! operator ([`StepOp::build`] from a small [`BuildCx`]). [`StepSpec`] is the one list of kinds;
//! the planner, the dataflow, the graph and checkpoints only know the contract.

mod expressions;
pub mod ordered;
pub mod stream;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

pub use self::stream::{AnyStream, StreamKind};
use crate::base::kinds::kinds;
use crate::base::record::Schema;
use crate::output::dead_letter::DeadLetters;
use crate::worker::context::RunContext;

// The one list of step kinds: `type:` name, its folder below `steps/` (`in NAME`), variant and
// config type. Adding a kind is its folder plus one line here.
kinds! {
    /// A transformation, chosen by `type`.
    enum StepSpec: dyn StepConfig;
    /// Event-time windows with aggregates (OHLCV bars, VWAP, ...).
    "window" in window => Window(window::config::WindowStepConfig),
    /// Scores rows with a WebAssembly model plugin.
    "model" in model => Model(model::config::ModelStepConfig),
    /// Keeps the records for which a SQL condition is true.
    "filter" in filter => Filter(filter::FilterConfig),
    /// Adds (or replaces) columns computed by SQL expressions.
    "derive" in derive => Derive(derive::DeriveConfig),
    /// Keeps, renames and orders columns.
    "select" in select => Select(select::SelectConfig),
    /// Features over each key's latest rows: moving averages, EMA, RSI, lags.
    "rolling" in rolling => Rolling(rolling::RollingConfig),
    /// The first `n` rows of each window by an expression, across keys (top movers).
    "top_n" in top_n => TopN(top_n::TopNConfig),
    /// Adds the columns of a table's row found by a key (symbol → sector).
    "lookup" in lookup => Lookup(lookup::LookupConfig),
    /// Each left record with the latest right record of its key at or before its time.
    "asof_join" in asof_join => AsofJoin(asof_join::AsofJoinConfig),
}

impl StepSpec {
    pub fn input(&self) -> &str {
        self.kind().input()
    }
    /// Every stream the step reads: its input, then the others ([`StepConfig::also_reads`]).
    pub fn inputs(&self) -> Vec<&str> {
        let mut all = vec![self.input()];
        all.extend(self.kind().also_reads().into_iter().map(|(_, n)| n));
        all
    }
}

/// A stream as the planner knows it: its schema, whether it carries trades (the fixed struct of
/// the hot path) or rows, and which columns are its key and its event time.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub schema: Schema,
    pub kind: StreamKind,
    /// The column records are keyed (and exchanged) by.
    pub key: Option<usize>,
    /// The event-time column.
    pub time: Option<usize>,
    /// The source at the root of the stream (dead letters name its positions).
    pub source: usize,
    /// Whether that source is live (windows skip partial first windows of live sources).
    pub live: bool,
    /// Time columns whose rows arrive complete behind the dataflow's time (a window's rows).
    /// Empty for records stamped with the watermark they were read at (trades, and rows made
    /// from them), which are judged late by it.
    pub complete: Vec<Complete>,
    /// Why a window cannot read these rows (they come again revised, or out of time order).
    pub unwindowable: Option<String>,
    /// Rows come again with a higher `revision` when late records change them (a window with
    /// `allowed_lateness`): a window over them replaces a row by its revision.
    pub revised: Option<Revised>,
    /// A time column whose date is a market date (a market-time window's `window_start`: the
    /// date of its session, or its local date), which `date` partitions use instead of UTC.
    pub dates: Option<MarketDates>,
}

/// The revision column of a revisable stream, and how long after its first emission a row may
/// be revised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revised {
    pub column: usize,
    pub lateness: i64,
}

/// The date of `column`'s value in market time (see [`Align::date_of`]).
#[derive(Debug, Clone)]
pub struct MarketDates {
    pub column: usize,
    pub align: Arc<crate::base::calendar::Align>,
}

/// A time column of a window's rows: once the frontier reaches `T + lag`, every row whose
/// `column` is below `T` has arrived (at or below `T` when `inclusive`); its values are
/// multiples of `align` (ms since the epoch). A tumbling window's `window_start` lags by its
/// size, its `window_end` by nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complete {
    pub column: usize,
    pub lag: i64,
    /// Rows at `T` have come too: a time window's rows are emitted when the frontier reaches
    /// their window's end. (Sampled bars are not: one ending at `T` goes out once the frontier
    /// has passed `T`.)
    pub inclusive: bool,
    pub align: i64,
}

impl Complete {
    /// Below this time every row has arrived, at frontier `f`.
    pub fn below(&self, f: i64) -> i64 {
        f.saturating_sub(self.lag)
            .saturating_add(i64::from(self.inclusive))
    }
}

impl StreamInfo {
    pub fn key_name(&self) -> Option<&str> {
        self.key.map(|k| self.schema.fields[k].name.as_str())
    }
    pub fn time_name(&self) -> Option<&str> {
        self.time.map(|k| self.schema.fields[k].name.as_str())
    }
}

/// What a step's planning sees: its name, its input stream, and where to report problems
/// (`err(dotted path, message)`; paths start with [`PlanCx::path`]).
pub struct PlanCx<'a> {
    pub name: &'a str,
    /// `steps.NAME`
    pub path: String,
    pub input: &'a StreamInfo,
    /// Whether `input` is the step's real input. When its `input:` names nothing, `input` is a
    /// stand-in (trades): a kind checks only what does not depend on it, and the step is left out.
    pub input_known: bool,
    /// The streams of [`StepConfig::also_reads`], in order (empty when one of them is unknown).
    pub sides: &'a [StreamInfo],
    /// The spec's tables (reference data a step may join), by name; `None` for a table whose
    /// declaration or file has errors (reported already).
    pub tables: &'a [(String, Option<Arc<crate::tables::Table>>)],
    pub err: &'a mut dyn FnMut(String, String),
}

impl PlanCx<'_> {
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        (self.err)(
            crate::base::kinds::field_path(&self.path, field),
            message.into(),
        );
    }
}

/// A planned step: its output stream and its operator.
pub struct Planned {
    pub output: StreamInfo,
    pub op: Arc<dyn StepOp>,
}

/// What a kind's config does at plan time.
pub trait StepConfig {
    /// The name of the stream the step reads.
    fn input(&self) -> &str;
    /// Other streams it reads (a join's right side): (field, name). Their records reach
    /// [`StepOp::build_joined`].
    fn also_reads(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }
    /// Checks the step against its input stream (every problem through `cx`) and plans it.
    fn plan(&self, cx: &mut PlanCx<'_>) -> Option<Planned>;
    /// Files it reads whose bytes every process of a cluster must share (a model's plugin):
    /// part of the pipeline's fingerprint.
    fn files(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// What a step's operator is built from.
pub struct BuildCx<'a> {
    pub ctx: &'a Arc<RunContext>,
    /// The step's place in the plan's steps (checkpoint participants count by it).
    pub index: usize,
    /// The node the step reads ([`crate::plan::NodeRef::node_index`]).
    pub input_node: usize,
    /// The nodes of its other inputs ([`StepConfig::also_reads`]).
    pub side_nodes: &'a [usize],
    pub dead: &'a Rc<RefCell<DeadLetters>>,
}

/// A planned step, ready to build on every worker.
pub trait StepOp: Send + Sync + std::fmt::Debug {
    /// The step's name (as in the spec).
    fn name(&self) -> &str;
    /// The kind, as written in `type:`.
    fn kind(&self) -> &'static str;
    /// One line for `graph` (what it computes; never credentials).
    fn describe(&self) -> String;
    /// Builds the operator on `input` (of the kind its planning accepted).
    fn build<'s>(&self, input: AnyStream<'s>, cx: &BuildCx<'_>) -> AnyStream<'s>;
    /// Builds a step that reads other streams too ([`StepConfig::also_reads`]), in order.
    fn build_joined<'s>(
        &self,
        input: AnyStream<'s>,
        sides: Vec<AnyStream<'s>>,
        cx: &BuildCx<'_>,
    ) -> AnyStream<'s> {
        debug_assert!(sides.is_empty());
        self.build(input, cx)
    }
    /// The granularity (ms) of event-time boundaries this step fires on, if it fires on any:
    /// sources emit their dataflow timestamps in steps of the gcd of these.
    fn time_step_ms(&self) -> Option<u64> {
        None
    }
    /// Whether the replay source paces itself by this step's progress (a step that stashes
    /// records until the frontier passes).
    fn paces_source(&self) -> bool {
        false
    }
    /// Its node's shape in `graph` (DOT names: `box`, `ellipse`, `hexagon`).
    fn graph_shape(&self) -> &'static str {
        "box"
    }
    /// Whether it reads `input` exchanged by key (the graph's edge says so).
    fn reads_by_key(&self, _input: &StreamInfo) -> bool {
        false
    }
    /// The reason this step dead-letters records, for the graph's edges.
    fn dead_letter_label(&self) -> Option<&'static str> {
        None
    }
    /// Problems with running this step under checkpoints (field, message).
    fn checkpoint_problem(&self) -> Option<(&'static str, String)> {
        None
    }
}

/// The operator of a step whose planning found errors but whose output is known, so that the
/// steps after it are checked too. Such a plan has errors: it is never built.
pub fn broken(name: &str, kind: &'static str) -> Arc<dyn StepOp> {
    Arc::new(Broken {
        name: name.to_string(),
        kind,
    })
}

#[derive(Debug)]
struct Broken {
    name: String,
    kind: &'static str,
}

impl StepOp for Broken {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn describe(&self) -> String {
        format!("{} (invalid)", self.kind)
    }
    fn build<'s>(&self, _: AnyStream<'s>, _: &BuildCx<'_>) -> AnyStream<'s> {
        unreachable!("a plan with errors is never built")
    }
}
