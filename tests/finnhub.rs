use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tickflow::sim::server::{Faults, SimConfig, Simulator};
use tickflow::sources::finnhub::client::{self, ClientEvent, ClientSettings, ClientStats, Secret};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::{Cell, bin, read_dead_letters, read_parquet_dir, repo};

const TOKEN: &str = "test-token";

fn config() -> SimConfig {
    let mut c = SimConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN);
    c.rate = 400.0;
    c
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(sim: &Simulator, token: &str) -> Result<Ws, tungstenite::Error> {
    tokio_tungstenite::connect_async(format!("{}/?token={token}", sim.url()))
        .await
        .map(|(ws, _)| ws)
}

async fn subscribe(ws: &mut Ws, symbols: &[&str]) {
    for s in symbols {
        ws.send(Message::text(format!(
            "{{\"type\":\"subscribe\",\"symbol\":\"{s}\"}}"
        )))
        .await
        .unwrap();
    }
}

/// Text frames received within `for_`.
async fn collect(ws: &mut Ws, for_: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + for_;
    let mut out = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(t) = msg {
            out.push(t.to_string());
        }
    }
    out
}

fn http_status(e: tungstenite::Error) -> u16 {
    match e {
        tungstenite::Error::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_refuses_a_wrong_or_missing_token_with_401() {
    let sim = Simulator::start(config()).await.unwrap();
    assert_eq!(http_status(connect(&sim, "wrong").await.unwrap_err()), 401);
    let no_token = tokio_tungstenite::connect_async(format!("{}/", sim.url()))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(http_status(no_token), 401);
    assert!(connect(&sim, TOKEN).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_sends_finnhub_shaped_frames_for_subscribed_symbols_and_pings() {
    let mut cfg = config();
    cfg.ping_interval = Duration::from_millis(300);
    let sim = Simulator::start(cfg).await.unwrap();
    let mut ws = connect(&sim, TOKEN).await.unwrap();
    subscribe(&mut ws, &["AAPL", "BINANCE:BTCUSDT", "OANDA:EUR_USD"]).await;
    let frames = collect(&mut ws, Duration::from_millis(1300)).await;
    let pings = frames
        .iter()
        .filter(|f| *f == "{\"type\":\"ping\"}")
        .count();
    assert!(pings >= 3, "{pings} pings in 1.3 s at a 300 ms interval");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (mut trades, mut multi) = (0, 0);
    let mut seen = BTreeSet::new();
    for f in frames.iter().filter(|f| f.contains("\"trade\"")) {
        let v: serde_json::Value = serde_json::from_str(f).unwrap();
        // Compact, keys sorted, exactly as serialized by a JSON library with sorted keys.
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["data", "type"]);
        assert_eq!(&serde_json::to_string(&v).unwrap(), f, "compact JSON");
        let data = v["data"].as_array().unwrap();
        multi += (data.len() > 1) as usize;
        for t in data {
            let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted, "trade keys are sorted: {t}");
            let s = t["s"].as_str().unwrap();
            seen.insert(s.to_string());
            assert!(
                (now - 10_000..=now + 1_000).contains(&t["t"].as_i64().unwrap()),
                "t is ms since the epoch: {t}"
            );
            assert!(t["p"].as_f64().unwrap() > 0.0);
            let v = t["v"].as_f64().unwrap();
            match s {
                "OANDA:EUR_USD" => assert_eq!(v, 0.0, "forex sends price updates with v=0"),
                "BINANCE:BTCUSDT" => assert!(v < 1.0, "fractional crypto volume: {v}"),
                _ => assert_eq!(v.fract(), 0.0),
            }
            match t.get("c") {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::Array(codes)) => {
                    assert!(codes.iter().all(|c| c.is_string()))
                }
                Some(other) => panic!("c = {other}"),
            }
            trades += 1;
        }
    }
    assert!(trades > 200, "about 400 trades/s: got {trades}");
    assert!(multi > 0, "several trades per frame");
    assert_eq!(
        seen,
        BTreeSet::from([
            "AAPL".to_string(),
            "BINANCE:BTCUSDT".into(),
            "OANDA:EUR_USD".into()
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_reports_invalid_symbols_and_the_symbol_limit() {
    let mut cfg = config();
    cfg.max_symbols = 2;
    let sim = Simulator::start(cfg).await.unwrap();
    let mut ws = connect(&sim, TOKEN).await.unwrap();
    subscribe(&mut ws, &["AAPL", "NOPE", "MSFT", "NVDA"]).await;
    let frames = collect(&mut ws, Duration::from_millis(500)).await;
    let errors: Vec<&String> = frames.iter().filter(|f| f.contains("\"error\"")).collect();
    assert_eq!(
        errors,
        [
            "{\"msg\":\"Invalid symbol NOPE\",\"type\":\"error\"}",
            "{\"msg\":\"Subscribing to too many symbols\",\"type\":\"error\"}"
        ]
    );
    assert!(
        frames.iter().any(|f| f.contains("\"AAPL\""))
            && !frames.iter().any(|f| f.contains("\"NVDA\""))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_allows_one_connection_per_token_and_limits_reconnect_storms() {
    let mut cfg = config();
    cfg.max_connects = 3;
    let sim = Simulator::start(cfg).await.unwrap();
    let mut first = connect(&sim, TOKEN).await.unwrap();
    subscribe(&mut first, &["AAPL"]).await;
    let mut second = connect(&sim, TOKEN).await.unwrap();
    // A second connection drops both.
    let end_first = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = first.next().await {}
    })
    .await;
    let end_second = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = second.next().await {}
    })
    .await;
    assert!(
        end_first.is_ok() && end_second.is_ok(),
        "both connections end"
    );
    let _third = connect(&sim, TOKEN).await.unwrap();
    assert_eq!(
        http_status(connect(&sim, TOKEN).await.unwrap_err()),
        429,
        "the 4th attempt within a minute"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_is_deterministic_for_a_seed() {
    /// The first 20 trades of each symbol: (price, volume, conditions).
    async fn per_symbol(seed: u64) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut cfg = config();
        cfg.seed = seed;
        let sim = Simulator::start(cfg).await.unwrap();
        let mut ws = connect(&sim, TOKEN).await.unwrap();
        subscribe(&mut ws, &["AAPL", "MSFT", "BINANCE:ETHUSDT"]).await;
        let frames = collect(&mut ws, Duration::from_millis(800)).await;
        let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for f in frames.iter().filter(|f| f.contains("\"trade\"")) {
            let v: serde_json::Value = serde_json::from_str(f).unwrap();
            for t in v["data"].as_array().unwrap() {
                let seq = out.entry(t["s"].as_str().unwrap().to_string()).or_default();
                if seq.len() < 20 {
                    seq.push(format!(
                        "{} {} {}",
                        t["p"],
                        t["v"],
                        t.get("c").map(|c| c.to_string()).unwrap_or_default()
                    ));
                }
            }
        }
        out
    }
    let a = per_symbol(7).await;
    let b = per_symbol(7).await;
    let c = per_symbol(8).await;
    assert_eq!(a.len(), 3);
    assert!(a.values().all(|v| v.len() == 20), "{a:?}");
    assert_eq!(a, b, "same seed, same trades per symbol");
    assert_ne!(a, c, "another seed, other trades");
}

fn settings(sim: &Simulator, symbols: &[&str]) -> ClientSettings {
    ClientSettings {
        url: sim.url(),
        token: Secret::new(TOKEN.into()),
        token_origin: "the test".into(),
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        silence_timeout: Duration::from_millis(600),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        rate_limited_backoff: Duration::from_millis(300),
        healthy_after: Duration::from_secs(60),
    }
}

/// Runs the client for `for_`; returns the frames it delivered and its counters.
async fn run_client(
    settings: ClientSettings,
    for_: Duration,
) -> (Vec<String>, Option<String>, Arc<ClientStats>) {
    let (tx, mut rx) = mpsc::channel(client::CHANNEL_FRAMES);
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ClientStats::default());
    let task = tokio::spawn(client::run(
        settings,
        tx,
        Arc::clone(&stop),
        Arc::clone(&stats),
    ));
    let deadline = Instant::now() + for_;
    let (mut frames, mut fatal) = (Vec::new(), None);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            Ok(Some(ClientEvent::Frame(f))) => frames.push(f.to_string()),
            Ok(Some(ClientEvent::Fatal(m))) => {
                fatal = Some(m);
                break;
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the client stops promptly");
    while let Ok(ClientEvent::Frame(f)) = rx.try_recv() {
        frames.push(f.to_string());
    }
    (frames, fatal, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_after_abrupt_drops_and_keeps_every_frame_sent() {
    let mut cfg = config();
    cfg.record = true;
    cfg.faults = Faults {
        drop_every: Some(Duration::from_millis(500)),
        repeat_rate: 0.1,
        malformed_rate: 0.05,
        ..Faults::default()
    };
    let sim = Simulator::start(cfg).await.unwrap();
    let (frames, fatal, stats) = run_client(
        settings(&sim, &["AAPL", "MSFT"]),
        Duration::from_millis(2500),
    )
    .await;
    assert!(fatal.is_none());
    assert!(
        stats.connects.load(Ordering::Relaxed) >= 3,
        "reconnected after each drop: {stats:?}"
    );
    let received: Vec<&String> = frames
        .iter()
        .filter(|f| f.starts_with("{\"data\""))
        .collect();
    let sent = sim.sent();
    // Every frame the server sent, in order (repeats and malformed ones included): nothing lost
    // across the reconnects, and the subscriptions were renewed each time. Only the frames still
    // in flight when the client was stopped at the end may be missing.
    assert!(
        received.len() <= sent.len() && sent.len() - received.len() <= 5,
        "{} received, {} sent",
        received.len(),
        sent.len()
    );
    assert!(received.iter().zip(&sent).all(|(r, s)| *r == s));
    assert!(sim.connections() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_watchdog_reconnects_a_silent_connection() {
    let mut cfg = config();
    cfg.faults = Faults {
        stall_every: Some(Duration::from_millis(300)),
        stall_for: Duration::from_secs(30),
        ..Faults::default()
    };
    let sim = Simulator::start(cfg).await.unwrap();
    let (frames, _, stats) =
        run_client(settings(&sim, &["AAPL"]), Duration::from_millis(2500)).await;
    assert!(stats.silences.load(Ordering::Relaxed) >= 2, "{stats:?}");
    assert!(stats.connects.load(Ordering::Relaxed) >= 3, "{stats:?}");
    assert!(frames.len() > 10, "trades flow again after each reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_stops_with_a_clear_error_when_the_token_is_refused() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut s = settings(&sim, &["AAPL"]);
    s.token = Secret::new("not-the-token".into());
    let (_, fatal, _) = run_client(s, Duration::from_secs(3)).await;
    let fatal = fatal.expect("a fatal error");
    assert!(fatal.contains("refused the token (HTTP 401)"), "{fatal}");
    assert!(
        !fatal.contains("not-the-token"),
        "the token never appears: {fatal}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_backs_off_on_429() {
    let mut cfg = config();
    cfg.max_connects = 1;
    cfg.connect_window = Duration::from_millis(1000);
    cfg.faults.drop_every = Some(Duration::from_millis(200));
    let sim = Simulator::start(cfg).await.unwrap();
    let mut s = settings(&sim, &["AAPL"]);
    s.rate_limited_backoff = Duration::from_millis(1200);
    let (frames, fatal, stats) = run_client(s, Duration::from_millis(3000)).await;
    assert!(fatal.is_none());
    let limited = stats.rate_limited.load(Ordering::Relaxed);
    // Dropped after 200 ms and refused right after (a second attempt within the window); the
    // client then waits the whole rate-limit back-off instead of hammering the server, and the
    // next attempt succeeds.
    assert!((1..=2).contains(&limited), "{stats:?}");
    assert!(
        stats.connects.load(Ordering::Relaxed) >= 2,
        "connected again once allowed: {stats:?}"
    );
    assert!(!frames.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_keeps_streaming_past_invalid_symbols_and_the_symbol_limit() {
    let mut cfg = config();
    cfg.max_symbols = 2;
    let sim = Simulator::start(cfg).await.unwrap();
    let (frames, fatal, stats) = run_client(
        settings(&sim, &["AAPL", "XYZ", "MSFT", "NVDA"]),
        Duration::from_millis(1000),
    )
    .await;
    assert!(fatal.is_none());
    assert_eq!(stats.invalid_symbols.load(Ordering::Relaxed), 1);
    assert!(frames.iter().any(|f| f.contains("too many symbols")));
    assert!(
        frames.iter().any(|f| f.contains("\"AAPL\""))
            && frames.iter().any(|f| f.contains("\"MSFT\""))
    );
}

#[test]
fn quickstart_streams_from_the_builtin_simulator_and_writes_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let started_ms = tickflow::base::time::now_ms();
    // 24 s: the first complete 10 s window may start 10 s after the run and fires 2 s (the
    // out-of-orderness) after its end.
    let out = std::process::Command::new(bin())
        .args(["run", "specs/quickstart.yaml", "--for", "24s"])
        .current_dir(repo())
        .env_remove("FINNHUB_TOKEN")
        .env("OUT_URL", dir.path())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("built-in Finnhub simulator"), "{stderr}");
    assert!(elapsed >= Duration::from_secs(24), "{elapsed:?}");

    let (names, bars) = read_parquet_dir(&dir.path().join("bars_10s"));
    assert!(!bars.is_empty(), "10-second bars within seconds: {stderr}");
    assert_eq!(names[..3], ["symbol", "window_start", "window_end"]);
    let (tnames, trades) = read_parquet_dir(&dir.path().join("trades"));
    assert_eq!(
        tnames,
        ["symbol", "price", "volume", "timestamp", "conditions"]
    );
    // Each published bar is complete: its count and volume are those of the raw trades in it.
    for bar in &bars {
        let (Cell::Str(sym), Cell::I64(start), Cell::I64(end)) = (&bar[0], &bar[1], &bar[2]) else {
            panic!()
        };
        // Windows that began before the run would be partial: they are skipped.
        assert!(
            *start >= started_ms,
            "{sym}: a bar from before the start ({start} < {started_ms})"
        );
        let inside: Vec<&Vec<Cell>> = trades
            .iter()
            .filter(|t| {
                t[0] == Cell::Str(sym.clone())
                    && matches!(t[3], Cell::I64(ts) if ts >= *start && ts < *end)
            })
            .collect();
        assert_eq!(
            bar[9],
            Cell::I64(inside.len() as i64),
            "{sym} [{start}, {end})"
        );
    }
    let (dead, _) = read_dead_letters(&dir.path().join("dead_letters"));
    assert!(dead.is_empty(), "{dead:?}");
}

#[test]
fn live_frames_archived_replay_to_the_same_bars() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cfg = config();
    cfg.faults = Faults {
        disorder_rate: 0.05,
        disorder_ms: 3000,
        malformed_rate: 0.02,
        repeat_rate: 0.02,
        ..Faults::default()
    };
    let sim = rt.block_on(Simulator::start(cfg)).unwrap();
    let live = format!(
        "name: live
sources:
  trades:
    type: finnhub
    url: {}
    token_env: SIM_TEST_TOKEN
    symbols: [AAPL, MSFT, \"BINANCE:BTCUSDT\"]
    max_out_of_orderness: 1s
    simulator: {{ when: never }}
    archive: {{ path: {} }}
steps:
  bars: {{ type: window, input: trades, window: {{ type: tumbling, size: 1s }}, aggregates: {{ n: {{ fn: count }}, v: {{ fn: sum, field: volume }}, c: {{ fn: last, field: price }} }} }}
sinks:
  out: {{ type: parquet, input: bars, path: {} }}
dead_letters: {{ path: {} }}
",
        sim.url(),
        dir.path().join("archive").display(),
        dir.path().join("live").display(),
        dir.path().join("live-dead").display()
    );
    std::fs::write(dir.path().join("live.yaml"), live).unwrap();
    let out = std::process::Command::new(bin())
        .args(["run", "--for", "5s"])
        .arg(dir.path().join("live.yaml"))
        .env("SIM_TEST_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (dead, _) = read_dead_letters(&dir.path().join("live-dead"));
    assert!(
        dead.get("malformed_frame").copied().unwrap_or(0) > 0,
        "malformed frames are dead-lettered: {dead:?}"
    );

    // The archive replays to the very same bars (those the live run completed).
    let mut archived = Vec::new();
    crate::support::collect_files(&dir.path().join("archive"), "jsonl", &mut archived);
    assert_eq!(archived.len(), 1);
    let replay = std::fs::read_to_string(dir.path().join("live.yaml"))
        .unwrap()
        .replace(
            "type: finnhub",
            &format!("type: replay\n    path: {}", archived[0].display()),
        )
        .lines()
        .filter(|l| {
            !["url:", "token_env:", "symbols:", "simulator:", "archive:"]
                .iter()
                .any(|k| l.trim_start().starts_with(k))
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            &dir.path().join("live").display().to_string(),
            &dir.path().join("replayed").display().to_string(),
        );
    std::fs::write(dir.path().join("replay.yaml"), replay).unwrap();
    let out = std::process::Command::new(bin())
        .arg("run")
        .arg(dir.path().join("replay.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, mut live_rows) = read_parquet_dir(&dir.path().join("live"));
    let (_, replayed) = read_parquet_dir(&dir.path().join("replayed"));
    assert!(live_rows.len() >= 3, "{live_rows:?}");
    live_rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    for row in &live_rows {
        assert!(
            replayed.contains(row),
            "live bar {row:?} is not in the replay"
        );
    }
    rt.block_on(sim.stop());
}

/// A finnhub spec against `url` reading its token from `TF_TEST_TOKEN`, with no simulator.
fn live_spec(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let spec = dir.join("live.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: live
sources:
  trades:
    type: finnhub
    token_env: TF_TEST_TOKEN
    url: {url}
    symbols: [AAPL, MSFT]
    simulator: {{ when: never }}
    backoff_min: 200ms
sinks:
  out: {{ type: parquet, input: trades, path: {} }}
",
            dir.join("out").display()
        ),
    )
    .unwrap();
    spec
}

fn run_live(
    spec: &std::path::Path,
    token: &str,
    for_: &str,
    rust_log: &str,
) -> std::process::Output {
    crate::hardening::output_within(
        std::process::Command::new(bin())
            .args(["run", "--no-status", "--for", for_])
            .arg(spec)
            .env("TF_TEST_TOKEN", token)
            .env("RUST_LOG", rust_log),
        Duration::from_secs(60),
    )
}

/// The token never appears in the logs, even at trace level (the websocket library logs its
/// request line, `GET /?token=...`, there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_never_logged_even_at_trace_level() {
    let token = "Tr4ce-Secret-Token-42";
    let sim = Simulator::start(SimConfig::new("127.0.0.1:0".parse().unwrap(), token))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = live_spec(dir.path(), &sim.url());
    let out = tokio::task::spawn_blocking(move || run_live(&spec, token, "3s", "trace"))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("TRACE"), "trace logging was on");
    assert!(stderr.contains("connected to the Finnhub feed"), "{stderr}");
    assert!(!stderr.contains(token), "the token leaked into the logs");
    sim.stop().await;
}

/// A refused token stops the run with one clear message (it was printed twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_reported_once() {
    let sim = Simulator::start(config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = live_spec(dir.path(), &sim.url());
    let out = tokio::task::spawn_blocking(move || run_live(&spec, "wrong-token", "20s", "info"))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("refused the token (HTTP 401)").count(),
        1,
        "{stderr}"
    );
    sim.stop().await;
}

/// A host that never answers is "cannot reach", not "disconnected" (it never connected).
#[test]
fn an_unreachable_feed_says_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bind one and let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = live_spec(dir.path(), &format!("ws://127.0.0.1:{port}"));
    let out = run_live(&spec, "some-token-value", "2s", "info");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot reach the Finnhub feed"), "{stderr}");
    assert!(!stderr.contains("disconnected"), "{stderr}");
}
