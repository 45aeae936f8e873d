//! Sources: where trades come from, every kind behind one contract.
//!
//! A kind is a folder: `config.rs` (what users write, the JSON Schema), `kind.rs` (the
//! contract: [`SourceConfig`] checks and describes the config and opens it for a run as a
//! [`SourceOp`], which builds the operator on every worker), and its runtime. [`SourceSpec`] is
//! the one list of kinds: the planner, the dataflow, checkpoints and the cluster know only the
//! contract.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use timely::dataflow::{ProbeHandle, Scope, StreamVec};

use crate::base::kinds::{Checks, kinds};
use crate::base::record::Trade;
use crate::output::dead_letter::DeadLetters;
use crate::worker::context::RunContext;

pub use self::finnhub::config::FinnhubConfig;
pub use self::kafka::config::KafkaSourceConfig;
pub use self::replay::config::ReplayConfig;

kinds! {
    /// A source of records, chosen by `type`.
    enum SourceSpec: dyn SourceConfig;
    /// Replay a JSONL file of recorded Finnhub websocket frames.
    "replay" in replay => Replay(ReplayConfig),
    /// The live Finnhub websocket trade feed (or its built-in simulator).
    "finnhub" in finnhub => Finnhub(FinnhubConfig),
    /// Trades from a Kafka topic (one trade object per record).
    "kafka" in kafka => Kafka(KafkaSourceConfig),
}

/// Default `max_future` of every source: an hour ahead of the wall clock.
pub const fn default_max_future() -> crate::base::units::Duration {
    crate::base::units::Duration::secs(3600)
}

/// What a kind's config does before a run: check itself, say what it is, open for a run.
///
/// NB: no method has a default: a new kind says for itself whether it ends, rewinds, and how
/// its positions read, instead of silently taking another kind's answer.
pub trait SourceConfig {
    /// Checks the config's own values (every problem through `cx`); what serde cannot.
    fn check(&self, cx: &mut Checks<'_>);
    /// One line for `graph` and logs (never credentials).
    fn describe(&self) -> String;
    /// A live feed never ends and its first windows are partial; other sources end (a file) or
    /// end with `--bounded` (Kafka).
    fn live(&self) -> bool;
    /// `watermark = max event time read − this`.
    fn max_out_of_orderness_ms(&self) -> i64;
    /// A trade stamped more than this ahead of the wall clock is rejected (0: no bound).
    fn max_future_ms(&self) -> i64;
    /// Where a record came from, for dead letters, from its sequence number: the line
    /// (replay), the frame number (live feed) or the partition offset (Kafka).
    fn position_of(&self, seq: u64) -> u64;
    /// What checkpoints record positions in (`topic trades`), or `None` when the source cannot
    /// rewind (and so cannot run under checkpoints).
    fn rewinds(&self) -> Option<String>;
    /// Opens the source for a run: what all workers of this process share (an open file, a
    /// connection's settings, a simulator).
    fn open(&self, name: &str, cx: &OpenCx<'_>) -> anyhow::Result<Arc<dyn SourceOp>>;
    /// Fields that may differ between the processes of a cluster (left out of the pipeline's
    /// fingerprint): a path the same file is mounted at, when the source checks its bytes.
    fn local_fields(&self) -> &'static [&'static str] {
        &[]
    }
}

/// What opening a source for a run sees.
pub struct OpenCx<'a> {
    pub rt: &'a tokio::runtime::Handle,
    /// Bytes a file source reads per block (tests use small blocks); `None`: its own default.
    pub block_size: Option<usize>,
    /// This process hosts global worker 0 (alone, or process 0 of a cluster).
    pub leader: bool,
}

/// What building a source's operator on one worker sees.
pub struct SourceBuildCx<'a> {
    pub ctx: &'a Arc<RunContext>,
    /// The source's place in the plan's sources.
    pub index: usize,
    pub dead: &'a Rc<RefCell<DeadLetters>>,
    /// The progress of the steps this source feeds (a source may pace itself by it).
    pub downstream: ProbeHandle<u64>,
}

/// A source opened for a run.
pub trait SourceOp: crate::worker::context::OnControl {
    /// The source's operator on one worker: trades stamped with their quantized watermark.
    fn build<'s>(&self, scope: Scope<'s, u64>, cx: &SourceBuildCx<'_>)
    -> StreamVec<'s, u64, Trade>;
    /// The run has ended: stop what the source started (a simulator).
    fn shutdown(&self, _rt: &tokio::runtime::Handle) {}
}

impl SourceSpec {
    pub fn position_of(&self, seq: u64) -> u64 {
        self.kind().position_of(seq)
    }
    pub fn can_end(&self) -> bool {
        !self.kind().live()
    }
    pub fn max_future_ms(&self) -> i64 {
        self.kind().max_future_ms()
    }
    pub fn max_out_of_orderness_ms(&self) -> i64 {
        self.kind().max_out_of_orderness_ms()
    }
}

/// Dead-letter positions of the sources whose sequence numbers carry a line or frame number
/// above [`Trade::SEQ_INDEX_BITS`].
pub fn line_of(seq: u64) -> u64 {
    seq >> Trade::SEQ_INDEX_BITS
}
