//! Websocket feed benchmark: frames over a real loopback websocket → the Finnhub client → bars →
//! Parquet, against the raw read rate of the same websocket (the ceiling).
//!
//!     cargo bench --bench feed                     # 1M trades, 50 symbols
//!     cargo bench --bench feed -- --trades 3000000
//!
//! A small server (its own thread and runtime) sends pre-generated Finnhub frames as fast as the
//! socket takes them, so neither side waits for a simulated clock. Prints trades/s for a plain
//! websocket reader (counting trades, no parsing) and for the whole tickflow pipeline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tickflow::sim::generate::{GenOptions, generate};
use tokio_tungstenite::tungstenite::Message;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Serves every connection the same frames, as fast as possible, then idles.
fn start_blaster(frames: Arc<Vec<String>>) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let frames = Arc::clone(&frames);
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let (mut sink, mut source) = ws.split();
                    tokio::spawn(async move { while let Some(Ok(_)) = source.next().await {} });
                    for f in frames.iter() {
                        if sink.feed(Message::text(f.clone())).await.is_err() {
                            return;
                        }
                    }
                    let _ = sink.flush().await;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let trades: u64 = arg(&args, "--trades")
        .map(|s| s.parse().unwrap())
        .unwrap_or(1_000_000);
    let symbols: usize = arg(&args, "--symbols")
        .map(|s| s.parse().unwrap())
        .unwrap_or(50);
    let mut buf = Vec::new();
    let opts = GenOptions {
        trades,
        symbols,
        seed: 3,
        mean_gap_ms: 2.0,
        ping_every: 0,
        ..GenOptions::default()
    };
    generate(&opts, &mut buf).unwrap();
    let frames: Vec<String> = String::from_utf8(buf)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let bytes: usize = frames.iter().map(|f| f.len()).sum();
    println!(
        "input: {trades} trades in {} frames ({:.1} MiB), {symbols} symbols",
        frames.len(),
        bytes as f64 / (1 << 20) as f64
    );
    let frames = Arc::new(frames);
    let addr = start_blaster(Arc::clone(&frames));

    // 1. The ceiling: read the websocket, count trades, nothing else.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let raw = rt.block_on(async {
        let started = Instant::now();
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/?token=x"))
            .await
            .unwrap();
        let mut n = 0u64;
        while n < trades {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    n += memchr::memmem::find_iter(t.as_bytes(), b"\"s\":").count() as u64
                }
                Some(Ok(_)) => {}
                _ => panic!("connection ended after {n} trades"),
            }
        }
        started.elapsed()
    });
    drop(rt);
    println!(
        "{:36} {:>12.0} trades/s   {:.3} s",
        "raw websocket read (1 thread)",
        trades as f64 / raw.as_secs_f64(),
        raw.as_secs_f64()
    );

    // 2. tickflow: finnhub source → 1-minute bars → Parquet.
    for workers in [1usize, 2] {
        let out = std::env::temp_dir().join(format!("tickflow-feed-bench-{workers}"));
        let _ = std::fs::remove_dir_all(&out);
        let spec = format!(
            "name: feed
sources:
  trades:
    type: finnhub
    url: ws://{addr}
    token_env: FEED_BENCH_TOKEN
    symbols: [AAPL]
    simulator: {{ when: never }}
steps:
  bars:
    type: window
    input: trades
    window: {{ type: tumbling, size: 1m }}
    aggregates:
      open: {{ fn: first, field: price }}
      high: {{ fn: max, field: price }}
      low: {{ fn: min, field: price }}
      close: {{ fn: last, field: price }}
      volume: {{ fn: sum, field: volume }}
      vwap: {{ fn: vwap }}
      trades: {{ fn: count }}
sinks:
  out: {{ type: parquet, input: bars, path: {} }}
",
            out.display()
        );
        let env = |k: &str| (k == "FEED_BENCH_TOKEN").then(|| "x".to_string());
        // SAFETY: set before any other thread of this process reads the environment for it.
        unsafe { std::env::set_var("FEED_BENCH_TOKEN", "x") };
        let loaded = tickflow::spec::load_str("feed.yaml", &spec, &env).unwrap();
        let plan = tickflow::plan::build(&loaded).unwrap();
        let opts = tickflow::dataflow::RunOptions::new(workers);
        let metrics = Arc::clone(&opts.metrics);
        let stop = Arc::clone(&opts.stop);
        let started = Instant::now();
        let watcher = std::thread::spawn(move || {
            while metrics.trades.load(Ordering::Relaxed) < trades {
                std::thread::sleep(Duration::from_millis(1));
            }
            let elapsed = started.elapsed();
            stop.store(true, Ordering::SeqCst);
            elapsed
        });
        tickflow::dataflow::run(plan, opts).unwrap();
        let elapsed = watcher.join().unwrap();
        println!(
            "{:36} {:>12.0} trades/s   {:.3} s   ({:.0}% of raw)",
            format!("tickflow, {workers} worker(s)"),
            trades as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64(),
            100.0 * raw.as_secs_f64() / elapsed.as_secs_f64()
        );
    }
    std::process::exit(0);
}
