//! A model step's counters, read by the metrics endpoint.

use std::sync::atomic::Ordering;

/// Per model step: calls, rows, errors by kind, time in calls, memory.
#[derive(Debug, Default)]
pub struct PluginStats {
    pub calls: std::sync::atomic::AtomicU64,
    pub rows: std::sync::atomic::AtomicU64,
    pub rows_skipped: std::sync::atomic::AtomicU64,
    /// By [`super::ErrorKind`] (`kind as usize`).
    pub errors: [std::sync::atomic::AtomicU64; 5],
    pub call_nanos: std::sync::atomic::AtomicU64,
    pub memory_peak: std::sync::atomic::AtomicU64,
}

impl PluginStats {
    pub(super) fn record(&self, took: std::time::Duration, rows: usize, memory: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.call_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.memory_peak.fetch_max(memory as u64, Ordering::Relaxed);
    }
}
