//! The `tickflow` command line: `run`, `validate`, `graph`, `schema`, `generate`.

mod status;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::cluster::handshake::{MembershipChanged, StoppedForming};
use crate::cluster::{ClusterConfig, Membership};
use crate::dataflow::{RunOptions, run};
use crate::metrics::Metrics;
use crate::plan::{self, Plan};
use crate::sim::generate::{GenOptions, generate};
use crate::spec::{self, SpecErrors};

/// tickflow — a streaming runtime for market data, driven by YAML specs.
///
/// A spec names sources (the Finnhub websocket, replay files, Kafka), steps (SQL filters, derived
/// and selected columns; event-time windows — OHLCV bars and VWAP, in exchange sessions and time
/// zones, gap-filled, or volume and tick bars; rolling features; WebAssembly models) and sinks
/// (Parquet, Kafka). `tickflow validate` checks a spec, `tickflow graph` draws it, `tickflow run`
/// runs it.
#[derive(Parser, Debug)]
#[command(name = "tickflow", version, about, long_about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Load a plugin as a pipeline would and print its name, version, inputs, outputs and
    /// imports; exit 1 with the reason when it is not a usable plugin.
    Check {
        /// The plugin (`.wasm` component).
        file: String,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Model plugins (WebAssembly components).
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run a pipeline. Bounded sources (replay files) run to the end, flush every window and
    /// exit 0. Ctrl-C stops cleanly: complete windows are published, incomplete ones are not.
    Run {
        /// The pipeline spec (YAML).
        spec: String,
        /// Worker threads (1 to 1024; with checkpoints at most `key_groups`). Results are
        /// identical for any count.
        #[arg(long, short, default_value_t = 1, value_parser = parse_workers)]
        workers: usize,
        /// Stop after this long (e.g. 30s, 5m), as if Ctrl-C had been pressed.
        #[arg(long = "for", value_parser = parse_duration)]
        run_for: Option<Duration>,
        /// Never show the live status line, even on a terminal.
        #[arg(long)]
        no_status: bool,
        /// Make every source that can end do so (Kafka: at the end offsets seen at start),
        /// flush all windows and exit 0 — for tests, backfills and benchmarks.
        #[arg(long)]
        bounded: bool,
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464, or :9464 for every
        /// interface) at /metrics. Overrides the spec's `metrics.addr`.
        #[arg(long, env = "TICKFLOW_METRICS_ADDR")]
        metrics_addr: Option<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Check a spec: every error is printed as FILE:LINE:COL: path: message (exit 2). With
    /// `--process`/`--peers` (and `--workers`), checks the cluster flags too.
    Validate {
        /// The pipeline spec (YAML).
        spec: String,
        /// Worker threads per process (checked against `checkpoints.key_groups`).
        #[arg(long, short, default_value_t = 1, value_parser = parse_workers)]
        workers: usize,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Print the planned dataflow as Graphviz DOT (default) or Mermaid.
    Graph {
        /// The pipeline spec (YAML).
        spec: String,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Print the JSON Schema of pipeline specs (as in schemas/pipeline.schema.json).
    Schema,
    /// Print an exchange calendar's sessions as CSV (`date,open,close`, open and close in UTC):
    /// what windows with `align: {calendar: ...}` will see.
    Calendar {
        /// `XNYS`, `XNAS`, `24/7`, `24/5`, or a calendar file (`.cal`).
        name: String,
        /// First date (YYYY-MM-DD); default: the calendar's first date, else this year's.
        #[arg(long)]
        from: Option<String>,
        /// Last date (YYYY-MM-DD); default: the calendar's last date, else this year's end.
        #[arg(long)]
        to: Option<String>,
        /// `regular`, `extended` or `all`.
        #[arg(long, default_value = "regular")]
        session: String,
    },
    /// Serve the Finnhub websocket protocol with simulated trades (for laptops, tests, demos).
    ///
    /// Clients connect to ws://ADDR?token=TOKEN and subscribe with
    /// {"type":"subscribe","symbol":"AAPL"}. A wrong or missing token gets HTTP 401 at the
    /// upgrade, a reconnect storm HTTP 429, a second connection with the same token drops both.
    Sim(SimArgs),
    /// Write deterministic synthetic Finnhub trade frames (JSONL) for replays and benchmarks.
    Generate {
        /// Output file.
        #[arg(long, short)]
        out: String,
        /// Number of trades.
        #[arg(long, default_value_t = 100_000)]
        trades: u64,
        /// Number of symbols.
        #[arg(long, default_value_t = 20)]
        symbols: usize,
        /// Random seed: the same seed gives the same file.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Mean event-time gap between trades, in milliseconds.
        #[arg(long, default_value_t = 5.0)]
        mean_gap_ms: f64,
        /// Largest backwards jump (ms) of an out-of-order trade.
        #[arg(long, default_value_t = 0)]
        disorder_ms: i64,
        /// Fraction of trades that arrive out of order.
        #[arg(long, default_value_t = 0.0)]
        disorder_rate: f64,
        /// Fraction of invalid trades.
        #[arg(long, default_value_t = 0.0)]
        invalid_rate: f64,
        /// Fraction of malformed lines.
        #[arg(long, default_value_t = 0.0)]
        malformed_rate: f64,
    },
}

/// Cluster mode: this process is one of several that run one computation together.
#[derive(clap::Args, Debug)]
struct ClusterArgs {
    /// Run as process I of a cluster: I is this process's place (from 0) in `--peers` (or in
    /// `--peers-file` when it starts; after a rescale the process is known by its address).
    #[arg(long, env = "TICKFLOW_PROCESS")]
    process: Option<usize>,
    /// Every process's cluster address as HOST:PORT, comma-separated, in process order; the
    /// same list for every process. This process listens on its own entry's port on every
    /// interface. Each process runs `--workers` threads.
    #[arg(
        long,
        env = "TICKFLOW_PEERS",
        requires = "process",
        conflicts_with = "peers_file"
    )]
    peers: Option<String>,
    /// Like `--peers`, from a file with one HOST:PORT per line, watched: when its contents
    /// change, the cluster takes a final checkpoint and forms again with the new list in the same
    /// processes (processes no longer listed exit 0). A process not yet listed stands by.
    #[arg(long, env = "TICKFLOW_PEERS_FILE", requires = "process")]
    peers_file: Option<std::path::PathBuf>,
    /// Run as a pod of a Kubernetes StatefulSet: the index from the pod (TICKFLOW_POD_INDEX from
    /// the `apps.kubernetes.io/pod-index` label, else the hostname's ordinal), the peers
    /// `NAME-i.SERVICE.NAMESPACE.svc:PORT`, and their number from the StatefulSet's
    /// `spec.replicas`, watched through the Kubernetes API: `kubectl scale` rescales the
    /// pipeline. Needs get, list and watch on the StatefulSet (deploy/k8s/base/rbac.yaml).
    #[arg(
        long,
        env = "TICKFLOW_KUBERNETES",
        conflicts_with_all = ["peers", "peers_file", "process"]
    )]
    kubernetes: bool,
    /// The cluster port of every pod, with `--kubernetes`.
    #[arg(long, env = "TICKFLOW_CLUSTER_PORT", default_value_t = 7000)]
    cluster_port: u16,
    /// A peer that sends nothing (heartbeats come every second) for this long is taken as lost:
    /// the cluster stops.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    peer_timeout: Duration,
    /// How long to wait for every peer to join at start.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    join_timeout: Duration,
}

impl ClusterArgs {
    /// The cluster this process belongs to (`None`: it runs alone), or what is wrong with the
    /// flags.
    /// With `standby`, a process not (yet) listed in a peers file waits until it is.
    fn config(
        &self,
        threads: usize,
        plan: &Plan,
        standby: bool,
    ) -> Result<Option<(ClusterConfig, Arc<Membership>)>, String> {
        let (membership, process) = match (&self.peers, &self.peers_file) {
            _ if self.kubernetes => {
                let pod = crate::cluster::kubernetes::PodIdentity::from_env(self.cluster_port)?;
                let index = pod.index;
                if !standby {
                    // `validate`: the pod's identity, without calling the API.
                    let c = ClusterConfig::new(index, pod.peers(index + 1), threads)?;
                    return Ok(Some((c, Arc::new(Membership::Fixed(pod.peers(index + 1))))));
                }
                let k = crate::cluster::kubernetes::KubeMembership::start(pod)?;
                (Membership::Kubernetes(Arc::new(k)), index)
            }
            (Some(list), _) => (
                Membership::Fixed(crate::cluster::parse_peers(list)),
                self.process.unwrap_or(0),
            ),
            (None, Some(path)) => (Membership::File(path.clone()), self.process.unwrap_or(0)),
            (None, None) if self.process.is_some() => {
                return Err("--process needs --peers or --peers-file".into());
            }
            (None, None) => return Ok(None),
        };
        if membership.watched() && plan.checkpoints.is_none() {
            eprintln!(
                "warning: the membership is watched (--peers-file or --kubernetes) but the spec has no `checkpoints:`: a change of the membership will stop the cluster with an error instead of rescaling it"
            );
        }
        let mut peers = membership.current()?;
        let mut announced = false;
        while standby && membership.watched() && process >= peers.len() {
            if !announced {
                tracing::info!(
                    process,
                    listed = peers.len(),
                    "standing by: this process is not a member yet"
                );
                announced = true;
            }
            std::thread::sleep(crate::cluster::membership::POLL);
            peers = membership.current()?;
        }
        let mut c = ClusterConfig::new(process, peers, threads)?;
        c.peer_timeout = self.peer_timeout.max(Duration::from_secs(1));
        c.join_timeout = self.join_timeout;
        check_key_groups(&c, plan)?;
        Ok(Some((c, Arc::new(membership))))
    }
}

/// Every worker of a cluster needs a key group of its own.
fn check_key_groups(c: &ClusterConfig, plan: &Plan) -> Result<(), String> {
    if plan.checkpoints.is_some() && c.total_workers() > plan.key_groups as usize {
        return Err(format!(
            "the cluster has {} workers ({} processes x --workers {}), more than checkpoints.key_groups ({}): state is kept in that many groups, so further workers would have nothing to do",
            c.total_workers(),
            c.processes(),
            c.threads,
            plan.key_groups
        ));
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
struct SimArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8765")]
    listen: std::net::SocketAddr,
    /// The one accepted API token.
    #[arg(long, env = "TICKFLOW_SIM_TOKEN", hide_env_values = true)]
    token: String,
    /// Seed of the simulated market: the same seed gives the same trades.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Trades per second over the subscribed symbols (Poisson arrivals).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// The symbol universe (comma-separated); anything else is an invalid symbol.
    /// Default: well-known equities, crypto and forex pairs.
    #[arg(long, value_delimiter = ',')]
    symbols: Option<Vec<String>>,
    /// Interval between {"type":"ping"} frames.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    ping_interval: Duration,
    /// Most symbols one connection may subscribe to.
    #[arg(long, default_value_t = 50)]
    max_symbols: usize,
    /// Equities trade only during US market hours (crypto and forex always).
    #[arg(long)]
    market_hours: bool,
    /// Connection attempts per minute before HTTP 429.
    #[arg(long, default_value_t = 20)]
    max_connects: usize,
    /// Fault: drop every connection abruptly (no close frame) after this long.
    #[arg(long, value_parser = parse_duration)]
    drop_every: Option<Duration>,
    /// Fault: go silent (no trades, no pings) every this long ...
    #[arg(long, value_parser = parse_duration)]
    stall_every: Option<Duration>,
    /// ... for this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    stall_for: Duration,
    /// Fault: fraction of trades sent with an older timestamp ...
    #[arg(long, default_value_t = 0.0)]
    disorder_rate: f64,
    /// ... by up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    disorder_ms: i64,
    /// Fault: fraction of frames sent twice.
    #[arg(long, default_value_t = 0.0)]
    repeat_rate: f64,
    /// Fault: fraction of frames sent truncated (malformed JSON).
    #[arg(long, default_value_t = 0.0)]
    malformed_rate: f64,
}

fn run_sim(args: SimArgs) -> ExitCode {
    use crate::sim::server::{Faults, SimConfig, Simulator};
    crate::base::secrets::register(&args.token);
    let mut cfg = SimConfig::new(args.listen, &args.token);
    cfg.seed = args.seed;
    cfg.rate = args.rate;
    if let Some(symbols) = args.symbols {
        cfg.symbols = symbols;
    }
    cfg.ping_interval = args.ping_interval;
    cfg.max_symbols = args.max_symbols;
    cfg.market_hours = args.market_hours;
    cfg.max_connects = args.max_connects;
    cfg.faults = Faults {
        drop_every: args.drop_every,
        stall_every: args.stall_every,
        stall_for: args.stall_for,
        disorder_rate: args.disorder_rate,
        disorder_ms: args.disorder_ms,
        repeat_rate: args.repeat_rate,
        malformed_rate: args.malformed_rate,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let sim = match Simulator::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "Finnhub simulator listening on {}?token=*** (Ctrl-C stops)",
            sim.url()
        );
        let _ = tokio::signal::ctrl_c().await;
        sim.stop().await;
        ExitCode::SUCCESS
    })
}

/// Most worker threads a process runs (each costs a thread, buffers and channels per operator).
pub const MAX_WORKERS: usize = 1024;

fn parse_workers(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from 1 to {MAX_WORKERS}")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::base::units::Duration::parse(s).map(|d| d.to_std())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a log file or a pipe gets plain text. Every line goes through
    // the redacting writer, so no secret shows at any level, whoever logs it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(crate::base::secrets::RedactingStderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

fn plugin_check(file: &str) -> ExitCode {
    use crate::plugins::{Contract, Plugin};
    match crate::plugins::load(std::path::Path::new(file)) {
        Ok(p) => {
            let fields = |fs: &[crate::plugins::host_types::Field]| {
                fs.iter()
                    .map(|f| format!("{}: {}", f.name, Plugin::describe_type(f.ty)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let package = match p.contract {
                Contract::V3 => "tickflow:model@0.3.0",
                Contract::V2 => "tickflow:model@0.2.0",
            };
            println!("{file}: ok — {package} component");
            println!("name:    {}", p.info.name);
            println!("version: {}", p.info.version);
            let set_at_init = "(set at init, from the step's config and model)";
            let shown = |fs: &[crate::plugins::host_types::Field]| {
                if fs.is_empty() && p.contract == Contract::V3 {
                    set_at_init.to_string()
                } else {
                    fields(fs)
                }
            };
            println!("inputs:  {}", shown(&p.info.inputs));
            println!("outputs: {}", shown(&p.info.outputs));
            println!(
                "config:  {}",
                if p.config_schema.is_some() {
                    "checked against the plugin's JSON Schema"
                } else {
                    "any JSON"
                }
            );
            println!(
                "imports: {}",
                if p.imports.is_empty() {
                    "none".to_string()
                } else {
                    format!("{} (types only)", p.imports.join(", "))
                }
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Sim(args) => run_sim(args),
        Command::Plugin(PluginCommand::Check { file }) => plugin_check(&file),
        Command::Schema => {
            print!("{}", spec::json_schema());
            ExitCode::SUCCESS
        }
        Command::Calendar {
            name,
            from,
            to,
            session,
        } => match print_calendar(&name, from.as_deref(), to.as_deref(), &session) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Validate {
            spec,
            workers,
            cluster,
        } => match load_and_plan(&spec) {
            Ok(plan) => {
                let cluster = match cluster.config(workers, &plan, false) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                };
                if let Some((c, _)) = &cluster {
                    println!(
                        "cluster: process {} of {}, {} worker(s) in all",
                        c.process,
                        c.processes(),
                        c.total_workers()
                    );
                }
                println!(
                    "{spec}: ok — pipeline `{}`: {} source(s), {} step(s), {} sink(s){}",
                    plan.name,
                    plan.sources.len(),
                    plan.steps.len(),
                    plan.sinks.len(),
                    if plan.dead_letters.is_some() {
                        ", dead letters on"
                    } else {
                        ""
                    }
                );
                ExitCode::SUCCESS
            }
            Err(e) => spec_failure(&e),
        },
        Command::Graph { spec, format } => match load_and_plan(&spec) {
            Ok(plan) => {
                print!(
                    "{}",
                    match format {
                        GraphFormat::Dot => plan::graph::to_dot(&plan),
                        GraphFormat::Mermaid => plan::graph::to_mermaid(&plan),
                    }
                );
                ExitCode::SUCCESS
            }
            Err(e) => spec_failure(&e),
        },
        Command::Run {
            spec,
            workers,
            run_for,
            no_status,
            bounded,
            metrics_addr,
            cluster,
        } => {
            let plan = match load_and_plan(&spec) {
                Ok(p) => p,
                Err(e) => return spec_failure(&e),
            };
            if plan.checkpoints.is_some() && workers > plan.key_groups as usize {
                eprintln!(
                    "error: --workers {workers} is more than checkpoints.key_groups ({}): state is kept in that many groups, so further workers would have nothing to do",
                    plan.key_groups
                );
                return ExitCode::from(2);
            }
            // Metrics (and the health probes) are served from the start, also while a new
            // process stands by for its turn to join.
            let metrics_addr =
                metrics_addr.or_else(|| plan.metrics.as_ref().map(|m| m.addr.clone()));
            let metrics = Arc::new(Metrics::default());
            *metrics.pipeline.lock().unwrap_or_else(|e| e.into_inner()) = plan.name.clone();
            if let Some(addr) = &metrics_addr
                && let Err(e) = crate::metrics::server::serve(addr, Arc::clone(&metrics))
            {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
            metrics.ready.store(true, Ordering::Release);
            let cluster = match cluster.config(workers, &plan, true) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            run_command(
                plan,
                workers,
                cluster,
                run_for,
                bounded,
                metrics,
                !no_status && std::io::stderr().is_terminal() && cli.log_format == LogFormat::Text,
            )
        }
        Command::Generate {
            out,
            trades,
            symbols,
            seed,
            mean_gap_ms,
            disorder_ms,
            disorder_rate,
            invalid_rate,
            malformed_rate,
        } => {
            let opts = GenOptions {
                trades,
                symbols,
                seed,
                mean_gap_ms,
                disorder_ms,
                disorder_rate,
                invalid_rate,
                malformed_rate,
                ..GenOptions::default()
            };
            let result = std::fs::File::create(&out).and_then(|f| {
                let mut w = std::io::BufWriter::new(f);
                let lines = generate(&opts, &mut w)?;
                std::io::Write::flush(&mut w)?;
                Ok(lines)
            });
            match result {
                Ok(lines) => {
                    eprintln!("wrote {trades} trades in {lines} lines to {out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: cannot write `{out}`: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn load_and_plan(path: &str) -> Result<Plan, SpecErrors> {
    let loaded = spec::load_file(path)?;
    let plan = plan::build(&loaded)?;
    for w in &plan.warnings {
        eprintln!("{w}");
    }
    Ok(plan)
}

fn spec_failure(e: &SpecErrors) -> ExitCode {
    eprintln!("{e}");
    eprintln!("{} error(s) in {}", e.diagnostics.len(), e.file);
    ExitCode::from(2)
}

/// How long a SIGTERM'd pod waits for the watch to show a scale-down (then it is a plain stop).
const SCALE_DOWN_GRACE: Duration = Duration::from_secs(3);

/// Runs the pipeline; in a cluster whose membership changes, again with each new membership
/// (the state is restored from the final checkpoint of the previous one) until it ends, the
/// user stops it, or this process is no longer a member.
fn run_until_done(
    plan: Plan,
    workers: usize,
    cluster: Option<(ClusterConfig, Arc<Membership>)>,
    user_stop: Arc<AtomicBool>,
    metrics: &Arc<Metrics>,
    bounded: bool,
) -> anyhow::Result<crate::dataflow::RunSummary> {
    let Some((mut config, membership)) = cluster else {
        let opts = RunOptions {
            stop: user_stop,
            metrics: Arc::clone(metrics),
            bounded,
            ..RunOptions::new(workers)
        };
        return run(plan, opts);
    };
    // Every process of the cluster must run this pipeline with these flags (the handshake).
    config.pipeline = plan
        .fingerprint
        .with_flags(workers, bounded, plan.key_groups);
    // Known by its address from now on: its index may change with the membership.
    let me = config.peers[config.process].clone();
    let mut rescale_started = None;
    loop {
        // Each run has a stop flag of its own (a rescale sets it); the user's stop reaches it.
        let stop = Arc::new(AtomicBool::new(false));
        let forward = {
            let (stop, user) = (Arc::clone(&stop), Arc::clone(&user_stop));
            let (m, me) = (Arc::clone(&membership), me.clone());
            let ended = Arc::new(AtomicBool::new(false));
            let e = Arc::clone(&ended);
            std::thread::spawn(move || {
                let mut since: Option<std::time::Instant> = None;
                while !e.load(Ordering::Acquire) {
                    if user.load(Ordering::Acquire) {
                        // On Kubernetes a scale-down deletes the pod (SIGTERM) right after
                        // lowering `spec.replicas`: give the watch a moment to tell, so that the
                        // cluster rescales instead of stopping.
                        let first = *since.get_or_insert_with(std::time::Instant::now);
                        let scaling_away = matches!(&*m, Membership::Kubernetes(_))
                            && first.elapsed() < SCALE_DOWN_GRACE
                            && m.current().is_ok_and(|peers| peers.contains(&me));
                        if !scaling_away {
                            stop.store(true, Ordering::SeqCst);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            ended
        };
        let opts = RunOptions {
            stop,
            metrics: Arc::clone(metrics),
            bounded,
            cluster: Some(config.clone()),
            membership: Some(Arc::clone(&membership)),
            rescale_started,
            ..RunOptions::new(workers)
        };
        let summary = run(plan.clone(), opts);
        forward.store(true, Ordering::Release);
        let (peers, seen) = match summary {
            // The list changed before the cluster formed (a corrected peers file): form again.
            Err(e) => {
                let MembershipChanged(peers) = e.downcast::<MembershipChanged>()?;
                tracing::info!(
                    processes = peers.len(),
                    "the membership changed while the cluster formed: forming it again"
                );
                if !peers.contains(&me) {
                    anyhow::bail!(
                        "this process ({me}) is not in the cluster's new membership; nothing ran"
                    );
                }
                (peers, rescale_started)
            }
            Ok(summary) => {
                let Some((peers, seen)) = summary.rescale.clone() else {
                    return Ok(summary);
                };
                if user_stop.load(Ordering::Acquire) {
                    return Ok(summary);
                }
                if !peers.contains(&me) {
                    tracing::info!(address = %me, "this process is no longer in the cluster: its work is in the final checkpoint; exiting");
                    return Ok(summary);
                }
                (peers, Some(seen))
            }
        };
        let index = peers.iter().position(|p| *p == me).expect("checked above");
        tracing::info!(
            from = config.processes(),
            to = peers.len(),
            process = index,
            "rescaling: forming a new cluster"
        );
        let mut next = ClusterConfig::new(index, peers, workers).map_err(|e| anyhow::anyhow!(e))?;
        next.peer_timeout = config.peer_timeout;
        next.join_timeout = config.join_timeout;
        next.pipeline = config.pipeline;
        check_key_groups(&next, &plan).map_err(|e| anyhow::anyhow!(e))?;
        config = next;
        rescale_started = seen;
    }
}

fn run_command(
    plan: Plan,
    workers: usize,
    cluster: Option<(ClusterConfig, Arc<Membership>)>,
    run_for: Option<Duration>,
    bounded: bool,
    metrics: Arc<Metrics>,
    show_status: bool,
) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        // Counted apart from `stop`: a run stopping on its own (an error, `--for`) still takes
        // the user's first Ctrl-C as the first.
        let interrupts = std::sync::atomic::AtomicU32::new(0);
        let terminal = std::io::stderr().is_terminal();
        let _ = ctrlc::set_handler(move || {
            // The terminal echoed `^C` at the end of the status line: start a clean line.
            let clear = if terminal { "\r\x1b[2K" } else { "" };
            if interrupts.fetch_add(1, Ordering::SeqCst) > 0 {
                eprintln!("{clear}second interrupt: exiting without publishing");
                std::process::exit(130);
            }
            eprintln!("{clear}stopping: publishing complete windows (Ctrl-C again exits at once)");
            stop.store(true, Ordering::SeqCst);
        });
    }
    if let Some(d) = run_for {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(d);
            stop.store(true, Ordering::SeqCst);
        });
    }
    let done = Arc::new(AtomicBool::new(false));
    let status = status::spawn(Arc::clone(&metrics), Arc::clone(&done), show_status);
    let name = plan.name.clone();
    match &cluster {
        None => tracing::info!(pipeline = %name, workers, "starting"),
        Some((c, _)) => tracing::info!(
            pipeline = %name,
            workers,
            process = c.process,
            processes = c.processes(),
            "starting"
        ),
    }
    let result = run_until_done(plan, workers, cluster, stop, &metrics, bounded);
    done.store(true, Ordering::SeqCst);
    let _ = status.join();
    match result {
        Ok(summary) => {
            eprintln!(
                "{}",
                status::summary(&metrics, summary.elapsed, summary.stopped)
            );
            ExitCode::SUCCESS
        }
        // Asked to stop while the cluster was forming: a clean stop, nothing to publish.
        Err(e) if e.downcast_ref::<StoppedForming>().is_some() => {
            eprintln!("{e}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tickflow calendar`: every session from `from` to `to`.
fn print_calendar(
    name: &str,
    from: Option<&str>,
    to: Option<&str>,
    session: &str,
) -> Result<(), String> {
    use crate::base::calendar::{Calendar, SessionKind};
    use std::io::Write;
    let cal = Calendar::load(name)?;
    let kind = match session {
        "regular" => SessionKind::Regular,
        "extended" => SessionKind::Extended,
        "all" => SessionKind::All,
        other => {
            return Err(format!(
                "--session `{other}`: use `regular`, `extended` or `all`"
            ));
        }
    };
    let today = Calendar::local_date(&cal.tz, crate::base::time::now_ms());
    let date = |flag: &str, s: Option<&str>, default: jiff::civil::Date| match s {
        None => Ok(default),
        Some(s) => s
            .parse::<jiff::civil::Date>()
            .map_err(|_| format!("--{flag} `{s}` is not a date (YYYY-MM-DD)")),
    };
    let (first, last) = cal.dates.unwrap_or((
        jiff::civil::date(today.year(), 1, 1),
        jiff::civil::date(today.year(), 12, 31),
    ));
    let (mut d, last) = (date("from", from, first)?, date("to", to, last)?);
    let ts = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let _ = writeln!(out, "date,open,close");
    while d <= last {
        if let Some(s) = cal.session(d, kind) {
            let _ = writeln!(out, "{d},{},{}", ts(s.open), ts(s.close));
        }
        d = match d.tomorrow() {
            Ok(next) => next,
            Err(_) => break,
        };
    }
    Ok(())
}
