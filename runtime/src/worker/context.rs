//! What every worker of a run shares: what operators need to know of the sources, counters, the stop flag, the async runtime for
//! storage, per-source shared state, and the first fatal error.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::cluster::{Control, ControlMsg};
use crate::metrics::Metrics;

/// What operators need to know of a source.
#[derive(Clone)]
pub struct SourceFacts {
    pub name: String,
    /// Granularity (ms) of the dataflow timestamps it emits.
    pub time_quantum_ms: u64,
    pub max_out_of_orderness_ms: i64,
    pub max_future_ms: i64,
    /// Where a record came from (line, frame, offset), from its sequence number.
    pub position: Arc<dyn Fn(u64) -> u64 + Send + Sync>,
}

impl SourceFacts {
    pub fn position_of(&self, seq: u64) -> u64 {
        (self.position)(seq)
    }
}

/// Something of this run that its copies on other processes talk to (a source).
pub trait OnControl: Send + Sync {
    /// What a copy on another process said ([`ControlMsg::Source`]).
    fn on_control(&self, _body: &[u8]) -> anyhow::Result<()> {
        Ok(())
    }
}

pub struct RunContext {
    /// Per source: what operators need to know of it.
    pub sources: Vec<SourceFacts>,
    /// Key groups: keys are routed by `hash mod key_groups`.
    pub key_groups: u32,
    pub metrics: Arc<Metrics>,
    /// Set by Ctrl-C, `--for`, or a fatal error: sources stop, complete windows are published,
    /// incomplete ones are discarded.
    pub stop: Arc<AtomicBool>,
    pub rt: tokio::runtime::Handle,
    /// Distinguishes this run's output files from earlier runs'.
    pub run_id: String,
    /// Per source: what its copies on other processes tell it (see [`OnControl`]).
    pub opened: Vec<Arc<dyn OnControl>>,
    /// `--bounded`: sources that can end (Kafka: at the end offsets seen at start) do.
    pub bounded: bool,
    /// Per source and worker: the watermark of the worker's slowest live partition (`i64::MAX`:
    /// none), for watermark alignment across workers.
    pub source_watermarks: Vec<Vec<AtomicI64>>,
    /// The checkpoint coordinator, when the spec has `checkpoints`.
    pub checkpoint: Option<Arc<crate::checkpoint::Coordinator>>,
    /// Wall-clock time (ms) the run started: live windows that began earlier are partial.
    pub started_ms: i64,
    /// In cluster mode: this process's end of the control dataflow (what the processes tell
    /// each other besides records).
    pub control: Option<Arc<Control>>,
    /// Per source and worker: the watermark last told to the other processes.
    sent_watermarks: Vec<Vec<AtomicI64>>,
    /// The membership change that ends this run (new peer list, when seen).
    rescale: Mutex<Option<(Vec<String>, std::time::Instant)>>,
    errors: Mutex<Vec<String>>,
}

impl RunContext {
    pub fn new(
        sources: Vec<SourceFacts>,
        key_groups: u32,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
        rt: tokio::runtime::Handle,
        run_id: String,
        opened: Vec<Arc<dyn OnControl>>,
    ) -> Self {
        RunContext {
            sources,
            key_groups,
            metrics,
            stop,
            rt,
            run_id,
            opened,
            bounded: false,
            source_watermarks: Vec::new(),
            checkpoint: None,
            started_ms: crate::base::time::now_ms(),
            control: None,
            sent_watermarks: Vec::new(),
            rescale: Mutex::new(None),
            errors: Mutex::new(Vec::new()),
        }
    }

    /// Sizes the per-worker watermark slots for `total` workers (of the whole cluster).
    pub fn with_workers(mut self, total: usize) -> Self {
        let slots = || {
            (0..self.sources.len())
                .map(|_| (0..total).map(|_| AtomicI64::new(i64::MAX)).collect())
                .collect()
        };
        self.source_watermarks = slots();
        self.sent_watermarks = slots();
        self
    }

    /// Records worker `worker`'s slowest live partition of `source` (watermark alignment); the
    /// other processes hear of it with the next heartbeat, or at once when it changed by more
    /// than a little (or the worker finished).
    pub fn publish_watermark(&self, source: usize, worker: usize, wm: i64) {
        self.source_watermarks[source][worker].store(wm, Ordering::Relaxed);
        if let Some(control) = &self.control {
            let sent = &self.sent_watermarks[source][worker];
            let last = sent.load(Ordering::Relaxed);
            if last != wm && (wm == i64::MAX || last == i64::MAX || wm.abs_diff(last) >= 1_000) {
                sent.store(wm, Ordering::Relaxed);
                control.send(ControlMsg::Watermark {
                    source: source as u32,
                    worker: worker as u32,
                    wm,
                });
            }
        }
    }

    /// This process's watermarks that changed since they were last sent (sent with heartbeats).
    pub fn unsent_watermarks(&self) -> Vec<ControlMsg> {
        let Some(control) = &self.control else {
            return Vec::new();
        };
        let local = control.process * control.threads..(control.process + 1) * control.threads;
        let mut out = Vec::new();
        for (source, workers) in self.source_watermarks.iter().enumerate() {
            for w in local.clone() {
                let wm = workers[w].load(Ordering::Relaxed);
                if self.sent_watermarks[source][w].swap(wm, Ordering::Relaxed) != wm {
                    out.push(ControlMsg::Watermark {
                        source: source as u32,
                        worker: w as u32,
                        wm,
                    });
                }
            }
        }
        out
    }

    /// Applies what another process said (see [`crate::cluster::control`]).
    pub fn apply_control(&self, msg: ControlMsg) {
        match msg {
            ControlMsg::Heartbeat { process } => {
                if let Some(control) = &self.control {
                    control.heard(process as usize);
                }
            }
            ControlMsg::Source { source, body } => {
                if let Some(op) = self.opened.get(source as usize)
                    && let Err(e) = op.on_control(&body)
                    && !self.stop.load(Ordering::Acquire)
                {
                    self.fail(format!("{e:#}"));
                }
            }
            ControlMsg::Watermark { source, worker, wm } => {
                if let Some(slot) = self
                    .source_watermarks
                    .get(source as usize)
                    .and_then(|s| s.get(worker as usize))
                {
                    slot.store(wm, Ordering::Relaxed);
                }
            }
            ControlMsg::CpAnnounce { .. }
            | ControlMsg::CpAck { .. }
            | ControlMsg::CpCounts { .. }
            | ControlMsg::CpCollected { .. }
            | ControlMsg::CpCompleted { .. } => {
                if let Some(cp) = &self.checkpoint {
                    cp.apply(msg);
                }
            }
            ControlMsg::Stop {
                process,
                error,
                rescale,
            } => {
                let Some(control) = &self.control else {
                    return;
                };
                if process as usize == control.process {
                    return;
                }
                control.heard_stop();
                match error {
                    Some(e) => {
                        tracing::debug!(process, error = %e, "another process failed");
                        self.record_error(format!("process {process} failed: {e}"));
                    }
                    None if rescale.is_some() => {}
                    None => tracing::info!(process, "another process asked the cluster to stop"),
                }
                if let Some(peers) = rescale {
                    self.note_rescale(peers);
                }
                self.stop.store(true, Ordering::SeqCst);
            }
        }
    }

    /// The cluster's membership changed to `peers` (seen here or heard from a peer): a final
    /// checkpoint, then this run ends and a new cluster forms.
    pub fn request_rescale(&self, peers: Vec<String>) {
        if self.note_rescale(peers.clone()) {
            tracing::info!(
                ?peers,
                "membership changed: final checkpoint, then a new cluster"
            );
            if let Some(control) = &self.control {
                control.send_stop(None, Some(peers));
            }
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Records the first membership change of this run; whether it was the first.
    fn note_rescale(&self, peers: Vec<String>) -> bool {
        let mut r = self.rescale.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_some() {
            return false;
        }
        *r = Some((peers, std::time::Instant::now()));
        true
    }

    /// The membership change that ended this run, and when it was seen.
    pub fn rescale(&self) -> Option<(Vec<String>, std::time::Instant)> {
        self.rescale
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record_error(&self, msg: String) {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg);
        if let Some(cp) = &self.checkpoint {
            cp.abort();
        }
    }

    /// Records a fatal error and stops the run.
    pub fn fail(&self, what: impl std::fmt::Display) {
        let msg = what.to_string();
        // NB: printed once, by the command, when the run has stopped (`error: ...`).
        tracing::debug!(error = %msg, "fatal error: stopping the run");
        if let Some(control) = &self.control {
            control.send_stop(Some(msg.clone()), None);
        }
        self.record_error(msg);
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
