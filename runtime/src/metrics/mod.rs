//! Process-wide counters. Hot paths count locally and add once per batch; the status line, the
//! run summary and the Prometheus endpoint ([`prometheus`], [`server`]) read them.

pub mod prometheus;
pub mod server;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use std::any::Any;

use crate::base::reject::RejectReason;

/// Metric families a component owns (see [`Metrics::part`]).
pub trait Part: Any + Send + Sync + std::fmt::Debug {
    /// Writes its families: each one's head, then its samples.
    fn expose(&self, out: &mut prometheus::Exposition<'_>, now_ms: i64);
}

#[derive(Debug)]
pub struct Metrics {
    /// Frames (input lines / websocket messages) read.
    pub frames: AtomicU64,
    /// Valid trades accepted by sources.
    pub trades: AtomicU64,
    /// Trades and frames rejected, by reason (index = `RejectReason as usize`).
    pub rejected: [AtomicU64; RejectReason::ALL.len()],
    pub pings: AtomicU64,
    pub server_errors: AtomicU64,
    pub other_frames: AtomicU64,
    /// Late trades that revised an already-fired window.
    pub late_revisions: AtomicU64,
    pub windows_fired: AtomicU64,
    pub revisions_emitted: AtomicU64,
    /// Incomplete windows discarded at a stop (never written as if complete).
    pub windows_discarded: AtomicU64,
    pub rows_written: AtomicU64,
    pub files_published: AtomicU64,
    pub bytes_published: AtomicU64,
    /// Per model step (plugin): calls, rows, errors, time, memory.
    /// Families that components own and register ([`Metrics::part`]), by type name.
    parts: Mutex<BTreeMap<&'static str, (Arc<dyn Any + Send + Sync>, Arc<dyn Part>)>>,
    /// Checkpoints completed, and how long the last one took (announce → published).
    pub checkpoints: AtomicU64,
    pub checkpoint_millis: AtomicU64,
    /// When the last checkpoint completed (ms since epoch), 0 before the first.
    pub checkpoint_completed_ms: AtomicI64,
    /// Highest source watermark (ms since epoch), `i64::MIN` before the first trade.
    pub watermark: AtomicI64,
    /// Records written to the dead letters, by reason (index = `RejectReason as usize`); a
    /// subset of `rejected` (all of it when `dead_letters:` is configured).
    pub dead_lettered: [AtomicU64; RejectReason::ALL.len()],
    /// Per step (sources, windows, models, sinks): records in and out.
    pub steps: Mutex<BTreeMap<String, Arc<StepStats>>>,
    /// Per source: watermark, Kafka lag, websocket health.
    pub sources: Mutex<BTreeMap<String, Arc<SourceStats>>>,
    /// The pipeline's name (a label of `tickflow_info`).
    pub pipeline: Mutex<String>,
    /// Cluster mode: processes in the current cluster (0: not a cluster).
    pub cluster_processes: AtomicU64,
    /// Cluster mode: membership changes carried out, and the pause of the last one (the
    /// change seen → the new cluster formed with its state restored).
    pub rescales: AtomicU64,
    pub rescale_pause_ms: AtomicU64,
    /// `/readyz`: running (a member of the current cluster) or standing by; not while a
    /// cluster forms and restores.
    pub ready: std::sync::atomic::AtomicBool,
}

/// Records through one node of the dataflow.
#[derive(Debug, Default)]
pub struct StepStats {
    /// `source`, `window`, `model` or `sink`.
    pub kind: &'static str,
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    /// Records a step left out by design (a market-time window: outside every session).
    pub records_skipped: AtomicU64,
    /// Rows of windows without records that gap filling emitted.
    pub rows_filled: AtomicU64,
    /// Records a lookup step found no row of its table for (kept with NULLs, or dropped).
    pub rows_unmatched: AtomicU64,
    /// State an asof_join let go of past its `state_ttl`: left records joined before the right
    /// side passed them, right records dropped before the left side passed them.
    pub rows_expired: AtomicU64,
    /// Table versions a lookup step took in after its file changed.
    pub table_reloads: AtomicU64,
    /// Reloads that failed (the last good table is kept).
    pub table_reload_errors: AtomicU64,
    /// The optional counters above that the step's kind keeps ([`StepStats::declare`]): the
    /// exposition writes only those.
    uses: std::sync::atomic::AtomicU8,
}

/// A step's optional counters, which its kind declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// `records_skipped`: records left out by design.
    Skipped = 1,
    /// `rows_filled`: rows made for windows without records.
    Filled = 2,
    /// `rows_unmatched`: records a join found no match for.
    Unmatched = 4,
    /// `rows_expired`: state let go past its time to live.
    Expired = 8,
    /// `table_reloads` and `table_reload_errors`.
    TableReloads = 16,
}

impl StepStats {
    /// Says which optional counters this step keeps.
    pub fn declare(&self, counters: &[Counter]) {
        let bits = counters.iter().fold(0u8, |b, c| b | *c as u8);
        self.uses.fetch_or(bits, Relaxed);
    }
    pub fn uses(&self, c: Counter) -> bool {
        self.uses.load(Relaxed) & c as u8 != 0
    }
}

/// The health of one source.
#[derive(Debug)]
pub struct SourceStats {
    /// The source's watermark (ms since epoch), `i64::MIN` before the first trade.
    pub watermark: AtomicI64,
}

impl Default for SourceStats {
    fn default() -> Self {
        SourceStats {
            watermark: AtomicI64::new(i64::MIN),
        }
    }
}

impl Metrics {
    /// The counters of dataflow node `name` (created on first use).
    pub fn step(&self, name: &str, kind: &'static str) -> Arc<StepStats> {
        Arc::clone(
            self.steps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(name.to_string())
                .or_insert_with(|| {
                    Arc::new(StepStats {
                        kind,
                        ..StepStats::default()
                    })
                }),
        )
    }

    /// The health of source `name` (created on first use).
    pub fn source(&self, name: &str) -> Arc<SourceStats> {
        Arc::clone(
            self.sources
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(name.to_string())
                .or_default(),
        )
    }

    /// The statistics of model step `step` (created on first use).
    /// The component-owned families of type `T`, registered on first use: a kind keeps its
    /// own counters (a model step's calls, a websocket's reconnects) and writes their
    /// exposition ([`Part::expose`]); the metrics layer never names a kind.
    pub fn part<T: Part + Default>(&self) -> Arc<T> {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        let (any, _) = parts.entry(std::any::type_name::<T>()).or_insert_with(|| {
            let part = Arc::new(T::default());
            (
                Arc::clone(&part) as Arc<dyn Any + Send + Sync>,
                part as Arc<dyn Part>,
            )
        });
        Arc::clone(any)
            .downcast::<T>()
            .expect("one part per type name")
    }

    /// The registered parts, in type-name order (no lock held while they render).
    pub fn parts(&self) -> Vec<Arc<dyn Part>> {
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts.values().map(|(_, p)| Arc::clone(p)).collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            frames: AtomicU64::new(0),
            trades: AtomicU64::new(0),
            rejected: Default::default(),
            pings: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            other_frames: AtomicU64::new(0),
            late_revisions: AtomicU64::new(0),
            windows_fired: AtomicU64::new(0),
            revisions_emitted: AtomicU64::new(0),
            windows_discarded: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            files_published: AtomicU64::new(0),
            bytes_published: AtomicU64::new(0),
            parts: Default::default(),
            checkpoints: AtomicU64::new(0),
            checkpoint_millis: AtomicU64::new(0),
            checkpoint_completed_ms: AtomicI64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            dead_lettered: Default::default(),
            steps: Default::default(),
            sources: Default::default(),
            pipeline: Default::default(),
            cluster_processes: AtomicU64::new(0),
            rescales: AtomicU64::new(0),
            rescale_pause_ms: AtomicU64::new(0),
            ready: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn reject(&self, reason: RejectReason, n: u64) {
        self.rejected[reason as usize].fetch_add(n, Relaxed);
    }
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize].load(Relaxed)
    }
    /// Rejected for any reason but lateness.
    pub fn invalid_total(&self) -> u64 {
        RejectReason::ALL
            .iter()
            .filter(|r| **r != RejectReason::Late)
            .map(|r| self.rejected(*r))
            .sum()
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}
