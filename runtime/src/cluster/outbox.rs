//! What the processes of a cluster tell each other besides records ([`ControlMsg`]), and this
//! process's outbox of them ([`Control`]); the control dataflow ([`crate::dataflow::control`]) carries
//! them. Below the run context: it depends on nothing of the run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use timely::scheduling::SyncActivator;

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
    /// ... each follower sends what its instances handed over (epoch 0: at the end of input;
    /// the checkpoint coordinator's own encoding) ...
    CpCollected {
        process: u32,
        epoch: u64,
        collected: Vec<u8>,
    },
    /// ... and the leader, having written the manifest, says the epoch is complete, with the
    /// values decided during it that every worker adopts from then on (the checkpoint
    /// coordinator's own encoding; empty: none).
    CpCompleted {
        epoch: u64,
        last: bool,
        decisions: Vec<u8>,
    },
}

/// This process's end of the control dataflow.
pub struct Control {
    pub process: usize,
    pub threads: usize,
    pub(crate) outbox: Mutex<Vec<ControlMsg>>,
    /// The draining operator (on this process's first worker), once built.
    pub(crate) activator: Mutex<Option<SyncActivator>>,
    /// This process told the others to stop (or heard it from them): once is enough.
    stop_sent: AtomicBool,
    /// Local workers whose main dataflow (and everything after it) is done.
    pub(crate) tails_done: AtomicUsize,
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

    pub(crate) fn take(&self) -> Vec<ControlMsg> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether global worker `w` is this process's first (the one that drains and applies).
    pub(crate) fn is_first(&self, w: usize) -> bool {
        w == self.process * self.threads
    }
}
