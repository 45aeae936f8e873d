//! The control dataflow: what the processes of a cluster tell each other besides records.
//!
//! Within one process, workers share replay block carries, Kafka watermarks and the stop flag
//! through memory. Across processes the same facts travel as [`ControlMsg`]s: each process's
//! first worker drains an outbox every activation (and at least each [`super::HEARTBEAT`]) and
//! broadcasts it; every process's first worker applies what arrives to its own copy of the shared
//! state. Every message is idempotent (a value set, a maximum raised), so order between
//! processes does not matter.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::{Operator, source};
use timely::dataflow::operators::vec::Broadcast;
use timely::scheduling::SyncActivator;

use crate::dataflow::context::RunContext;

/// One fact for the other processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlMsg {
    /// "Still here" from `process` (the bytes are what the stall watchdog looks for; the first
    /// one says the process has built its dataflow).
    Heartbeat { process: u32 },
    /// What a source on one process tells its copies on the others (a replay block's highest
    /// event time and line count, the carry of the blocks after it); the source's own encoding.
    Source { source: u32, body: Vec<u8> },
    /// A worker's slowest live Kafka partition (watermark alignment).
    Watermark { source: u32, worker: u32, wm: i64 },
    /// A process was asked to stop (Ctrl-C, SIGTERM, `--for`), failed with `error`, or saw the
    /// membership change to `rescale` (a final checkpoint, then a new cluster).
    Stop {
        process: u32,
        error: Option<String>,
        rescale: Option<Vec<String>>,
    },
    /// Checkpoints (see [`crate::checkpoint`]): the leader announces an epoch ...
    CpAnnounce { epoch: u64 },
    /// ... every instance's part is acked to everyone (a slot of the coordinator's acks) ...
    CpAck { slot: u32, epoch: u64 },
    /// ... after its process's record counts (the drained-input test is cluster-wide) ...
    CpCounts {
        process: u32,
        emitted: Vec<u64>,
        received: Vec<u64>,
    },
    /// ... each follower sends what its instances handed over (epoch 0: at the end of input) ...
    CpCollected {
        process: u32,
        epoch: u64,
        collected: crate::checkpoint::coordinator::Collected,
    },
    /// ... and the leader, having written the manifest, says the epoch is complete.
    CpCompleted { epoch: u64, last: bool },
}

/// This process's end of the control dataflow.
pub struct Control {
    pub process: usize,
    pub threads: usize,
    outbox: Mutex<Vec<ControlMsg>>,
    /// The draining operator (on this process's first worker), once built.
    activator: Mutex<Option<SyncActivator>>,
    /// This process told the others to stop (or heard it from them): once is enough.
    stop_sent: AtomicBool,
    /// Local workers whose main dataflow (and everything after it) is done.
    tails_done: AtomicUsize,
    /// The connections' activity, watched by the stall watchdog.
    activity: std::sync::OnceLock<Arc<super::handshake::PeerActivity>>,
}

impl Control {
    pub fn new(process: usize, threads: usize) -> Control {
        Control {
            process,
            threads,
            outbox: Mutex::new(Vec::new()),
            activator: Mutex::new(None),
            stop_sent: AtomicBool::new(false),
            tails_done: AtomicUsize::new(0),
            activity: std::sync::OnceLock::new(),
        }
    }

    /// Queues `msg` for every other process.
    pub fn send(&self, msg: ControlMsg) {
        self.outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg);
        if let Some(a) = &*self.activator.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = a.activate();
        }
    }

    /// Tells the others this process stops (once); `error` when it failed, `rescale` when the
    /// membership changed.
    pub fn send_stop(&self, error: Option<String>, rescale: Option<Vec<String>>) {
        let first = !self.stop_sent.swap(true, Ordering::AcqRel);
        if first || error.is_some() || rescale.is_some() {
            self.send(ControlMsg::Stop {
                process: self.process as u32,
                error,
                rescale,
            });
        }
    }

    /// A stop heard from another process: not to be echoed back.
    pub fn heard_stop(&self) {
        self.stop_sent.store(true, Ordering::Release);
    }

    /// A local worker finished its main dataflow and what comes after (dead letters). The
    /// computation is over: from now on a peer may go quiet without being lost.
    pub fn tail_done(&self) {
        self.tails_done.fetch_add(1, Ordering::AcqRel);
        if let Some(a) = self.activity.get() {
            a.disarmed.store(true, Ordering::Release);
        }
    }

    pub fn watch(&self, activity: Arc<super::handshake::PeerActivity>) {
        let _ = self.activity.set(activity);
    }

    /// A heartbeat of `process` arrived: from now on its silence counts.
    pub fn heard(&self, process: usize) {
        if let Some(flag) = self.activity.get().and_then(|a| a.heard.get(process)) {
            flag.store(true, Ordering::Release);
        }
    }

    fn take(&self) -> Vec<ControlMsg> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether global worker `w` is this process's first (the one that drains and applies).
    fn is_first(&self, w: usize) -> bool {
        w == self.process * self.threads
    }
}

/// Builds the control dataflow on one worker. It ends once `main_done` is set (this worker's
/// main dataflow has finished) on every worker of the cluster.
pub fn build(
    worker: &mut timely::worker::Worker,
    ctx: &Arc<RunContext>,
    main_done: Rc<Cell<bool>>,
) {
    let Some(control) = ctx.control.clone() else {
        return;
    };
    let index = worker.index();
    let first = control.is_first(index);
    let apply_ctx = Arc::clone(ctx);
    let ctx = Arc::clone(ctx);
    worker.dataflow::<u64, _, _>(|scope| {
        source(scope, "ControlOut", move |capability, info| {
            let activator = scope.activator_for(info.address.clone());
            if first {
                *control.activator.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(scope.worker().sync_activator_for(info.address.to_vec()));
            }
            let mut cap = Some(capability);
            let mut last_beat: Option<Instant> = None;
            move |output| {
                let Some(c) = cap.as_ref() else {
                    return;
                };
                let mut again = Duration::from_millis(100);
                // Every local worker is done: a follower sends what is left for the leader's
                // final commit, then the control dataflow may end.
                let ending = main_done.get()
                    && (!first || control.tails_done.load(Ordering::Acquire) >= control.threads);
                if first {
                    if ctx.stop.load(Ordering::Acquire) {
                        control.send_stop(None, None);
                    }
                    let cp = ctx.checkpoint.as_ref();
                    // During a checkpoint, counts travel as they change: consumers in other
                    // processes wait for them to match.
                    if let Some(cp) = cp.filter(|cp| cp.in_progress().is_some()) {
                        if let Some(m) = cp.counts_message(false) {
                            control.send(m);
                        }
                        again = crate::checkpoint::FROZEN_POLL;
                    }
                    if ending && let Some(m) = cp.and_then(|cp| cp.final_contribution()) {
                        control.send(m);
                    }
                    let mut msgs = control.take();
                    if last_beat.is_none_or(|t| t.elapsed() >= super::HEARTBEAT) {
                        msgs.extend(ctx.unsent_watermarks());
                        msgs.push(ControlMsg::Heartbeat {
                            process: control.process as u32,
                        });
                        last_beat = Some(Instant::now());
                    }
                    output.session(c).give_container(&mut msgs);
                }
                if ending {
                    cap = None;
                    return;
                }
                activator.activate_after(again);
            }
        })
        .broadcast()
        .sink(Pipeline, "ControlIn", move |(input, _frontier)| {
            input.for_each(|_time, data| {
                if first {
                    for m in data.drain(..) {
                        apply_ctx.apply_control(m);
                    }
                }
            });
        });
    });
}
