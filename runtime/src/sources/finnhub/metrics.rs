//! The Finnhub source's own metric families (websocket connects, reconnects, silences, rate
//! limits, seconds since the last frame, stale symbols), registered with
//! [`crate::metrics::Metrics::part`] by the worker that holds the connection.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};

use super::client::ClientStats;
use crate::metrics::Part;
use crate::metrics::prometheus::{Exposition, get, snapshot};

/// One source's websocket counters.
#[derive(Debug)]
pub struct WebsocketStats {
    pub client: Arc<ClientStats>,
    /// When the last frame arrived (ms since epoch), 0 before the first.
    pub last_frame_ms: AtomicI64,
    /// Subscribed symbols without a trade for `stale_after`.
    pub stale_symbols: AtomicU64,
}

/// Every Finnhub source of the process, by name.
#[derive(Debug, Default)]
pub struct WebsocketMetrics {
    sources: Mutex<BTreeMap<String, Arc<WebsocketStats>>>,
}

impl WebsocketMetrics {
    /// Registers source `name`'s connection.
    pub fn add(&self, name: &str, client: Arc<ClientStats>) -> Arc<WebsocketStats> {
        let stats = Arc::new(WebsocketStats {
            client,
            last_frame_ms: AtomicI64::new(0),
            stale_symbols: AtomicU64::new(0),
        });
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Arc::clone(&stats));
        stats
    }
}

impl Part for WebsocketMetrics {
    fn expose(&self, f: &mut Exposition<'_>, now_ms: i64) {
        let ws = &snapshot(&self.sources);
        let counter = |f: &mut Exposition<'_>, name, help, value: fn(&ClientStats) -> &AtomicU64| {
            f.each(name, "counter", help, "source", ws, |s| {
                Some(get(value(&s.client)))
            });
        };
        counter(f, "tickflow_websocket_connects_total", "Websocket connections opened.", |c| {
            &c.connects
        });
        counter(
            f,
            "tickflow_websocket_reconnects_total",
            "Websocket reconnections (drops, errors, silences).",
            |c| &c.reconnects,
        );
        counter(
            f,
            "tickflow_websocket_silences_total",
            "Connections dropped by the silence watchdog.",
            |c| &c.silences,
        );
        counter(
            f,
            "tickflow_websocket_rate_limited_total",
            "Connections refused with HTTP 429.",
            |c| &c.rate_limited,
        );
        f.each(
            "tickflow_websocket_silence_seconds",
            "gauge",
            "Seconds since the last websocket frame.",
            "source",
            ws,
            |s| {
                let last = s.last_frame_ms.load(Relaxed);
                (last > 0).then(|| (now_ms - last).max(0) as f64 / 1e3)
            },
        );
        f.each(
            "tickflow_stale_symbols",
            "gauge",
            "Subscribed symbols without a trade for `stale_after`.",
            "source",
            ws,
            |s| Some(s.stale_symbols.load(Relaxed) as f64),
        );
    }
}
