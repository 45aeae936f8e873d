//! The `finnhub` source in the dataflow: worker 0 owns the one websocket connection (a task on the
//! I/O runtime); its frames are parsed and validated with the same code as the replay source,
//! stamped with the watermark at the moment they are read, and exchanged by symbol downstream.

use crate::base::time::now_ms;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};
use tokio::sync::mpsc;

use super::client::{self, ClientEvent, ClientSettings, ClientStats, Secret};
use super::config::{ArchiveConfig, FinnhubConfig, SimulateWhen};
use super::{fast, protocol};
use crate::sources::SourceBuildCx;
use crate::base::time::quantize;
use crate::base::record::Trade;
use crate::sim::server::{SimConfig, Simulator};
use crate::output::dead_letter::DeadLetter;
use crate::base::reject::RejectReason;
use crate::sources::finnhub::protocol::{FrameKind, InvalidTrade};

/// Per-run state of a `finnhub` source, prepared before the workers start.
pub struct FinnhubShared {
    pub settings: ClientSettings,
    pub stats: Arc<ClientStats>,
    /// The in-process simulator serving the feed, when there is no token.
    simulator: std::sync::Mutex<Option<Simulator>>,
    pub simulated: bool,
}

impl FinnhubShared {
    /// Resolves the token (or starts the simulator). `connects`: this process hosts global
    /// worker 0, which holds the one connection; the other processes of a cluster need neither
    /// a token nor a simulator.
    pub fn prepare(
        name: &str,
        cfg: &FinnhubConfig,
        rt: &tokio::runtime::Handle,
        connects: bool,
    ) -> Result<FinnhubShared> {
        // TLS for wss:// uses rustls with the ring provider (installed once per process).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let token = std::env::var(&cfg.token_env)
            .ok()
            .filter(|t| !t.trim().is_empty());
        if let Some(t) = &token {
            crate::base::secrets::register(t);
        }
        let simulate = match (cfg.simulator.when, &token) {
            _ if !connects => false,
            (SimulateWhen::Always, _) | (SimulateWhen::Auto, None) => true,
            (SimulateWhen::Never, None) => bail!(
                "source `{name}`: environment variable `{}` is not set: it must hold a Finnhub API token (or set `simulator.when: auto`)",
                cfg.token_env
            ),
            _ => false,
        };
        let mut settings = ClientSettings {
            url: cfg.url.clone(),
            token: Secret::new(token.clone().unwrap_or_default()),
            token_origin: format!("the `{}` environment variable", cfg.token_env),
            symbols: cfg.symbols.clone(),
            silence_timeout: cfg.silence_timeout.to_std(),
            backoff_min: cfg.backoff_min.to_std(),
            backoff_max: cfg.backoff_max.to_std(),
            rate_limited_backoff: cfg.rate_limited_backoff.to_std(),
            healthy_after: Duration::from_secs(60),
        };
        let mut simulator = None;
        if simulate {
            let sim_token = format!("sim-{:016x}", rand::random::<u64>());
            let mut sim =
                SimConfig::new("127.0.0.1:0".parse().expect("a valid address"), &sim_token);
            sim.seed = cfg.simulator.seed;
            sim.rate = cfg.simulator.rate;
            sim.ping_interval = Duration::from_secs(15);
            for s in &cfg.symbols {
                if !sim.symbols.contains(s) {
                    sim.symbols.push(s.clone());
                }
            }
            let started = rt
                .block_on(Simulator::start(sim))
                .context("starting the built-in Finnhub simulator")?;
            tracing::info!(source = name, url = %started.url(), rate = cfg.simulator.rate, "no `{}` set: streaming from the built-in Finnhub simulator", cfg.token_env);
            settings.url = started.url();
            settings.token = Secret::new(sim_token);
            settings.token_origin = "the simulator's token".into();
            simulator = Some(started);
        }
        Ok(FinnhubShared {
            settings,
            stats: Arc::new(ClientStats::default()),
            simulator: std::sync::Mutex::new(simulator),
            simulated: simulate,
        })
    }

    /// Stops the simulator, if one runs.
    pub fn shutdown(&self, rt: &tokio::runtime::Handle) {
        if let Some(sim) = self
            .simulator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            rt.block_on(sim.stop());
        }
    }
}

/// Rolling JSONL files of raw frames.
struct Archive {
    cfg: ArchiveConfig,
    file: Option<(std::io::BufWriter<std::fs::File>, u64, Instant)>,
    n: u64,
}

impl Archive {
    fn write(&mut self, frame: &str) -> Result<()> {
        let roll = match &self.file {
            Some((_, bytes, opened)) => {
                *bytes >= self.cfg.max_bytes.0 || opened.elapsed() >= self.cfg.max_age.to_std()
            }
            None => true,
        };
        if roll {
            self.close()?;
            std::fs::create_dir_all(&self.cfg.path)
                .with_context(|| format!("creating archive folder `{}`", self.cfg.path))?;
            self.n += 1;
            let path = std::path::Path::new(&self.cfg.path).join(format!(
                "frames-{}-{:04}.jsonl",
                now_ms(),
                self.n
            ));
            let f = std::fs::File::create(&path)
                .with_context(|| format!("creating `{}`", path.display()))?;
            self.file = Some((std::io::BufWriter::new(f), 0, Instant::now()));
        }
        let (w, bytes, _) = self.file.as_mut().expect("opened above");
        w.write_all(frame.as_bytes())?;
        w.write_all(b"\n")?;
        *bytes += frame.len() as u64 + 1;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((mut w, _, _)) = self.file.take() {
            w.flush()?;
        }
        Ok(())
    }
}

pub(super) fn finnhub_stream<'scope>(
    scope: Scope<'scope, u64>,
    cx: &SourceBuildCx<'_>,
    shared: Arc<FinnhubShared>,
    cfg: &FinnhubConfig,
) -> StreamVec<'scope, u64, Trade> {
    let (ctx, source_index) = (cx.ctx, cx.index);
    let dead = Rc::clone(cx.dead);
    let node = &ctx.sources[source_index];
    let name = node.name.clone();
    let ooo = node.max_out_of_orderness_ms;
    let max_future = node.max_future_ms;
    let quantum = node.time_quantum_ms;
    let idle_timeout = cfg.idle_timeout.as_millis();
    let stale_after = cfg.stale_after.to_std();
    let archive_cfg = cfg.archive.clone();
    let worker = scope.index();
    let ctx = Arc::clone(ctx);

    source(
        scope,
        &format!("Finnhub({name})"),
        move |capability: Capability<u64>, info| {
            let activator = scope.activator_for(info.address);
            let mut cap = if worker == 0 { Some(capability) } else { None };
            let mut rx: Option<mpsc::Receiver<ClientEvent>> = None;
            if worker == 0 {
                let (tx, r) = mpsc::channel(client::CHANNEL_FRAMES);
                rx = Some(r);
                let settings = shared.settings.clone();
                let stats = Arc::clone(&shared.stats);
                ctx.rt
                    .spawn(client::run(settings, tx, Arc::clone(&ctx.stop), stats));
            }
            let mut archive = archive_cfg.map(|cfg| Archive {
                cfg,
                file: None,
                n: 0,
            });
            let mut frame_no: u64 = 0;
            let mut max_ts = i64::MIN;
            // The watermark: never goes back, even when an idle period had advanced it.
            let mut wm_state = i64::MIN;
            let mut last_trade = Instant::now();
            let mut invalid: Vec<InvalidTrade> = Vec::new();
            let mut batch: Vec<Trade> = Vec::new();
            // One frame's trades from the fast path (which adds them only when it takes the frame).
            let mut fast_trades: Vec<protocol::ValidTrade> = Vec::new();
            let step_stats = ctx.metrics.step(&name, "source");
            let source_stats = ctx.metrics.source(&name);
            let websocket = ctx
                .metrics
                .part::<super::metrics::WebsocketMetrics>()
                .add(&name, Arc::clone(&shared.stats));
            // When each subscribed symbol last traded (stale symbols), counted once a second.
            let mut last_seen: foldhash::HashMap<compact_str::CompactString, Instant> = shared
                .settings
                .symbols
                .iter()
                .map(|s| (compact_str::CompactString::from(s.as_str()), Instant::now()))
                .collect();
            let mut last_stale_check = Instant::now();

            move |output| {
                let Some(capability) = cap.as_mut() else {
                    return;
                };
                if ctx.stop.load(Ordering::Relaxed) {
                    if let Some(a) = archive.as_mut()
                        && let Err(e) = a.close()
                    {
                        ctx.fail(format!("source `{name}`: archive: {e:#}"));
                    }
                    cap = None;
                    return;
                }
                let rx = rx.as_mut().expect("worker 0 has the channel");
                let idle_floor = |last: Instant| -> i64 {
                    if last.elapsed().as_millis() as i64 >= idle_timeout {
                        now_ms() - idle_timeout - ooo
                    } else {
                        i64::MIN
                    }
                };
                let (mut frames, mut pings, mut errors, mut others) = (0u64, 0u64, 0u64, 0u64);
                // Up to a bounded amount per activation, so progress and other operators keep moving.
                let mut drained_all = false;
                for _ in 0..20_000 {
                    let event = match rx.try_recv() {
                        Ok(e) => e,
                        Err(_) => {
                            drained_all = true;
                            break;
                        }
                    };
                    let text = match event {
                        ClientEvent::Frame(t) => t,
                        ClientEvent::Fatal(msg) => {
                            ctx.fail(format!("source `{name}`: {msg}"));
                            cap = None;
                            return;
                        }
                    };
                    frame_no += 1;
                    frames += 1;
                    if let Some(a) = archive.as_mut()
                        && let Err(e) = a.write(text.as_str())
                    {
                        ctx.fail(format!("source `{name}`: archive: {e:#}"));
                    }
                    let floor = idle_floor(last_trade);
                    let before = batch.len();
                    let limit = protocol::future_limit(max_future);
                    let mut future: Vec<(usize, i64)> = Vec::new();
                    let mut push = |index: usize, t: protocol::ValidTrade| {
                        if t.ts > limit {
                            future.push((index, t.ts));
                            return;
                        }
                        max_ts = max_ts.max(t.ts);
                        wm_state = wm_state.max(max_ts - ooo).max(floor);
                        batch.push(Trade {
                            symbol: t.symbol,
                            price: t.price,
                            volume: t.volume,
                            ts: t.ts,
                            seq: (frame_no << Trade::SEQ_INDEX_BITS) | index as u64,
                            wm: wm_state,
                            conditions: t.conditions,
                        });
                    };
                    if fast::parse_trade_frame(text.as_bytes(), &mut fast_trades).is_some() {
                        for (index, t) in fast_trades.drain(..).enumerate() {
                            push(index, t);
                        }
                    } else {
                        invalid.clear();
                        match protocol::parse_frame(text.as_str(), &mut push, &mut invalid) {
                            Ok(FrameKind::Trades(_)) => {}
                            Ok(FrameKind::Ping) => pings += 1,
                            Ok(FrameKind::Error(msg)) => {
                                errors += 1;
                                dead.borrow_mut().log_server_error(&name, &msg);
                            }
                            Ok(FrameKind::Other(_)) => others += 1,
                            Err(m) => dead.borrow_mut().push(DeadLetter {
                                source: &name,
                                reason: RejectReason::MalformedFrame,
                                detail: m.detail,
                                raw: text.to_string(),
                                line: frame_no,
                            }),
                        }
                        for inv in invalid.drain(..) {
                            let raw = protocol::raw_trade(text.as_str(), inv.index)
                                .unwrap_or_else(|| text.to_string());
                            dead.borrow_mut().push(DeadLetter {
                                source: &name,
                                reason: inv.reason,
                                detail: inv.detail,
                                raw,
                                line: frame_no,
                            });
                        }
                    }
                    for (index, ts) in future {
                        let raw = protocol::raw_trade(text.as_str(), index)
                            .unwrap_or_else(|| text.to_string());
                        dead.borrow_mut().push(DeadLetter {
                            source: &name,
                            reason: RejectReason::FutureTimestamp,
                            detail: protocol::future_detail(ts, limit),
                            raw,
                            line: frame_no,
                        });
                    }
                    if batch.len() > before {
                        last_trade = Instant::now();
                    }
                }
                let m = &ctx.metrics;
                m.frames.fetch_add(frames, Ordering::Relaxed);
                m.pings.fetch_add(pings, Ordering::Relaxed);
                m.server_errors.fetch_add(errors, Ordering::Relaxed);
                m.other_frames.fetch_add(others, Ordering::Relaxed);
                m.trades.fetch_add(batch.len() as u64, Ordering::Relaxed);
                step_stats
                    .records_out
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                if frames > 0 {
                    websocket.last_frame_ms.store(now_ms(), Ordering::Relaxed);
                }
                if !batch.is_empty() {
                    let now = Instant::now();
                    let mut previous: Option<&str> = None;
                    for t in &batch {
                        if previous != Some(t.symbol.as_str()) {
                            previous = Some(t.symbol.as_str());
                            if let Some(seen) = last_seen.get_mut(&t.symbol) {
                                *seen = now;
                            }
                        }
                    }
                }
                if last_stale_check.elapsed() >= Duration::from_secs(1) {
                    last_stale_check = Instant::now();
                    let stale = last_seen
                        .values()
                        .filter(|t| t.elapsed() >= stale_after)
                        .count();
                    websocket
                        .stale_symbols
                        .store(stale as u64, Ordering::Relaxed);
                }

                // Emit by timestamp (watermarks only grow, so runs are contiguous).
                let mut rest = std::mem::take(&mut batch);
                while !rest.is_empty() {
                    let t = quantize(rest[0].wm, quantum).max(*capability.time());
                    let run = rest
                        .iter()
                        .take_while(|x| quantize(x.wm, quantum).max(*capability.time()) == t)
                        .count();
                    let tail = rest.split_off(run);
                    output
                        .session(&capability.delayed(&t))
                        .give_container(&mut rest);
                    rest = tail;
                }
                wm_state = wm_state.max(idle_floor(last_trade));
                let wm = wm_state;
                if wm > i64::MIN {
                    m.watermark.fetch_max(wm, Ordering::Relaxed);
                    source_stats.watermark.fetch_max(wm, Ordering::Relaxed);
                    let t = quantize(wm, quantum);
                    if t > *capability.time() {
                        capability.downgrade(&t);
                    }
                }
                if drained_all {
                    activator.activate_after(Duration::from_millis(10));
                } else {
                    activator.activate();
                }
            }
        },
    )
}
