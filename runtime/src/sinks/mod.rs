//! Sinks: where results go, every kind behind one contract.
//!
//! A kind is a folder: `config.rs` (what users write, the JSON Schema), `kind.rs` (the
//! contract: [`SinkConfig`] checks the config against its input stream and plans a [`SinkOp`],
//! which builds the operator on every worker), and its runtime. [`SinkSpec`] is the one list of
//! kinds: the planner, the dataflow and checkpoints know only the contract.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::base::kinds::{Checks, kinds};
use crate::steps::{AnyStream, StreamInfo};
use crate::worker::context::RunContext;

pub use self::kafka::config::KafkaSinkConfig;
pub use self::parquet::config::ParquetSinkConfig;

kinds! {
    /// A destination for records, chosen by `type`.
    enum SinkSpec: dyn SinkConfig;
    /// Parquet files in a local folder or an object store.
    "parquet" in parquet => Parquet(ParquetSinkConfig),
    /// Trades or rows to a Kafka topic (transactions with checkpoints: exactly once).
    "kafka" in kafka => Kafka(KafkaSinkConfig),
}

impl SinkSpec {
    pub fn input(&self) -> &str {
        self.kind().input()
    }
}

/// What a kind's config does at plan time.
pub trait SinkConfig {
    /// The name of the stream the sink writes.
    fn input(&self) -> &str;
    /// The folder the sink writes files into, if it writes files: no two writers (sinks, dead
    /// letters, checkpoints) may share one.
    fn folder(&self) -> Option<&str>;
    /// Checks the sink against its input stream (every problem through `cx`) and plans it.
    fn plan(&self, cx: &mut SinkPlanCx<'_>) -> Option<Arc<dyn SinkOp>>;
}

/// What a sink's planning sees.
pub struct SinkPlanCx<'a> {
    pub name: &'a str,
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// The run's checkpoints, if it has any.
    pub checkpoints: Option<&'a crate::checkpoint::CheckpointSpec>,
    /// The stream it writes; `None` when its `input:` names nothing (the sink checks its own
    /// fields only, and is left out).
    pub input: Option<&'a StreamInfo>,
    /// `sinks.NAME`
    pub checks: Checks<'a>,
}

impl SinkPlanCx<'_> {
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.checks.error(field, message);
    }
}

/// What a sink's operator is built from.
pub struct SinkBuildCx<'a> {
    pub ctx: &'a Arc<RunContext>,
    /// The sink's place in the plan's sinks (checkpoint participants count by it).
    pub index: usize,
    /// This worker's index (of the whole cluster).
    pub worker: usize,
    /// The node the sink reads ([`crate::plan::NodeRef::node_index`]).
    pub input_node: usize,
    pub dead: &'a Rc<RefCell<crate::output::dead_letter::DeadLetters>>,
}

/// A planned sink, ready to build on every worker.
pub trait SinkOp: Send + Sync + std::fmt::Debug {
    /// One line for `graph` (never credentials).
    fn describe(&self) -> String;
    /// The folder of files that checkpoints publish (exactly-once files), if the sink writes
    /// files.
    fn staged_folder(&self) -> Option<&str>;
    /// Builds the operator on `input` (of the kind its planning accepted).
    fn build<'s>(&self, input: AnyStream<'s>, cx: &SinkBuildCx<'_>);
    /// With checkpoints, before any worker starts (once, in the leader process): finishes what
    /// the last run left to this sink (the restored checkpoint's transactions of it, writers
    /// of an earlier generation).
    fn recover(&self, _cx: &RecoverCx<'_>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What a sink's recovery sees.
pub struct RecoverCx<'a> {
    /// The restored checkpoint's transactions of this sink not known to be committed.
    pub transactions: Vec<crate::checkpoint::PendingTransaction>,
    /// The checkpoint folder: a sink may keep a small record of its own there.
    pub storage: &'a crate::base::storage::Storage,
    /// Workers of the whole run.
    pub workers: usize,
}
