//! The Prometheus text exposition (format 0.0.4) of [`Metrics`]: every metric is `tickflow_*`.
//! Nothing here can carry a secret: labels are step, source, reason and kind names from the spec.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use super::{Counter, Metrics, SourceStats, StepStats};
use crate::base::reject::RejectReason;
use crate::base::storage::STORAGE_RETRIES;
use crate::base::time::now_ms;
use std::sync::atomic::AtomicU64;

/// The exposition being written: families, each a HELP and TYPE head and its samples.
pub struct Exposition<'a> {
    out: &'a mut String,
}

impl Exposition<'_> {
    pub fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A family with one sample per named item (label `label`); `None` leaves an item out.
    pub fn each<T>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        items: &[(String, T)],
        value: impl Fn(&T) -> Option<f64>,
    ) {
        self.head(name, kind, help);
        for (n, item) in items {
            if let Some(v) = value(item) {
                self.sample(name, &[(label, n)], v);
            }
        }
    }

    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.head(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0. { "+Inf".into() } else { "-Inf".into() }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A registry's entries, copied out so that no lock is held while rendering.
pub fn snapshot<T>(registry: &Mutex<BTreeMap<String, Arc<T>>>) -> Vec<(String, Arc<T>)> {
    registry
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), Arc::clone(v)))
        .collect()
}

pub fn get(c: &std::sync::atomic::AtomicU64) -> f64 {
    c.load(Relaxed) as f64
}

/// Renders every metric.
pub fn render(m: &Metrics, started_ms: i64) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let mut f = Exposition { out: &mut out };
    let now = now_ms();
    let pipeline = m.pipeline.lock().unwrap_or_else(|e| e.into_inner()).clone();

    f.head("tickflow_info", "gauge", "The running pipeline (value 1).");
    f.sample(
        "tickflow_info",
        &[
            ("pipeline", &pipeline),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        1.,
    );
    f.single(
        "tickflow_start_time_seconds",
        "gauge",
        "When the run started (Unix time).",
        started_ms as f64 / 1e3,
    );

    // Input.
    f.single(
        "tickflow_frames_total",
        "counter",
        "Frames (lines, websocket messages) read.",
        get(&m.frames),
    );
    f.single(
        "tickflow_trades_total",
        "counter",
        "Valid trades accepted by the sources.",
        get(&m.trades),
    );
    f.single(
        "tickflow_pings_total",
        "counter",
        "Finnhub ping frames.",
        get(&m.pings),
    );
    f.single(
        "tickflow_server_errors_total",
        "counter",
        "Finnhub error frames.",
        get(&m.server_errors),
    );
    f.head(
        "tickflow_rejected_total",
        "counter",
        "Records rejected, by reason (late: after their window closed).",
    );
    for r in RejectReason::ALL {
        f.sample(
            "tickflow_rejected_total",
            &[("reason", r.code())],
            m.rejected(r) as f64,
        );
    }
    f.head(
        "tickflow_dead_letters_total",
        "counter",
        "Records written to the dead letters, by reason (rejected ones when `dead_letters:` is set).",
    );
    for r in RejectReason::ALL {
        f.sample(
            "tickflow_dead_letters_total",
            &[("reason", r.code())],
            get(&m.dead_lettered[r as usize]),
        );
    }

    // Steps.
    let steps = snapshot(&m.steps);
    f.head(
        "tickflow_records_in_total",
        "counter",
        "Records a step (window, model, sink) received.",
    );
    for (name, s) in steps.iter().filter(|(_, s)| s.kind != "source") {
        f.sample(
            "tickflow_records_in_total",
            &[("step", name), ("kind", s.kind)],
            get(&s.records_in),
        );
    }
    f.head(
        "tickflow_records_out_total",
        "counter",
        "Records a step (source, window, model) emitted.",
    );
    for (name, s) in steps.iter().filter(|(_, s)| s.kind != "sink") {
        f.sample(
            "tickflow_records_out_total",
            &[("step", name), ("kind", s.kind)],
            get(&s.records_out),
        );
    }
    f.head(
        "tickflow_step_records_skipped_total",
        "counter",
        "Records a step left out by design (a window in sessions: records outside every session).",
    );
    for (name, s) in steps.iter().filter(|(_, s)| s.uses(Counter::Skipped)) {
        f.sample(
            "tickflow_step_records_skipped_total",
            &[("step", name)],
            get(&s.records_skipped),
        );
    }
    f.head(
        "tickflow_step_rows_filled_total",
        "counter",
        "Rows a window step emitted for windows without records (`fill:`), also counted as records out.",
    );
    for (name, s) in steps.iter().filter(|(_, s)| s.uses(Counter::Filled)) {
        f.sample(
            "tickflow_step_rows_filled_total",
            &[("step", name)],
            get(&s.rows_filled),
        );
    }

    f.head(
        "tickflow_step_rows_unmatched_total",
        "counter",
        "Records a lookup or asof_join step found no match for (`how: left` keeps them with NULLs, `inner` drops them).",
    );
    for (name, s) in steps.iter().filter(|(_, s)| s.uses(Counter::Unmatched)) {
        f.sample(
            "tickflow_step_rows_unmatched_total",
            &[("step", name)],
            get(&s.rows_unmatched),
        );
    }
    f.head(
        "tickflow_step_rows_expired_total",
        "counter",
        "State an asof_join step let go of past its `state_ttl` (a side's watermark stopped): left records joined early, right records dropped.",
    );
    for (name, s) in steps.iter().filter(|(_, s)| s.uses(Counter::Expired)) {
        f.sample(
            "tickflow_step_rows_expired_total",
            &[("step", name)],
            get(&s.rows_expired),
        );
    }

    for (metric, help, get_of) in [
        (
            "tickflow_table_reloads_total",
            "Versions of its table a lookup step took in after the file changed (`reload:`).",
            (|s: &StepStats| &s.table_reloads) as fn(&StepStats) -> &AtomicU64,
        ),
        (
            "tickflow_table_reload_errors_total",
            "Reloads of a lookup step's table that failed (missing, malformed or too large file): the last good table is kept.",
            |s: &StepStats| &s.table_reload_errors,
        ),
    ] {
        f.head(metric, "counter", help);
        for (name, s) in steps.iter().filter(|(_, s)| s.uses(Counter::TableReloads)) {
            f.sample(metric, &[("step", name)], get(get_of(s)));
        }
    }

    // Sources.
    let sources = snapshot(&m.sources);
    let watermark = |s: &SourceStats| {
        let wm = s.watermark.load(Relaxed);
        (wm > i64::MIN && wm < i64::MAX).then_some(wm)
    };
    f.each(
        "tickflow_watermark_seconds",
        "gauge",
        "A source's event-time watermark (Unix time).",
        "source",
        &sources,
        |s| watermark(s).map(|wm| wm as f64 / 1e3),
    );
    f.each(
        "tickflow_watermark_lag_seconds",
        "gauge",
        "Wall clock minus a source's watermark.",
        "source",
        &sources,
        |s| watermark(s).map(|wm| (now - wm) as f64 / 1e3),
    );

    // Windows and output.
    f.single(
        "tickflow_windows_fired_total",
        "counter",
        "Windows fired (bars emitted on time).",
        get(&m.windows_fired),
    );
    f.single(
        "tickflow_window_revisions_total",
        "counter",
        "Revised bars emitted for late trades.",
        get(&m.revisions_emitted),
    );
    f.single(
        "tickflow_late_revisions_total",
        "counter",
        "Late trades that revised an already-fired window.",
        get(&m.late_revisions),
    );
    f.single(
        "tickflow_windows_discarded_total",
        "counter",
        "Incomplete windows discarded at a stop.",
        get(&m.windows_discarded),
    );
    f.single(
        "tickflow_rows_written_total",
        "counter",
        "Rows written by sinks.",
        get(&m.rows_written),
    );
    f.single(
        "tickflow_files_published_total",
        "counter",
        "Files published by sinks.",
        get(&m.files_published),
    );
    f.single(
        "tickflow_bytes_published_total",
        "counter",
        "Bytes of the files published by sinks.",
        get(&m.bytes_published),
    );
    f.single(
        "tickflow_storage_retries_total",
        "counter",
        "Remote storage attempts that failed and were retried (outages).",
        STORAGE_RETRIES.load(Relaxed) as f64,
    );

    // Cluster.
    f.single(
        "tickflow_cluster_processes",
        "gauge",
        "Processes in this process's cluster (0: not running as a cluster).",
        get(&m.cluster_processes),
    );
    f.single(
        "tickflow_rescales_total",
        "counter",
        "Cluster membership changes carried out (final checkpoint, new cluster, state restored).",
        get(&m.rescales),
    );
    f.single(
        "tickflow_rescale_pause_seconds",
        "gauge",
        "Pause of the last rescale: from the membership change seen to the new cluster formed with its state restored.",
        get(&m.rescale_pause_ms) / 1e3,
    );

    // Checkpoints.
    f.single(
        "tickflow_checkpoints_total",
        "counter",
        "Checkpoints completed.",
        get(&m.checkpoints),
    );
    let completed = m.checkpoint_completed_ms.load(Relaxed);
    f.head(
        "tickflow_checkpoint_duration_seconds",
        "gauge",
        "How long the last checkpoint took.",
    );
    f.head(
        "tickflow_checkpoint_age_seconds",
        "gauge",
        "Seconds since the last checkpoint completed.",
    );
    if completed > 0 {
        f.sample(
            "tickflow_checkpoint_duration_seconds",
            &[],
            get(&m.checkpoint_millis) / 1e3,
        );
        f.sample(
            "tickflow_checkpoint_age_seconds",
            &[],
            (now - completed).max(0) as f64 / 1e3,
        );
    }

    // What components registered (a model step's calls, a websocket's reconnects, ...).
    for part in m.parts() {
        part.expose(&mut f, now);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_help_type_and_escaped_labels() {
        let m = Metrics::default();
        *m.pipeline.lock().unwrap() = "a \"quoted\" name".into();
        m.trades.fetch_add(42, Relaxed);
        m.step("bars_1m", "window").records_in.fetch_add(7, Relaxed);
        m.source("trades")
            .watermark
            .store(1_700_000_000_000, Relaxed);
        let text = render(&m, 0);
        assert!(text.contains("# TYPE tickflow_trades_total counter\ntickflow_trades_total 42\n"));
        assert!(text.contains(r#"tickflow_info{pipeline="a \"quoted\" name",version="#));
        assert!(text.contains("tickflow_records_in_total{step=\"bars_1m\",kind=\"window\"} 7\n"));
        assert!(text.contains("tickflow_watermark_seconds{source=\"trades\"} 1700000000\n"));
        // Every sample line belongs to a family declared before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{line}");
            }
        }
    }
}
