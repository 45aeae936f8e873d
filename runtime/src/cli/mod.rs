//! The `tickflow` command line: `run`, `validate`, `graph`, `schema`, `generate`.

mod status;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::dataflow::{RunOptions, run};
use crate::metrics::Metrics;
use crate::plan::{self, Plan};
use crate::sim::generate::{GenOptions, generate};
use crate::spec::{self, SpecErrors};

/// tickflow — a streaming runtime for market data, driven by YAML specs.
///
/// A spec names sources (a Finnhub replay file, ...), steps (event-time windows with aggregates
/// such as OHLCV bars and VWAP) and sinks (Parquet). `tickflow validate` checks a spec,
/// `tickflow graph` draws it, `tickflow run` runs it.
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
enum Command {
    /// Run a pipeline. Bounded sources (replay files) run to the end, flush every window and
    /// exit 0. Ctrl-C stops cleanly: complete windows are published, incomplete ones are not.
    Run {
        /// The pipeline spec (YAML).
        spec: String,
        /// Worker threads. Results are identical for any count.
        #[arg(long, short, default_value_t = 1)]
        workers: usize,
        /// Stop after this long (e.g. 30s, 5m), as if Ctrl-C had been pressed.
        #[arg(long = "for", value_parser = parse_duration)]
        run_for: Option<Duration>,
        /// Never show the live status line, even on a terminal.
        #[arg(long)]
        no_status: bool,
    },
    /// Check a spec: every error is printed as FILE:LINE:COL: path: message (exit 2).
    Validate {
        /// The pipeline spec (YAML).
        spec: String,
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    spec::units::Duration::parse(s).map(|d| d.to_std())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Schema => {
            print!("{}", spec::json_schema());
            ExitCode::SUCCESS
        }
        Command::Validate { spec } => match load_and_plan(&spec) {
            Ok(plan) => {
                println!(
                    "{spec}: ok — pipeline `{}`: {} source(s), {} step(s), {} sink(s){}",
                    plan.name,
                    plan.sources.len(),
                    plan.windows.len(),
                    plan.sinks.len(),
                    if plan.dead_letters.is_some() { ", dead letters on" } else { "" }
                );
                ExitCode::SUCCESS
            }
            Err(e) => spec_failure(&e),
        },
        Command::Graph { spec, format } => match load_and_plan(&spec) {
            Ok(plan) => {
                print!("{}", match format {
                    GraphFormat::Dot => plan::graph::to_dot(&plan),
                    GraphFormat::Mermaid => plan::graph::to_mermaid(&plan),
                });
                ExitCode::SUCCESS
            }
            Err(e) => spec_failure(&e),
        },
        Command::Run { spec, workers, run_for, no_status } => {
            let plan = match load_and_plan(&spec) {
                Ok(p) => p,
                Err(e) => return spec_failure(&e),
            };
            run_command(plan, workers, run_for, !no_status && std::io::stderr().is_terminal() && cli.log_format == LogFormat::Text)
        }
        Command::Generate { out, trades, symbols, seed, mean_gap_ms, disorder_ms, disorder_rate, invalid_rate, malformed_rate } => {
            let opts = GenOptions { trades, symbols, seed, mean_gap_ms, disorder_ms, disorder_rate, invalid_rate, malformed_rate, ..GenOptions::default() };
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
    plan::build(&loaded)
}

fn spec_failure(e: &SpecErrors) -> ExitCode {
    eprintln!("{e}");
    eprintln!("{} error(s) in {}", e.diagnostics.len(), e.file);
    ExitCode::from(2)
}

fn run_command(plan: Plan, workers: usize, run_for: Option<Duration>, show_status: bool) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(Metrics::default());
    {
        let stop = Arc::clone(&stop);
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond interrupt: exiting without publishing");
                std::process::exit(130);
            }
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
    tracing::info!(pipeline = %name, workers, "starting");
    let opts = RunOptions { workers, stop, metrics: Arc::clone(&metrics), block_size: crate::sources::replay::BLOCK_SIZE };
    let result = run(plan, opts);
    done.store(true, Ordering::SeqCst);
    let _ = status.join();
    match result {
        Ok(summary) => {
            eprintln!("{}", status::summary(&metrics, summary.elapsed, summary.stopped));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
