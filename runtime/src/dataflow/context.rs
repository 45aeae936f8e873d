//! What every worker of a run shares: the plan, counters, the stop flag, the async runtime for
//! storage, per-source shared state, and the first fatal error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::metrics::Metrics;
use crate::plan::Plan;
use crate::sources::finnhub::source::FinnhubShared;
use crate::sources::replay::ReplayShared;

pub struct RunContext {
    pub plan: Plan,
    pub metrics: Arc<Metrics>,
    /// Set by Ctrl-C, `--for`, or a fatal error: sources stop, complete windows are published,
    /// incomplete ones are discarded.
    pub stop: Arc<AtomicBool>,
    pub rt: tokio::runtime::Handle,
    /// Distinguishes this run's output files from earlier runs'.
    pub run_id: String,
    /// Per source: the shared replay state (for replay sources).
    pub replay: Vec<Option<Arc<ReplayShared>>>,
    /// Per source: the connection settings and counters (for finnhub sources).
    pub finnhub: Vec<Option<Arc<FinnhubShared>>>,
    /// `--bounded`: sources that can end (Kafka: at the end offsets seen at start) do.
    pub bounded: bool,
    /// Per source and worker: the watermark of the worker's slowest live partition (`i64::MAX`:
    /// none), for watermark alignment across workers.
    pub source_watermarks: Vec<Vec<std::sync::atomic::AtomicI64>>,
    /// The checkpoint coordinator, when the spec has `checkpoints`.
    pub checkpoint: Option<Arc<crate::checkpoint::Coordinator>>,
    /// Wall-clock time (ms) the run started: live windows that began earlier are partial.
    pub started_ms: i64,
    errors: Mutex<Vec<String>>,
}

impl RunContext {
    pub fn new(
        plan: Plan,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
        rt: tokio::runtime::Handle,
        run_id: String,
        replay: Vec<Option<Arc<ReplayShared>>>,
        finnhub: Vec<Option<Arc<FinnhubShared>>>,
    ) -> Self {
        RunContext {
            plan,
            metrics,
            stop,
            rt,
            run_id,
            replay,
            finnhub,
            bounded: false,
            source_watermarks: Vec::new(),
            checkpoint: None,
            started_ms: crate::dataflow::time::now_ms(),
            errors: Mutex::new(Vec::new()),
        }
    }

    /// Records a fatal error and stops the run.
    pub fn fail(&self, what: impl std::fmt::Display) {
        let msg = what.to_string();
        // NB: printed once, by the command, when the run has stopped (`error: ...`).
        tracing::debug!(error = %msg, "fatal error: stopping the run");
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg);
        if let Some(cp) = &self.checkpoint {
            cp.abort();
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// File name prefix for a worker's output.
    pub fn file_prefix(&self, worker: usize) -> String {
        format!("part-{}-w{worker:03}", self.run_id)
    }
}
