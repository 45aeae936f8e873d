//! Building and running the timely dataflow for a plan: sources → (exchange by key) → windows →
//! sinks, one copy per worker thread.

pub mod control;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use timely::dataflow::operators::Probe;
use timely::dataflow::{ProbeHandle, StreamVec};

use crate::base::record::Trade;
use crate::checkpoint::Role;
use crate::checkpoint::output::OutputProtocol;
use crate::cluster::{ClusterConfig, Control, Membership};
use crate::metrics::Metrics;
use crate::output::dead_letter::DeadLetters;
use crate::plan::Plan;
use crate::steps::{AnyStream, BuildCx};
use crate::worker::context::RunContext;

/// How to run a plan.
pub struct RunOptions {
    pub workers: usize,
    pub stop: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
    /// Bytes a file source reads per block (tests use small blocks to exercise the parallel
    /// reader); `None`: the source's own default.
    pub block_size: Option<usize>,
    /// Make every source that can end do so (Kafka: the end offsets seen at start).
    pub bounded: bool,
    /// Run as one process of a cluster (`workers` threads here, as many in every other process).
    pub cluster: Option<ClusterConfig>,
    /// Where the cluster's membership comes from; a watched one ends the run (after a final
    /// checkpoint) when it changes, with the new list in [`RunSummary::rescale`].
    pub membership: Option<Arc<Membership>>,
    /// This run forms the cluster anew after a membership change seen at this moment (for the
    /// rescale pause metric).
    pub rescale_started: Option<Instant>,
}

impl RunOptions {
    pub fn new(workers: usize) -> Self {
        RunOptions {
            workers,
            stop: Arc::new(AtomicBool::new(false)),
            metrics: Arc::new(Metrics::default()),
            block_size: None,
            bounded: false,
            cluster: None,
            membership: None,
            rescale_started: None,
        }
    }
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub elapsed: Duration,
    pub stopped: bool,
    /// The run ended for a membership change: the new peer list, and when it was seen.
    pub rescale: Option<(Vec<String>, Instant)>,
}

/// Runs `plan` to completion (bounded sources) or until `opts.stop` is set.
pub fn run(plan: Plan, opts: RunOptions) -> Result<RunSummary> {
    crate::worker::malloc::tune();
    // Worker threads of this process, and of the whole computation.
    let threads = opts.workers.max(1);
    let workers = opts
        .cluster
        .as_ref()
        .map(|c| c.total_workers())
        .unwrap_or(threads);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tickflow-io")
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    // Alone, or process 0 of a cluster (global worker 0 lives here).
    let leader = opts.cluster.as_ref().is_none_or(|c| c.process == 0);
    let open = crate::sources::OpenCx {
        rt: rt.handle(),
        block_size: opts.block_size,
        leader,
    };
    let opened = plan
        .sources
        .iter()
        .map(|s| s.config.kind().open(&s.name, &open))
        .collect::<Result<Vec<_>>>()?;
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    // The leader restores (publishing what its checkpoint covers, discarding the rest) before
    // the cluster forms; a follower after, so that it restores exactly the checkpoint the
    // leader did (during a rescale, the old cluster's final one is committed by then).
    let mut formed = match &opts.cluster {
        Some(cluster) if !leader => {
            opts.metrics.ready.store(false, Ordering::Release);
            Some(connect_cluster(
                cluster,
                &opts.stop,
                opts.membership.as_deref(),
            )?)
        }
        _ => None,
    };
    let checkpoint = match &plan.checkpoints {
        Some(spec) => {
            let sink_paths: Vec<String> = plan
                .sinks
                .iter()
                .filter_map(|s| s.op.staged_folder().map(str::to_string))
                .chain(plan.dead_letters.as_ref().map(|d| d.path.clone()))
                .collect();
            let topology = crate::checkpoint::coordinator::Topology {
                workers,
                inputs: plan
                    .sources
                    .iter()
                    .filter_map(|s| Some((s.name.clone(), s.config.kind().rewinds()?)))
                    .collect(),
                sources: plan.sources.len(),
                steps: plan.steps.len(),
                sinks: plan.sinks.len(),
                dead_letters: plan.dead_letters.is_some(),
                cluster: opts
                    .cluster
                    .as_ref()
                    .map(|c| (c.process, c.processes(), c.threads)),
            };
            let cp = crate::checkpoint::Coordinator::open(
                spec.clone(),
                rt.handle(),
                topology,
                &sink_paths,
                Arc::clone(&opts.metrics),
            )
            .with_context(|| format!("checkpoints in `{}`", spec.path))?;
            // What the last run left to sinks (transactions to finish, writers to fence): the
            // leader, before any worker of this run writes.
            if leader {
                for sink in &plan.sinks {
                    let cx = crate::sinks::RecoverCx {
                        transactions: cp.restored_transactions(&sink.name),
                        storage: cp.storage(),
                        workers,
                    };
                    sink.op.recover(&cx).with_context(|| {
                        format!("sink `{}`: recovering from the last run", sink.name)
                    })?;
                }
            }
            Some(Arc::new(cp))
        }
        None => None,
    };
    let facts = plan
        .sources
        .iter()
        .map(|s| {
            let config = s.config.clone();
            crate::worker::context::SourceFacts {
                name: s.name.clone(),
                time_quantum_ms: s.time_quantum_ms,
                max_out_of_orderness_ms: s.config.max_out_of_orderness_ms(),
                max_future_ms: s.config.max_future_ms(),
                position: Arc::new(move |seq| config.position_of(seq)),
            }
        })
        .collect();
    let plan = Arc::new(plan);
    let context = RunContext::new(
        facts,
        plan.key_groups,
        Arc::clone(&opts.metrics),
        Arc::clone(&opts.stop),
        rt.handle().clone(),
        run_id,
        opened
            .iter()
            .map(|s| Arc::clone(s) as Arc<dyn crate::worker::context::OnControl>)
            .collect(),
    );
    let mut context = context.with_workers(workers);
    context.bounded = opts.bounded;
    context.checkpoint = checkpoint.clone();
    context.control = opts
        .cluster
        .as_ref()
        .map(|c| Arc::new(Control::new(c.process, c.threads)));
    if let (Some(cp), Some(control)) = (&checkpoint, &context.control) {
        cp.attach(Arc::clone(control));
    }
    let ctx = Arc::new(context);
    let coordinator = checkpoint.clone().map(|cp| {
        let (rt, stop) = (rt.handle().clone(), Arc::clone(&opts.stop));
        std::thread::Builder::new()
            .name("tickflow-checkpoints".into())
            .spawn(move || cp.run(&rt, &stop))
            .expect("spawning a thread")
    });
    let started = Instant::now();

    let worker_ctx = Arc::clone(&ctx);
    let (worker_plan, worker_opened) = (Arc::clone(&plan), opened.clone());
    let (builders, comms) = match &opts.cluster {
        None => timely::CommunicationConfig::Process(threads)
            .try_build()
            .map_err(|e| anyhow::anyhow!("starting workers: {e}"))?,
        Some(cluster) => {
            let (builders, comms, activity) = match formed.take() {
                Some(f) => f,
                None => {
                    opts.metrics.ready.store(false, Ordering::Release);
                    connect_cluster(cluster, &opts.stop, opts.membership.as_deref())?
                }
            };
            opts.metrics.ready.store(true, Ordering::Release);
            let control = ctx
                .control
                .as_ref()
                .expect("a cluster has a control dataflow");
            control.watch(Arc::clone(&activity));
            crate::cluster::watchdog::spawn(cluster, activity);
            opts.metrics
                .cluster_processes
                .store(cluster.processes() as u64, Ordering::Relaxed);
            if let Some(at) = opts.rescale_started {
                let pause = at.elapsed();
                opts.metrics
                    .rescale_pause_ms
                    .store(pause.as_millis() as u64, Ordering::Relaxed);
                opts.metrics.rescales.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    processes = cluster.processes(),
                    workers,
                    pause_ms = pause.as_millis() as u64,
                    "rescaled: the new cluster is formed and its state restored"
                );
            }
            if let Some(m) = opts.membership.clone().filter(|m| m.watched()) {
                let checkpointed = plan.checkpoints.is_some();
                watch_membership(m, cluster.peers.clone(), checkpointed, Arc::clone(&ctx));
            }
            (builders, comms)
        }
    };
    let guards =
        timely::execute::execute_from(builders, comms, Default::default(), move |worker| {
            let ctx = Arc::clone(&worker_ctx);
            let (plan, opened) = (Arc::clone(&worker_plan), worker_opened.clone());
            let index = worker.index();
            // Dead letters are exactly-once too when there are checkpoints: each worker's are a
            // participant of their own, precommitted once sources and windows have stopped.
            let mut dead_out = OutputProtocol::new(
                ctx.checkpoint
                    .as_ref()
                    .filter(|_| plan.dead_letters.is_some())
                    .map(|c| c.participant(Role::DeadLetters, 0, index, None)),
            );
            let dead = match DeadLetters::new(
                plan.dead_letters.as_ref(),
                ctx.rt.clone(),
                ctx.file_prefix(index),
                Arc::clone(&ctx.metrics),
            ) {
                Ok(d) => Rc::new(RefCell::new(match &plan.dead_letters {
                    Some(spec) if dead_out.checkpointed() => d.two_phase(&spec.path),
                    _ => d,
                })),
                Err(e) => {
                    ctx.fail(format!("dead letters: {e:#}"));
                    Rc::new(RefCell::new(
                        DeadLetters::new(
                            None,
                            ctx.rt.clone(),
                            String::new(),
                            Arc::clone(&ctx.metrics),
                        )
                        .expect("no output cannot fail"),
                    ))
                }
            };
            let main = worker.next_dataflow_index();
            worker.dataflow::<u64, _, _>(|scope| build(scope, &plan, &opened, &ctx, &dead, index));
            let main_done = Rc::new(std::cell::Cell::new(false));
            control::build(worker, &ctx, Rc::clone(&main_done));
            let mut last_roll = Instant::now();
            let mut last_look = last_roll;
            let mut park = Duration::from_millis(50);
            while worker.step_or_park(Some(park)) {
                let now = Instant::now();
                // Cluster mode: the control dataflow outlives the main one. Whether the main one
                // is done is a look at the installed dataflows (a Vec): every 10 ms, not per step.
                if ctx.control.is_some() && now - last_look > Duration::from_millis(10) {
                    last_look = now;
                    if !worker.installed_dataflows().contains(&main) {
                        break;
                    }
                }
                if now - last_roll > Duration::from_secs(1) {
                    dead.borrow_mut().roll_aged();
                    last_roll = now;
                }
                if let Err(e) = dead_out.turn(&mut *dead.borrow_mut()) {
                    ctx.fail(format!("{e:#}"));
                    dead_out.abandon();
                }
                park = if dead_out.frozen() {
                    crate::checkpoint::FROZEN_POLL
                } else {
                    Duration::from_millis(50)
                };
            }
            if let Err(e) = dead_out.end(&mut *dead.borrow_mut()) {
                ctx.fail(format!("{e:#}"));
                dead_out.abandon();
            }
            // The control dataflow ends once every worker of the cluster got here; peers may now go
            // quiet without being lost.
            main_done.set(true);
            if let Some(control) = &ctx.control {
                control.tail_done();
            }
            // NB: `step_or_park` parks for its whole timeout when no dataflow is left, so ask first
            // (a single process has nothing left here and goes straight on).
            while worker.has_dataflows() {
                worker.step_or_park(Some(Duration::from_millis(20)));
            }
        })
        .map_err(|e| anyhow::anyhow!("starting workers: {e}"))?;
    for r in guards.join() {
        if let Err(e) = r {
            ctx.fail(format!("worker failed: {e}"));
        }
    }
    for source in &opened {
        source.shutdown(rt.handle());
    }
    if let (Some(cp), Some(thread)) = (&checkpoint, coordinator) {
        cp.end();
        match thread.join() {
            Ok(Err(e)) => ctx.fail(format!("checkpoint: {e:#}")),
            Err(_) => ctx.fail("the checkpoint thread panicked"),
            Ok(Ok(())) => {}
        }
        let ended = !opts.stop.load(Ordering::Relaxed);
        if ended
            && cp.leader()
            && ctx.errors().is_empty()
            && let Err(e) = cp.commit_final(rt.handle())
        {
            ctx.fail(format!("final checkpoint: {e:#}"));
        }
    }
    let errors = ctx.errors();
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(RunSummary {
        elapsed: started.elapsed(),
        stopped: opts.stop.load(Ordering::Relaxed),
        rescale: ctx.rescale(),
    })
}

/// Reads the membership again every [`crate::cluster::membership::POLL`] until the run stops;
/// a new list stops it for a rescale.
fn watch_membership(
    m: Arc<Membership>,
    peers: Vec<String>,
    checkpointed: bool,
    ctx: Arc<RunContext>,
) {
    let _ = std::thread::Builder::new()
        .name("tickflow-membership".into())
        .spawn(move || {
            let mut warned = false;
            while !ctx.stop.load(Ordering::Acquire) {
                std::thread::sleep(crate::cluster::membership::POLL);
                match m.current() {
                    Ok(list) if !list.is_empty() && list != peers => {
                        // NB: a new cluster resumes from the final checkpoint of this one;
                        // without checkpoints it would start the input again (a replay
                        // duplicates its output) or skip what this one had not finished.
                        if !checkpointed {
                            ctx.fail(format!(
                                "the cluster's membership changed ({} → {} processes), but the spec has no `checkpoints:`: a new cluster could not resume where this one stopped (it would read the input again and duplicate output, or lose records). Add `checkpoints:` to rescale, or give the processes a fixed --peers list",
                                peers.len(),
                                list.len()
                            ));
                            return;
                        }
                        ctx.request_rescale(list);
                        return;
                    }
                    Ok(list) if list.is_empty() => {
                        if !warned {
                            tracing::warn!("the cluster's membership lists no process (an emptied peers file?): taken as a mistake, the cluster keeps its current membership");
                            warned = true;
                        }
                    }
                    Ok(_) => warned = false,
                    Err(e) if !warned => {
                        tracing::warn!("{e} (the cluster keeps its current membership)");
                        warned = true;
                    }
                    Err(_) => {}
                }
            }
        });
}

/// Forms the cluster (our sockets, our handshake) and hands the connections to timely.
fn connect_cluster(
    cluster: &ClusterConfig,
    stop: &AtomicBool,
    membership: Option<&crate::cluster::membership::Membership>,
) -> Result<(
    Vec<timely::communication::allocator::AllocatorBuilder>,
    Box<dyn std::any::Any + Send>,
    Arc<crate::cluster::handshake::PeerActivity>,
)> {
    use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
    crate::cluster::watchdog::install_panic_hook(cluster);
    let interrupt = crate::cluster::handshake::Interrupt::new(stop, membership);
    let (sockets, activity) = crate::cluster::handshake::form(cluster, &interrupt)?;
    let hooks = timely::communication::initialize::Hooks::default();
    let local = ProcessBuilder::new_typed_vector(cluster.threads, hooks.refill.clone(), None);
    let (builders, guard) =
        timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets(
            local,
            sockets,
            cluster.process,
            cluster.threads,
            hooks,
        )
        .context("starting the cluster's network threads")?;
    Ok((
        builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
        Box::new(guard),
        activity,
    ))
}

fn build<'scope>(
    scope: timely::dataflow::Scope<'scope, u64>,
    plan: &Plan,
    opened: &[Arc<dyn crate::sources::SourceOp>],
    ctx: &Arc<RunContext>,
    dead: &Rc<RefCell<DeadLetters>>,
    worker: usize,
) {
    // Per source, the progress of the windows it feeds (the replay source paces itself by it).
    let downstream: Vec<ProbeHandle<u64>> =
        plan.sources.iter().map(|_| ProbeHandle::new()).collect();
    let sources: Vec<StreamVec<'scope, u64, Trade>> = (0..plan.sources.len())
        .map(|i| {
            let cx = crate::sources::SourceBuildCx {
                ctx,
                index: i,
                dead,
                downstream: downstream[i].clone(),
            };
            opened[i].build(scope, &cx)
        })
        .collect();
    let mut streams: Vec<AnyStream<'scope>> = sources.into_iter().map(AnyStream::Trades).collect();
    for (i, step) in plan.steps.iter().enumerate() {
        let input_node = step.input.node_index(plan.sources.len());
        let side_nodes: Vec<usize> = step
            .sides
            .iter()
            .map(|s| s.node_index(plan.sources.len()))
            .collect();
        let cx = BuildCx {
            ctx,
            index: i,
            input_node,
            side_nodes: &side_nodes,
            dead,
        };
        let mut out = if side_nodes.is_empty() {
            step.op.build(streams[input_node].clone(), &cx)
        } else {
            let sides = side_nodes.iter().map(|n| streams[*n].clone()).collect();
            step.op
                .build_joined(streams[input_node].clone(), sides, &cx)
        };
        if step.op.paces_source() {
            let probe = &downstream[step.output.source];
            out = match out {
                AnyStream::Trades(s) => AnyStream::Trades(s.probe_with(probe)),
                AnyStream::Rows(s) => AnyStream::Rows(s.probe_with(probe)),
            };
        }
        streams.push(out);
    }
    for (i, sink) in plan.sinks.iter().enumerate() {
        let input_node = sink.input.node_index(plan.sources.len());
        let cx = crate::sinks::SinkBuildCx {
            ctx,
            index: i,
            worker,
            input_node,
            dead,
        };
        sink.op.build(streams[input_node].clone(), &cx);
    }
}
