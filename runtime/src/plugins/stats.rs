//! A model step's counters and their metric families, registered with
//! [`crate::metrics::Metrics::part`].

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
    /// New `model:` files swapped in while running (`reload`), and ones refused.
    pub model_swaps: std::sync::atomic::AtomicU64,
    pub model_swap_errors: std::sync::atomic::AtomicU64,
}

impl PluginStats {
    pub fn record(&self, took: std::time::Duration, rows: usize, memory: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.call_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.memory_peak.fetch_max(memory as u64, Ordering::Relaxed);
    }
}

/// Every model step of the process, by name.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    steps: std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<PluginStats>>>,
}

impl PluginMetrics {
    /// Step `step`'s counters (every worker of the process shares them).
    pub fn step(&self, step: &str) -> std::sync::Arc<PluginStats> {
        std::sync::Arc::clone(
            self.steps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(step.to_string())
                .or_default(),
        )
    }
}

impl crate::metrics::Part for PluginMetrics {
    fn expose(&self, f: &mut crate::metrics::prometheus::Exposition<'_>, _now_ms: i64) {
        use crate::metrics::prometheus::{get, snapshot};
        let p = &snapshot(&self.steps);
        f.each(
            "tickflow_plugin_calls_total",
            "counter",
            "Calls into a model plugin (one per batch).",
            "step",
            p,
            |s| Some(get(&s.calls)),
        );
        f.each(
            "tickflow_plugin_rows_total",
            "counter",
            "Rows given to a model plugin.",
            "step",
            p,
            |s| Some(get(&s.rows)),
        );
        f.each(
            "tickflow_plugin_rows_skipped_total",
            "counter",
            "Rows dropped by `on_error: skip`.",
            "step",
            p,
            |s| Some(get(&s.rows_skipped)),
        );
        f.head(
            "tickflow_plugin_errors_total",
            "counter",
            "Failed plugin calls, by kind.",
        );
        for (n, s) in p {
            for k in super::ErrorKind::ALL {
                f.sample(
                    "tickflow_plugin_errors_total",
                    &[("step", n), ("kind", k.code())],
                    get(&s.errors[k as usize]),
                );
            }
        }
        f.each(
            "tickflow_plugin_call_seconds_total",
            "counter",
            "Time spent in plugin calls.",
            "step",
            p,
            |s| Some(get(&s.call_nanos) / 1e9),
        );
        f.each(
            "tickflow_model_swaps_total",
            "counter",
            "New model files swapped in while running (per worker).",
            "step",
            p,
            |s| Some(get(&s.model_swaps)),
        );
        f.each(
            "tickflow_model_swap_errors_total",
            "counter",
            "New model files refused (not loading, other inputs or outputs), per worker.",
            "step",
            p,
            |s| Some(get(&s.model_swap_errors)),
        );
        f.each(
            "tickflow_plugin_memory_bytes",
            "gauge",
            "The largest linear memory of a plugin instance.",
            "step",
            p,
            |s| Some(get(&s.memory_peak)),
        );
    }
}
