//! Process-wide counters. Hot paths count locally and add once per batch; the status line and
//! the run summary read them. (Prometheus exposition builds on these.)

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::sources::finnhub::protocol::RejectReason;

#[derive(Debug)]
pub struct Metrics {
    /// Frames (input lines / websocket messages) read.
    pub frames: AtomicU64,
    /// Valid trades accepted by sources.
    pub trades: AtomicU64,
    /// Trades and frames rejected, by reason (index = `RejectReason as usize`).
    pub rejected: [AtomicU64; 10],
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
    pub dead_letters: AtomicU64,
    /// Per model step (plugin): calls, rows, errors, time, memory.
    pub plugins: std::sync::Mutex<
        std::collections::BTreeMap<String, std::sync::Arc<crate::plugins::operator::PluginStats>>,
    >,
    /// Checkpoints completed, and how long the last one took (announce → published).
    pub checkpoints: AtomicU64,
    pub checkpoint_millis: AtomicU64,
    /// Highest source watermark (ms since epoch), `i64::MIN` before the first trade.
    pub watermark: AtomicI64,
}

impl Metrics {
    /// The statistics of model step `step` (created on first use).
    pub fn plugin(&self, step: &str) -> std::sync::Arc<crate::plugins::operator::PluginStats> {
        std::sync::Arc::clone(
            self.plugins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(step.to_string())
                .or_default(),
        )
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
            dead_letters: AtomicU64::new(0),
            plugins: Default::default(),
            checkpoints: AtomicU64::new(0),
            checkpoint_millis: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
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
