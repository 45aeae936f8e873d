//! `tickflow sim`: a Finnhub-protocol websocket server for laptops, tests and demos.
//!
//! It reproduces what clients must survive: the token checked at the upgrade (HTTP 401), a
//! reconnect storm answered with HTTP 429, one connection per token (a second drops both),
//! subscriptions without acknowledgement, `Invalid symbol` and `Subscribing to too many symbols`
//! error frames, compact key-sorted trade frames mixing symbols, pings, equities silent outside
//! US market hours (on request), and injected faults: abrupt disconnects (no close frame),
//! silent stalls, out-of-order timestamps and repeated frames.
//!
//! Each symbol's trades (prices, volumes, conditions) follow a sequence fixed by the seed, shared
//! by all connections of the simulator (a reconnect continues it). Which symbol trades next and
//! `t` (the wall clock, as on the real feed) depend on timing.

use crate::base::record::days_from_civil;
use crate::base::time::now_ms;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::generate::symbols as default_universe;

/// Faults to inject.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Drop each connection abruptly (no close frame) after this long.
    pub drop_every: Option<Duration>,
    /// Go silent (no trades, no pings) every this long ...
    pub stall_every: Option<Duration>,
    /// ... for this long.
    pub stall_for: Duration,
    /// Fraction of trades whose timestamp is moved back by up to `disorder_ms`.
    pub disorder_rate: f64,
    pub disorder_ms: i64,
    /// Fraction of frames sent twice.
    pub repeat_rate: f64,
    /// Fraction of frames sent truncated (malformed JSON).
    pub malformed_rate: f64,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub token: String,
    pub seed: u64,
    /// Trades per second over the subscribed symbols (Poisson arrivals).
    pub rate: f64,
    /// The symbol universe; anything else is an invalid symbol.
    pub symbols: Vec<String>,
    pub ping_interval: Duration,
    pub max_symbols: usize,
    /// Equities are silent outside US market hours.
    pub market_hours: bool,
    /// More connection attempts than this within `connect_window` are refused with HTTP 429.
    pub max_connects: usize,
    pub connect_window: Duration,
    pub faults: Faults,
    /// Keep a copy of every trade frame sent (for tests: [`Simulator::sent`]).
    pub record: bool,
}

/// The default universe: well-known equities, crypto and forex pairs.
pub fn default_symbols() -> Vec<String> {
    default_universe(20)
}

impl SimConfig {
    pub fn new(listen: SocketAddr, token: &str) -> SimConfig {
        SimConfig {
            listen,
            token: token.to_string(),
            seed: 42,
            rate: 200.0,
            symbols: default_symbols(),
            ping_interval: Duration::from_secs(60),
            max_symbols: 50,
            market_hours: false,
            max_connects: 20,
            connect_window: Duration::from_secs(60),
            faults: Faults::default(),
            record: false,
        }
    }
}

/// A running simulator.
pub struct Simulator {
    state: Arc<Shared>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(cfg: SimConfig) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let state = Arc::new(Shared {
            cfg,
            attempts: Mutex::new(VecDeque::new()),
            active: Mutex::new(HashMap::new()),
            next_conn: Mutex::new(0),
            sent: Mutex::new(Vec::new()),
            market: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), rx));
        Ok(Simulator {
            state,
            addr,
            shutdown,
            task,
        })
    }

    /// Every trade frame sent so far, in order (only with `record`).
    pub fn sent(&self) -> Vec<String> {
        self.state
            .sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Connections accepted so far (after the token check).
    pub fn connections(&self) -> u64 {
        *self
            .state
            .next_conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR` (without the token).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

struct Shared {
    cfg: SimConfig,
    attempts: Mutex<VecDeque<Instant>>,
    /// token → (connection id, kill switch) of the live connection.
    active: Mutex<HashMap<String, (u64, watch::Sender<bool>)>>,
    next_conn: Mutex<u64>,
    sent: Mutex<Vec<String>>,
    /// The simulated market: per symbol, its own random stream and last price.
    market: Mutex<HashMap<String, SymbolState>>,
}

struct SymbolState {
    rng: SmallRng,
    price: f64,
}

fn symbol_seed(seed: u64, symbol: &str) -> u64 {
    // FNV-1a: stable across builds and platforms.
    symbol.bytes().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, Arc::clone(&state), shutdown.clone()));
            }
        }
    }
}

fn reject(status: StatusCode, body: &str) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(body.to_string()));
    *resp.status_mut() = status;
    resp
}

fn token_of(req: &Request) -> Option<String> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_string)
}

async fn serve(stream: TcpStream, state: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let cfg = &state.cfg;
    let rate_limited = {
        let mut attempts = state.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while attempts
            .front()
            .is_some_and(|t| now.duration_since(*t) > cfg.connect_window)
        {
            attempts.pop_front();
        }
        attempts.push_back(now);
        attempts.len() > cfg.max_connects
    };
    let mut token = None;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if rate_limited {
            return Err(reject(StatusCode::TOO_MANY_REQUESTS, "Too many requests"));
        }
        match token_of(req) {
            Some(t) if t == cfg.token => {
                token = Some(t);
                Ok(resp)
            }
            _ => Err(reject(StatusCode::UNAUTHORIZED, "Invalid API key")),
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let Some(token) = token else { return };

    // One connection per token: a second one drops both.
    let (kill_tx, mut kill_rx) = watch::channel(false);
    let conn = {
        let mut n = state.next_conn.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        *n - 1
    };
    {
        let mut active = state.active.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, other)) = active.remove(&token) {
            let _ = other.send(true);
            return; // dropping `ws` closes this one abruptly too
        }
        active.insert(token.clone(), (conn, kill_tx));
    }

    let (mut sink, mut source) = ws.split();
    let mut rng = SmallRng::seed_from_u64(cfg.seed ^ conn.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let universe: Vec<String> = cfg.symbols.clone();
    let mut subscribed: BTreeSet<String> = BTreeSet::new();
    let started = Instant::now();
    let mut next_ping = started + cfg.ping_interval;
    let mut next_trade = started + exp_gap(&mut rng, cfg.rate);
    let mut next_stall = cfg.faults.stall_every.map(|d| started + d);
    let drop_at = cfg.faults.drop_every.map(|d| started + d);

    'conn: loop {
        let stalled_until = match next_stall {
            Some(at) if Instant::now() >= at => {
                let until = at + cfg.faults.stall_for;
                next_stall = cfg.faults.stall_every.map(|d| until + d);
                Some(until)
            }
            _ => None,
        };
        if let Some(until) = stalled_until {
            // Silent: read (and ignore) client messages, send nothing.
            let deadline = tokio::time::Instant::from_std(until);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = shutdown.changed() => break 'conn,
                    _ = kill_rx.changed() => break 'conn,
                    msg = source.next() => if msg.is_none() { break 'conn },
                }
            }
            next_ping = Instant::now() + cfg.ping_interval;
            next_trade = Instant::now() + exp_gap(&mut rng, cfg.rate);
            continue;
        }
        let mut wake = next_ping.min(next_trade);
        if let Some(at) = next_stall {
            wake = wake.min(at);
        }
        if let Some(at) = drop_at {
            if Instant::now() >= at {
                break 'conn; // abrupt: no close frame
            }
            wake = wake.min(at);
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = kill_rx.changed() => break,
            msg = source.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                for reply in handle_client_message(&text, &universe, cfg.max_symbols, &mut subscribed) {
                    if sink.send(Message::text(reply)).await.is_err() {
                        break 'conn;
                    }
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                let now = Instant::now();
                if now >= next_ping {
                    if sink.send(Message::text("{\"type\":\"ping\"}")).await.is_err() {
                        break;
                    }
                    next_ping = now + cfg.ping_interval;
                }
                if now >= next_trade {
                    // Everything that arrived up to now goes out in one frame.
                    let mut trades = Vec::new();
                    while next_trade <= now {
                        if let Some(t) = make_trade(&mut rng, &subscribed, &state, cfg) {
                            trades.push(t);
                        }
                        next_trade += exp_gap(&mut rng, cfg.rate);
                    }
                    if !trades.is_empty() {
                        let mut frame = format!("{{\"data\":[{}],\"type\":\"trade\"}}", trades.join(","));
                        if cfg.faults.malformed_rate > 0.0 && rng.random::<f64>() < cfg.faults.malformed_rate {
                            frame.truncate(frame.len() / 2);
                        }
                        let repeat = cfg.faults.repeat_rate > 0.0 && rng.random::<f64>() < cfg.faults.repeat_rate;
                        for _ in 0..(1 + repeat as usize) {
                            if sink.send(Message::text(frame.clone())).await.is_err() {
                                break 'conn;
                            }
                            if cfg.record {
                                state.sent.lock().unwrap_or_else(|e| e.into_inner()).push(frame.clone());
                            }
                        }
                    }
                }
            }
        }
    }
    let mut active = state.active.lock().unwrap_or_else(|e| e.into_inner());
    if active.get(&token).is_some_and(|(id, _)| *id == conn) {
        active.remove(&token);
    }
}

/// Replies to one client message (subscriptions are not acknowledged).
pub fn handle_client_message(
    text: &str,
    universe: &[String],
    max_symbols: usize,
    subscribed: &mut BTreeSet<String>,
) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return vec![];
    };
    let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or_default();
    let symbol = v
        .get("symbol")
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string();
    let error = |msg: String| serde_json::json!({"msg": msg, "type": "error"}).to_string();
    match kind {
        "subscribe" => {
            if !universe.contains(&symbol) {
                vec![error(format!("Invalid symbol {symbol}"))]
            } else if subscribed.contains(&symbol) {
                vec![]
            } else if subscribed.len() >= max_symbols {
                vec![error("Subscribing to too many symbols".into())]
            } else {
                subscribed.insert(symbol);
                vec![]
            }
        }
        "unsubscribe" => {
            subscribed.remove(&symbol);
            vec![]
        }
        _ => vec![], // subscribe-news and anything else: accepted silently
    }
}

fn exp_gap(rng: &mut SmallRng, rate: f64) -> Duration {
    let rate = rate.max(1e-3);
    Duration::from_secs_f64(-(1.0 - rng.random::<f64>()).ln() / rate)
}

fn initial_price(symbol: &str, rng: &mut SmallRng) -> f64 {
    match symbol {
        "BINANCE:BTCUSDT" => 91_000.0,
        "BINANCE:ETHUSDT" => 3_000.0,
        "BINANCE:SOLUSDT" => 140.0,
        s if s.starts_with("OANDA:") => 1.1,
        _ => 20.0 + rng.random::<f64>() * 400.0,
    }
}

/// Whether US equity markets are open at `ms` (09:30–16:00 New York time, Monday to Friday;
/// daylight saving time from the second Sunday of March to the first Sunday of November).
pub fn us_market_open(ms: i64) -> bool {
    let days = ms.div_euclid(86_400_000);
    let (year, month, day) = crate::base::record::civil_from_days(days);
    let weekday = (days + 4).rem_euclid(7); // 0 = Sunday
    // Day of month of the n-th Sunday of a month.
    let nth_sunday = |m: u32, n: i64| -> i64 {
        let first = days_from_civil(year, m, 1);
        let dow = (first + 4).rem_euclid(7);
        1 + (7 - dow) % 7 + 7 * (n - 1)
    };
    let dst = match month {
        4..=10 => true,
        3 => day as i64 >= nth_sunday(3, 2),
        11 => (day as i64) < nth_sunday(11, 1),
        _ => false,
    };
    let offset_h = if dst { 4 } else { 5 };
    let local_ms = ms - offset_h * 3_600_000;
    let local_days = local_ms.div_euclid(86_400_000);
    let local_weekday = (local_days + 4).rem_euclid(7);
    let minute = local_ms.rem_euclid(86_400_000) / 60_000;
    let _ = weekday;
    (1..=5).contains(&local_weekday) && (570..960).contains(&minute)
}

fn make_trade(
    pick: &mut SmallRng,
    subscribed: &BTreeSet<String>,
    state: &Shared,
    cfg: &SimConfig,
) -> Option<String> {
    if subscribed.is_empty() {
        return None;
    }
    let i = pick.random_range(0..subscribed.len());
    let symbol = subscribed.iter().nth(i).expect("index in range");
    let mut market = state.market.lock().unwrap_or_else(|e| e.into_inner());
    let entry = market.entry(symbol.clone()).or_insert_with(|| {
        let mut rng = SmallRng::seed_from_u64(symbol_seed(cfg.seed, symbol));
        let price = initial_price(symbol, &mut rng);
        SymbolState { rng, price }
    });
    let rng = &mut entry.rng;
    let price = &mut entry.price;
    *price = (*price * (1.0 + (rng.random::<f64>() - 0.5) * 0.002)).max(0.0001);
    let crypto = symbol.starts_with("BINANCE:");
    let forex = symbol.starts_with("OANDA:");
    let equity = !symbol.contains(':');
    let mut t = now_ms();
    if cfg.market_hours && equity && !us_market_open(t) {
        return None;
    }
    if cfg.faults.disorder_ms > 0 && rng.random::<f64>() < cfg.faults.disorder_rate {
        t -= rng.random_range(1..=cfg.faults.disorder_ms);
    }
    let (p, v) = if forex {
        (format!("{}", (*price * 1e5).round() / 1e5), "0".to_string())
    } else if crypto {
        (
            format!("{}", (*price * 100.0).round() / 100.0),
            format!("{}", (rng.random::<f64>() * 0.5 * 1e6).round() / 1e6),
        )
    } else {
        (
            format!("{}", (*price * 100.0).round() / 100.0),
            format!("{}", rng.random_range(1..500u32)),
        )
    };
    let c = match rng.random_range(0..4u32) {
        0 => "",
        1 => "\"c\":null,",
        2 => "\"c\":[],",
        _ => "\"c\":[\"1\",\"12\"],",
    };
    Some(format!(
        "{{{c}\"p\":{p},\"s\":\"{symbol}\",\"t\":{t},\"v\":{v}}}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn market_hours_follow_new_york_time() {
        // 2026-11-27 (Friday, EST): 14:30Z opens, 21:00Z closes.
        let day = 1_795_737_600_000; // 2026-11-27T00:00:00Z
        assert_eq!(crate::base::record::format_date(day), "2026-11-27");
        assert!(!us_market_open(day + (14 * 60 + 29) * 60_000));
        assert!(us_market_open(day + (14 * 60 + 30) * 60_000));
        assert!(!us_market_open(day + 21 * 3_600_000));
        // Saturday closed.
        assert!(!us_market_open(day + 86_400_000 + 15 * 3_600_000));
        // 2026-07-01 (Wednesday, EDT): 13:30Z opens.
        let july = days_from_civil(2026, 7, 1) * 86_400_000;
        assert!(us_market_open(july + (13 * 60 + 30) * 60_000));
        assert!(!us_market_open(july + (13 * 60 + 29) * 60_000));
    }

    #[test]
    fn subscriptions_follow_the_protocol() {
        let universe = vec!["AAPL".to_string(), "MSFT".to_string()];
        let mut subs = BTreeSet::new();
        assert!(
            handle_client_message(
                r#"{"type":"subscribe","symbol":"AAPL"}"#,
                &universe,
                1,
                &mut subs
            )
            .is_empty()
        );
        assert_eq!(
            handle_client_message(
                r#"{"type":"subscribe","symbol":"XYZ"}"#,
                &universe,
                1,
                &mut subs
            ),
            [r#"{"msg":"Invalid symbol XYZ","type":"error"}"#]
        );
        assert_eq!(
            handle_client_message(
                r#"{"type":"subscribe","symbol":"MSFT"}"#,
                &universe,
                1,
                &mut subs
            ),
            [r#"{"msg":"Subscribing to too many symbols","type":"error"}"#]
        );
        handle_client_message(
            r#"{"type":"unsubscribe","symbol":"AAPL"}"#,
            &universe,
            1,
            &mut subs,
        );
        assert!(subs.is_empty());
    }
}
