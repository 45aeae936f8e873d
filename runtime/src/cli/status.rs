//! The live one-line status on a terminal, and the summary printed at the end of a run.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::base::record::format_ts;
use crate::base::reject::RejectReason;
use crate::metrics::Metrics;

fn human(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn watermark(m: &Metrics) -> String {
    match m.watermark.load(Ordering::Relaxed) {
        i64::MIN => "-".into(),
        wm => format_ts(wm),
    }
}

/// Prints the status line every 250 ms while `done` is false (only when `enabled`).
pub fn spawn(metrics: Arc<Metrics>, done: Arc<AtomicBool>, enabled: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        if !enabled {
            return;
        }
        let mut last = (Instant::now(), 0u64);
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            let trades = Metrics::get(&metrics.trades);
            let dt = last.0.elapsed().as_secs_f64().max(1e-9);
            let rate = (trades - last.1) as f64 / dt;
            last = (Instant::now(), trades);
            let line = format!(
                "trades {} ({}/s) | watermark {} | windows {} | files {} | rejected {} | late {}",
                human(trades as f64),
                human(rate),
                watermark(&metrics),
                Metrics::get(&metrics.windows_fired),
                Metrics::get(&metrics.files_published),
                metrics.invalid_total(),
                metrics.rejected(RejectReason::Late),
            );
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        }
        eprint!("\r\x1b[2K");
    })
}

/// One line describing a finished run.
pub fn summary(m: &Metrics, elapsed: Duration, stopped: bool) -> String {
    let trades = Metrics::get(&m.trades);
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!(
        "{}: {} trades in {:.2}s ({}/s), {} windows fired, {} revisions, {} rows in {} files, {} rejected, {} late, {} pings, {} server errors{}",
        if stopped { "stopped" } else { "done" },
        trades,
        secs,
        human(trades as f64 / secs),
        Metrics::get(&m.windows_fired),
        Metrics::get(&m.revisions_emitted),
        Metrics::get(&m.rows_written),
        Metrics::get(&m.files_published),
        m.invalid_total(),
        m.rejected(RejectReason::Late),
        Metrics::get(&m.pings),
        Metrics::get(&m.server_errors),
        match Metrics::get(&m.windows_discarded) {
            0 => String::new(),
            n => format!(", {n} incomplete windows discarded"),
        }
    )
}
