//! The Finnhub websocket client: connect, subscribe, read, and survive the real feed.
//!
//! - HTTP 401 at the upgrade is fatal, with a message that says the token was refused.
//! - HTTP 429 waits at least `rate_limited_backoff` (60 s by default) before the next try.
//! - Any other failure, an abrupt drop, or silence longer than `silence_timeout` reconnects with
//!   exponential backoff and jitter (`backoff_min` → `backoff_max`), reset after a healthy minute.
//! - Every symbol is subscribed again after every reconnect.
//! - The token never appears in logs or errors: URLs are shown redacted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};

/// Where and how to connect.
#[derive(Clone)]
pub struct ClientSettings {
    /// URL without the token (`wss://ws.finnhub.io`).
    pub url: String,
    pub token: Secret,
    /// Where the token came from, for error messages (e.g. "the `FINNHUB_TOKEN` environment variable").
    pub token_origin: String,
    pub symbols: Vec<String>,
    pub silence_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub rate_limited_backoff: Duration,
    /// A connection that lasted this long resets the backoff.
    pub healthy_after: Duration,
}

/// A secret that cannot be printed by accident.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token; from now on log lines show it as `***` (see [`crate::base::secrets`]).
    pub fn new(s: String) -> Secret {
        crate::base::secrets::register(&s);
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What the client tells the source.
#[derive(Debug)]
pub enum ClientEvent {
    /// A text frame, exactly as received (shared bytes, not copied).
    Frame(tungstenite::Utf8Bytes),
    /// The client gave up (e.g. the token was refused); the run must stop.
    Fatal(String),
}

/// Counters the client keeps (read by metrics and tests).
#[derive(Debug, Default)]
pub struct ClientStats {
    pub connects: AtomicU64,
    pub reconnects: AtomicU64,
    pub silences: AtomicU64,
    pub rate_limited: AtomicU64,
    pub invalid_symbols: AtomicU64,
    pub frames: AtomicU64,
}

/// The URL shown to people: the token replaced by `***`.
pub fn redacted(url: &str) -> String {
    format!("{}?token=***", url.trim_end_matches('/'))
}

enum Outcome {
    /// The connection ended; reconnect after the usual backoff.
    Retry(String),
    /// No connection was made (unreachable host, refused, TLS, an HTTP error at the upgrade):
    /// retry after the usual backoff, saying so rather than "disconnected".
    Unreachable(String),
    /// Rate limited: wait at least this long.
    RateLimited,
    Fatal(String),
    Stopped,
}

/// Runs until `stop` is set or a fatal error; frames go to `tx`.
/// How many frames may wait for the dataflow; when full, the client stops reading (TCP
/// backpressure) instead of growing without bound.
pub const CHANNEL_FRAMES: usize = 65_536;

pub async fn run(
    settings: ClientSettings,
    tx: mpsc::Sender<ClientEvent>,
    stop: Arc<AtomicBool>,
    stats: Arc<ClientStats>,
) {
    let mut backoff = settings.backoff_min;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        let outcome = connect_once(&settings, &tx, &stop, &stats).await;
        let wait = match outcome {
            Outcome::Stopped => return,
            Outcome::Fatal(msg) => {
                let _ = tx.send(ClientEvent::Fatal(msg)).await;
                return;
            }
            Outcome::RateLimited => {
                stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %redacted(&settings.url), wait = ?settings.rate_limited_backoff, "Finnhub answered HTTP 429 (too many connections); backing off");
                settings.rate_limited_backoff.max(backoff)
            }
            Outcome::Retry(reason) => {
                if started.elapsed() >= settings.healthy_after {
                    backoff = settings.backoff_min;
                }
                let jitter = rand::rng().random_range(0.5..1.0);
                let wait = backoff.mul_f64(jitter);
                tracing::warn!(url = %redacted(&settings.url), %reason, wait = ?wait, "websocket disconnected; reconnecting");
                backoff = (backoff * 2).min(settings.backoff_max);
                wait
            }
            Outcome::Unreachable(reason) => {
                let wait = backoff.mul_f64(rand::rng().random_range(0.5..1.0));
                tracing::warn!(url = %redacted(&settings.url), %reason, wait = ?wait, "cannot reach the Finnhub feed (no connection made); retrying");
                backoff = (backoff * 2).min(settings.backoff_max);
                wait
            }
        };
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(
                Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }
}

async fn connect_once(
    settings: &ClientSettings,
    tx: &mpsc::Sender<ClientEvent>,
    stop: &AtomicBool,
    stats: &ClientStats,
) -> Outcome {
    let full = format!(
        "{}?token={}",
        with_path(&settings.url),
        settings.token.expose()
    );
    let connecting = tokio_tungstenite::connect_async(full.as_str());
    let ws = match tokio::time::timeout(Duration::from_secs(20), connecting).await {
        Err(_) => return Outcome::Unreachable("connect timed out after 20s".into()),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            return match resp.status().as_u16() {
                401 | 403 => Outcome::Fatal(format!(
                    "Finnhub refused the token (HTTP {}) at {}: check the API key in {}",
                    resp.status().as_u16(),
                    redacted(&settings.url),
                    settings.token_origin
                )),
                429 => Outcome::RateLimited,
                code => Outcome::Unreachable(format!("HTTP {code} at the websocket upgrade")),
            };
        }
        Ok(Err(e)) => {
            return Outcome::Unreachable(scrub(&e.to_string(), settings.token.expose()));
        }
        Ok(Ok((ws, _))) => ws,
    };
    stats.connects.fetch_add(1, Ordering::Relaxed);
    tracing::info!(url = %redacted(&settings.url), symbols = settings.symbols.len(), "connected to the Finnhub feed");
    let (mut sink, mut stream) = ws.split();
    for symbol in &settings.symbols {
        let msg = serde_json::json!({"type": "subscribe", "symbol": symbol}).to_string();
        if let Err(e) = sink.send(Message::text(msg)).await {
            return Outcome::Retry(format!(
                "subscribing: {}",
                scrub(&e.to_string(), settings.token.expose())
            ));
        }
    }
    let mut last_frame = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            let _ = sink.close().await;
            return Outcome::Stopped;
        }
        // Short waits, so that a stop and the silence watchdog are noticed promptly.
        // (`next()` is cancel-safe: a timed-out wait loses nothing.)
        let msg = match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
            Err(_) => {
                let silent = last_frame.elapsed();
                if silent >= settings.silence_timeout {
                    stats.silences.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Retry(format!(
                        "no frames for {silent:.1?} (silence watchdog)"
                    ));
                }
                continue;
            }
            Ok(msg) => msg,
        };
        last_frame = Instant::now();
        match msg {
            None => return Outcome::Retry("connection closed without a close frame".into()),
            Some(Err(e)) => return Outcome::Retry(scrub(&e.to_string(), settings.token.expose())),
            Some(Ok(Message::Text(text))) => {
                stats.frames.fetch_add(1, Ordering::Relaxed);
                if text.starts_with("{\"msg\":") {
                    inspect_error(&text, settings, stats);
                }
                if tx.send(ClientEvent::Frame(text)).await.is_err() {
                    return Outcome::Stopped;
                }
            }
            Some(Ok(Message::Ping(p))) => {
                let _ = sink.send(Message::Pong(p)).await;
            }
            Some(Ok(Message::Close(_))) => {
                return Outcome::Retry("the server closed the connection".into());
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Error frames: an invalid symbol is a warning (the rest keeps streaming); too many symbols
/// names the limit.
fn inspect_error(text: &str, settings: &ClientSettings, stats: &ClientStats) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    if v.get("type").and_then(|t| t.as_str()) != Some("error") {
        return;
    }
    let msg = v.get("msg").and_then(|m| m.as_str()).unwrap_or_default();
    if let Some(symbol) = msg.strip_prefix("Invalid symbol ") {
        stats.invalid_symbols.fetch_add(1, Ordering::Relaxed);
        let symbol = crate::base::text::quote(symbol, crate::base::text::QUOTE_CHARS);
        tracing::warn!(
            %symbol,
            "Finnhub: invalid symbol (check the spelling; the other symbols keep streaming)"
        );
    } else if msg.contains("too many symbols") {
        tracing::error!(
            subscribed = settings.symbols.len(),
            "Finnhub: subscribing to too many symbols — a connection allows at most 50 (`max_symbols`)"
        );
    } else {
        let message = crate::base::text::quote(msg, 200);
        tracing::warn!(%message, "Finnhub error frame");
    }
}

/// `wss://host` → `wss://host/`: the request line needs a path before the query.
fn with_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    if after_scheme.contains('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

/// Removes the token from a message (errors may echo the URL).
fn scrub(text: &str, token: &str) -> String {
    if token.is_empty() {
        text.to_string()
    } else {
        text.replace(token, "***")
    }
}
