//! The Finnhub source behind the source contract.

use std::sync::Arc;

use timely::dataflow::{Scope, StreamVec};

use super::config::FinnhubConfig;
use super::source::{FinnhubShared, finnhub_stream};
use crate::base::record::Trade;
use crate::sources::{OpenCx, SourceBuildCx, SourceConfig, SourceOp};
use crate::base::kinds::Checks;

impl SourceConfig for FinnhubConfig {
    fn check(&self, cx: &mut Checks<'_>) {
    if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
        cx.error("url",
            format!("`{}` is not a websocket URL (ws:// or wss://)", self.url),
        );
    }
    if self.url.contains("token=") {
        cx.error("url",
            format!(
                "do not put the token in the URL; set the `{}` environment variable instead",
                self.token_env
            ),
        );
    }
    if self.token_env.is_empty()
        || !self
            .token_env
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
    {
        cx.error("token_env",
            format!("`{}` is not an environment variable name", self.token_env),
        );
    }
    if self.symbols.is_empty() {
        cx.error("symbols",
            "subscribe to at least one symbol"
        );
    }
    if self.symbols.len() > self.max_symbols {
        cx.error("symbols",
            format!(
                "{} symbols is more than one Finnhub connection allows ({}, `max_symbols`)",
                self.symbols.len(),
                self.max_symbols
            ),
        );
    }
    for (i, s) in self.symbols.iter().enumerate() {
        if s.trim().is_empty() || s.contains(char::is_whitespace) {
            cx.error(&format!("symbols.{i}"), format!("`{s}` is not a symbol"));
        } else if self.symbols[..i].contains(s) {
            cx.error(&format!("symbols.{i}"), format!("`{s}` is listed twice"));
        }
    }
    for (field, d) in [
        ("silence_timeout", self.silence_timeout),
        ("idle_timeout", self.idle_timeout),
        ("stale_after", self.stale_after),
        ("backoff_min", self.backoff_min),
        ("backoff_max", self.backoff_max),
    ] {
        if d.as_millis() <= 0 {
            cx.error(field, format!("must be positive, got {d}"));
        }
    }
    if self.backoff_max < self.backoff_min {
        cx.error("backoff_max",
            format!("must not be below backoff_min ({})", self.backoff_min),
        );
    }
    if self.max_out_of_orderness.as_millis() < 0 {
        cx.error("max_out_of_orderness",
            "must not be negative"
        );
    }
    if !(self.simulator.rate.is_finite() && self.simulator.rate > 0.0) {
        cx.error("simulator.rate",
            format!(
                "must be a positive number of trades per second, got {}",
                self.simulator.rate
            ),
        );
    }
    }
    fn describe(&self) -> String {
        format!(
            "finnhub {}, {} symbols, out-of-orderness {}",
            super::client::redacted(&self.url),
            self.symbols.len(),
            self.max_out_of_orderness
        )
    }
    fn live(&self) -> bool {
        true
    }
    fn max_out_of_orderness_ms(&self) -> i64 {
        self.max_out_of_orderness.as_millis()
    }
    fn max_future_ms(&self) -> i64 {
        self.max_future.as_millis()
    }
    fn position_of(&self, seq: u64) -> u64 {
        crate::sources::line_of(seq)
    }
    fn rewinds(&self) -> Option<String> {
        None
    }
    fn open(&self, name: &str, cx: &OpenCx<'_>) -> anyhow::Result<Arc<dyn SourceOp>> {
        // One connection, held by global worker 0: in the leader's process.
        let shared = FinnhubShared::prepare(name, self, cx.rt, cx.leader)?;
        Ok(Arc::new(Finnhub {
            shared: Arc::new(shared),
            config: self.clone(),
        }))
    }
}

/// A prepared Finnhub connection (or simulator).
struct Finnhub {
    shared: Arc<FinnhubShared>,
    config: FinnhubConfig,
}

impl SourceOp for Finnhub {
    fn build<'s>(&self, scope: Scope<'s, u64>, cx: &SourceBuildCx<'_>) -> StreamVec<'s, u64, Trade> {
        finnhub_stream(scope, cx, Arc::clone(&self.shared), &self.config)
    }
    fn shutdown(&self, rt: &tokio::runtime::Handle) {
        self.shared.shutdown(rt);
    }
}

impl crate::worker::context::OnControl for Finnhub {}
