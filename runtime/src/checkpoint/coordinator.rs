//! The checkpoint coordinator (a thread of its own) and each operator instance's handle on it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::config::CheckpointSpec;
use super::manifest::{
    self, Collected, GroupedState, Manifest, PartitionCheckpoint, PendingTransaction,
};
use super::output::Precommit;
use crate::base::storage::Storage;
use crate::cluster::{Control, ControlMsg};
use crate::metrics::Metrics;

/// What an operator instance does in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Records its positions and stops reading.
    Source,
    /// A step of any kind: once the sources and the steps before it (in the plan's order, where
    /// every step comes after its input) stopped and its input is drained, serializes its state
    /// (if it has any) and freezes.
    Step,
    /// Once its input is drained, closes its files into `_pending/` (or flushes).
    Sink,
    /// A worker's dead letters: once sources and steps stopped, closes its files into
    /// `_pending/` (dead letters are exactly-once too).
    DeadLetters,
}

/// An instance that finished (its input ended) counts as having taken part in every epoch.
const FINISHED: u64 = u64::MAX;

/// The shape of the dataflow, as far as checkpoints are concerned.
pub struct Topology {
    pub workers: usize,
    /// source name → what it reads (a Kafka topic).
    pub inputs: BTreeMap<String, String>,
    pub sources: usize,
    pub steps: usize,
    pub sinks: usize,
    /// Whether dead letters are written (one instance per worker).
    pub dead_letters: bool,
    /// In a cluster: (this process, processes, worker threads per process). `workers` counts
    /// the workers of every process.
    pub cluster: Option<(usize, usize, usize)>,
}

impl Topology {
    /// The instances of `role`: a range of `acks`.
    fn range(&self, role: Role) -> std::ops::Range<usize> {
        let w = self.workers;
        let d = if self.dead_letters { w } else { 0 };
        let sizes = [
            (Role::Source, self.sources * w),
            (Role::Step, self.steps * w),
            (Role::Sink, self.sinks * w),
            (Role::DeadLetters, d),
        ];
        let mut start = 0;
        for (r, n) in sizes {
            if r == role {
                return start..start + n;
            }
            start += n;
        }
        unreachable!("every role has a range")
    }

    /// Whether this process commits checkpoints (alone, or process 0 of a cluster).
    fn leader(&self) -> bool {
        self.cluster.is_none_or(|(p, _, _)| p == 0)
    }

    /// The ack slots of this process's instances, every role.
    fn local_slots(&self) -> Vec<usize> {
        let (w, local) = match self.cluster {
            None => (self.workers, 0..self.workers),
            Some((p, _, t)) => (self.workers, p * t..(p + 1) * t),
        };
        let mut slots = Vec::new();
        for role in [Role::Source, Role::Step, Role::Sink, Role::DeadLetters] {
            let r = self.range(role);
            for i in 0..r.len() / w.max(1) {
                slots.extend(local.clone().map(|x| r.start + i * w + x));
            }
        }
        slots
    }
}

/// How a coordinator reaches the other processes of its cluster.
struct ClusterLink {
    control: Arc<Control>,
    process: usize,
    /// Per process: its counts of records emitted per node and received per consumer.
    remote_emitted: Vec<Vec<AtomicU64>>,
    remote_received: Vec<Vec<AtomicU64>>,
    /// Per process: the last epoch it sent its collected part of (leader side).
    contributed: Vec<AtomicU64>,
    /// The counts this process sent last.
    sent_counts: Mutex<(Vec<u64>, Vec<u64>)>,
}

/// Coordinates checkpoints among the workers of this process.
pub struct Coordinator {
    pub spec: CheckpointSpec,
    storage: Storage,
    topo: Topology,
    /// The epoch announced last (0: none yet).
    announced: AtomicU64,
    /// The last completed epoch.
    completed: AtomicU64,
    /// Per instance (sources, steps, sinks; `index * workers + worker`): the last epoch it took
    /// part in, or [`FINISHED`].
    acks: Vec<AtomicU64>,
    /// Records emitted per node (sources, steps) and received per consumer (steps, sinks), summed
    /// over workers.
    emitted: Vec<AtomicU64>,
    received: Vec<AtomicU64>,
    collected: Mutex<Collected>,
    /// The epoch whose part `collected` was last taken for (set under its lock): what is
    /// collected now belongs to the next one.
    taken: AtomicU64,
    /// Transactions listed by the last manifest whose commit no checkpoint has heard of yet
    /// (leader).
    open_transactions: Mutex<Vec<PendingTransaction>>,
    /// What the run was restored from.
    restored: Option<Manifest>,
    restored_state: BTreeMap<String, GroupedState>,
    /// Source positions of the last complete checkpoint (sources that finished keep theirs).
    last_sources: Mutex<BTreeMap<String, BTreeMap<i32, PartitionCheckpoint>>>,
    /// Set when the dataflow has ended: the coordinator thread exits.
    ended: AtomicBool,
    /// The epoch taken when the run was asked to stop (0: none yet); sources end after it.
    final_epoch: AtomicU64,
    /// A checkpoint could not be written: the run stops (with the error) without waiting for one.
    failed: AtomicBool,
    metrics: Arc<Metrics>,
    /// In a cluster: the link to the other processes (set once the control dataflow exists).
    cluster: std::sync::OnceLock<ClusterLink>,
    /// The values decided at checkpoints, by name: the epoch that decided each, and its bytes.
    /// Stored before `completed` (so whoever sees an epoch complete sees its decisions).
    decided: Mutex<BTreeMap<String, (u64, Arc<[u8]>)>>,
    /// The newest epoch that decided anything (0: none): a cheap test before the lock.
    decided_epoch: AtomicU64,
}

impl Coordinator {
    /// Opens the checkpoint folder and loads the last complete checkpoint, if any: its pending
    /// files are published and every other pending file under `sink_paths` is deleted.
    pub fn open(
        spec: CheckpointSpec,
        rt: &tokio::runtime::Handle,
        topo: Topology,
        sink_paths: &[String],
        metrics: Arc<Metrics>,
    ) -> Result<Coordinator> {
        let storage =
            Storage::open(&spec.path, rt.clone()).context("opening the checkpoint folder")?;
        let (restored, restored_state) = match manifest::load_latest(&storage)? {
            Some((m, state)) => {
                anyhow::ensure!(
                    m.key_groups == spec.key_groups,
                    "checkpoint {} in `{}` has {} key groups but the spec says {}: key_groups \
                     cannot change for the life of a pipeline",
                    m.epoch,
                    storage.display,
                    m.key_groups,
                    spec.key_groups
                );
                for (source, input) in &m.inputs {
                    if let Some(now) = topo.inputs.get(source)
                        && now != input
                    {
                        anyhow::bail!(
                            "checkpoint {} in `{}` was taken with source `{source}` reading \
                             `{input}`, but it now reads `{now}`: point `checkpoints.path` \
                             (CHECKPOINT_URL) at another folder, or delete this one to start over",
                            m.epoch,
                            storage.display
                        );
                    }
                }
                // Only the leader touches sink folders: followers read the same manifest.
                if topo.leader() {
                    manifest::publish(&m.pending, rt)?;
                }
                tracing::info!(epoch = m.epoch, "restored from checkpoint");
                (Some(m), state)
            }
            None => (None, BTreeMap::new()),
        };
        let keep = restored.as_ref().map(|m| &m.pending[..]).unwrap_or(&[]);
        let discarded = if topo.leader() {
            manifest::discard_uncommitted(sink_paths, keep, rt)?
        } else {
            0
        };
        if discarded > 0 {
            tracing::info!(
                files = discarded,
                "discarded files of a checkpoint that never completed"
            );
        }
        let instances = topo.range(Role::DeadLetters).end;
        let epoch = restored.as_ref().map(|m| m.epoch).unwrap_or(0);
        Ok(Coordinator {
            storage,
            announced: AtomicU64::new(epoch),
            completed: AtomicU64::new(epoch),
            acks: (0..instances).map(|_| AtomicU64::new(epoch)).collect(),
            emitted: (0..topo.sources + topo.steps)
                .map(|_| AtomicU64::new(0))
                .collect(),
            received: (0..topo.steps + topo.sinks)
                .map(|_| AtomicU64::new(0))
                .collect(),
            collected: Mutex::new(Collected::default()),
            taken: AtomicU64::new(epoch),
            open_transactions: Mutex::new(Vec::new()),
            last_sources: Mutex::new(
                restored
                    .as_ref()
                    .map(|m| m.sources.clone())
                    .unwrap_or_default(),
            ),
            restored,
            restored_state,
            ended: AtomicBool::new(false),
            final_epoch: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            spec,
            topo,
            metrics,
            cluster: std::sync::OnceLock::new(),
            decided: Mutex::new(BTreeMap::new()),
            decided_epoch: AtomicU64::new(0),
        })
    }

    /// Joins the coordinators of a cluster through this process's control dataflow.
    pub fn attach(&self, control: Arc<Control>) {
        let Some((process, processes, _)) = self.topo.cluster else {
            return;
        };
        let counters = |n: usize| {
            (0..processes)
                .map(|_| (0..n).map(|_| AtomicU64::new(0)).collect())
                .collect()
        };
        let epoch = self.completed.load(Ordering::Acquire);
        let _ = self.cluster.set(ClusterLink {
            control,
            process,
            remote_emitted: counters(self.emitted.len()),
            remote_received: counters(self.received.len()),
            contributed: (0..processes).map(|_| AtomicU64::new(epoch)).collect(),
            sent_counts: Mutex::new((Vec::new(), Vec::new())),
        });
    }

    /// Records emitted by `node` in the whole cluster.
    fn emitted_total(&self, node: usize) -> u64 {
        self.total(&self.emitted, |c| &c.remote_emitted, node)
    }

    /// Records received by `consumer` in the whole cluster.
    fn received_total(&self, consumer: usize) -> u64 {
        self.total(&self.received, |c| &c.remote_received, consumer)
    }

    /// This process's count `i` plus every other process's.
    fn total(
        &self,
        local: &[AtomicU64],
        remote: impl Fn(&ClusterLink) -> &Vec<Vec<AtomicU64>>,
        i: usize,
    ) -> u64 {
        let here = local[i].load(Ordering::Acquire);
        self.cluster.get().map_or(here, |c| {
            here + remote(c)
                .iter()
                .enumerate()
                .filter(|(p, _)| *p != c.process)
                .map(|(_, v)| v[i].load(Ordering::Acquire))
                .sum::<u64>()
        })
    }

    /// This process's counts, when they changed since they were last sent (or `always`).
    pub(crate) fn counts_message(&self, always: bool) -> Option<ControlMsg> {
        let c = self.cluster.get()?;
        let load = |v: &[AtomicU64]| v.iter().map(|a| a.load(Ordering::Acquire)).collect();
        let now: (Vec<u64>, Vec<u64>) = (load(&self.emitted), load(&self.received));
        let mut sent = c.sent_counts.lock().unwrap_or_else(|e| e.into_inner());
        if !always && *sent == now {
            return None;
        }
        *sent = now.clone();
        Some(ControlMsg::CpCounts {
            process: c.process as u32,
            emitted: now.0,
            received: now.1,
        })
    }

    /// Tells the other processes that `slot` took part in `epoch`, after this process's counts
    /// (so that whoever sees the ack sees every record counted before it).
    fn broadcast_ack(&self, slot: usize, epoch: u64) {
        if let Some(c) = self.cluster.get() {
            if let Some(counts) = self.counts_message(true) {
                c.control.send(counts);
            }
            c.control.send(ControlMsg::CpAck {
                slot: slot as u32,
                epoch,
            });
        }
    }

    /// Applies a checkpoint message from another process.
    pub fn apply(&self, msg: ControlMsg) {
        let Some(c) = self.cluster.get() else {
            return;
        };
        match msg {
            ControlMsg::CpAnnounce { epoch } => {
                self.announced.fetch_max(epoch, Ordering::AcqRel);
            }
            ControlMsg::CpAck { slot, epoch } => {
                if let Some(a) = self.acks.get(slot as usize) {
                    a.fetch_max(epoch, Ordering::AcqRel);
                }
            }
            ControlMsg::CpCounts {
                process,
                emitted,
                received,
            } => {
                let p = process as usize;
                if p == c.process || p >= c.remote_emitted.len() {
                    return;
                }
                for (a, v) in c.remote_emitted[p].iter().zip(emitted) {
                    a.fetch_max(v, Ordering::AcqRel);
                }
                for (a, v) in c.remote_received[p].iter().zip(received) {
                    a.fetch_max(v, Ordering::AcqRel);
                }
            }
            ControlMsg::CpCollected {
                process,
                epoch,
                collected,
            } => {
                let p = process as usize;
                if p == c.process || !self.topo.leader() {
                    return;
                }
                match bincode::deserialize::<Collected>(&collected) {
                    Ok(collected) => self.merge(collected),
                    Err(e) => {
                        // Its epoch is not counted as contributed: that checkpoint never
                        // completes (the next one carries the same parts again), rather than
                        // completing without them.
                        tracing::error!(
                            "checkpoint: process {p}'s part of epoch {epoch} does not decode: {e}"
                        );
                        return;
                    }
                }
                if let Some(a) = c.contributed.get(p) {
                    a.fetch_max(epoch, Ordering::AcqRel);
                }
            }
            ControlMsg::CpCompleted {
                epoch,
                last,
                decisions,
            } => {
                if self.topo.leader() {
                    return;
                }
                if !decisions.is_empty() {
                    match bincode::deserialize::<BTreeMap<String, Vec<u8>>>(&decisions) {
                        Ok(d) => self.adopt_decisions(epoch, d),
                        // Workers of this process would go on with other values than the
                        // leader's: the run stops rather than compute with them.
                        Err(e) => {
                            tracing::error!(
                                "checkpoint: the decisions of epoch {epoch} do not decode: {e}"
                            );
                            self.failed.store(true, Ordering::Release);
                            return;
                        }
                    }
                }
                if last {
                    self.final_epoch.store(epoch, Ordering::Release);
                }
                self.completed.fetch_max(epoch, Ordering::AcqRel);
            }
            _ => {}
        }
    }

    fn merge(&self, other: Collected) {
        let mut c = self.collected.lock().unwrap_or_else(|e| e.into_inner());
        for (source, parts) in other.sources {
            c.sources.entry(source).or_default().extend(parts);
        }
        for (step, groups) in other.state {
            c.state.entry(step).or_default().extend(groups);
        }
        c.pending.extend(other.pending);
        c.transactions.extend(other.transactions);
        c.committed.extend(other.committed);
        c.decisions.extend(other.decisions);
    }

    /// Takes what the instances handed over, as `epoch`'s part.
    fn take_collected(&self, epoch: u64) -> Collected {
        let mut c = self.collected.lock().unwrap_or_else(|e| e.into_inner());
        self.taken.store(epoch, Ordering::Release);
        std::mem::take(&mut *c)
    }

    /// Makes `decisions` (of `epoch`) visible to the workers; before `epoch` counts as complete.
    fn adopt_decisions(&self, epoch: u64, decisions: BTreeMap<String, Vec<u8>>) {
        if decisions.is_empty() {
            return;
        }
        let mut decided = self.decided.lock().unwrap_or_else(|e| e.into_inner());
        for (name, bytes) in decisions {
            decided.insert(name, (epoch, bytes.into()));
        }
        self.decided_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// The value last decided under `name` at a checkpoint, with the epoch that decided it, when
    /// that epoch is newer than `after` (a worker passes the epoch it adopted last).
    pub fn decision(&self, name: &str, after: u64) -> Option<(u64, Arc<[u8]>)> {
        if self.decided_epoch.load(Ordering::Acquire) <= after {
            return None;
        }
        let decided = self.decided.lock().unwrap_or_else(|e| e.into_inner());
        decided
            .get(name)
            .filter(|(epoch, _)| *epoch > after)
            .cloned()
    }

    /// The last completed epoch (what the run was restored from, before the first checkpoint).
    pub fn completed_epoch(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// A follower's part once its dataflow ended: everything its instances handed over since
    /// the last checkpoint, for the leader's final commit.
    pub fn final_contribution(&self) -> Option<ControlMsg> {
        let c = self.cluster.get()?;
        if self.topo.leader() {
            return None;
        }
        let collected = encode(&self.take_collected(u64::MAX));
        Some(ControlMsg::CpCollected {
            process: c.process as u32,
            epoch: 0,
            collected,
        })
    }

    /// The transactions of `sink` the restored checkpoint lists as not known to be committed.
    pub fn restored_transactions(&self, sink: &str) -> Vec<PendingTransaction> {
        self.restored
            .iter()
            .flat_map(|m| &m.transactions)
            .filter(|t| t.sink == sink)
            .cloned()
            .collect()
    }

    /// The checkpoint folder (outputs keep small records of their own there).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Whether checkpoints failed (the run is stopping): no further one completes.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// A source's restored partition positions.
    pub fn restored_partitions(&self, source: &str) -> BTreeMap<i32, PartitionCheckpoint> {
        self.restored
            .as_ref()
            .and_then(|m| m.sources.get(source).cloned())
            .unwrap_or_default()
    }

    /// A stateful step's restored state for the key groups `worker` owns.
    pub fn restored_groups(&self, step: &str, worker: usize, peers: usize) -> Vec<&[u8]> {
        self.restored_state
            .get(step)
            .map(|groups| {
                groups
                    .iter()
                    .filter(|(g, _)| **g as usize % peers == worker)
                    .map(|(_, b)| b.as_slice())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One key group of a stateful step's restored state, whichever worker owns it (state that
    /// every worker needs, such as a table's versions).
    pub fn restored_group(&self, step: &str, group: u32) -> Option<&[u8]> {
        self.restored_state
            .get(step)?
            .get(&group)
            .map(Vec::as_slice)
    }

    /// The handle of one operator instance. `index` is the source, window, model or sink
    /// number; a consumer names the node it reads (`input`: [`crate::plan::NodeRef::node_index`]).
    pub fn participant(
        self: &Arc<Self>,
        role: Role,
        index: usize,
        worker: usize,
        input: Option<usize>,
    ) -> Participant {
        let t = &self.topo;
        let (emits, consumer) = match role {
            Role::Source => (Some(index), None),
            Role::Step => (Some(t.sources + index), Some(index)),
            Role::Sink => (None, Some(t.steps + index)),
            Role::DeadLetters => (None, None),
        };
        Participant {
            cp: Arc::clone(self),
            role,
            index,
            slot: t.range(role).start + index * t.workers + worker,
            emits,
            consumes: consumer.zip(input),
            also: Vec::new(),
            acked: self.completed.load(Ordering::Acquire),
        }
    }

    /// The checkpoint in progress, if any. After a failed commit there is none: the operators
    /// must not stay frozen waiting for it (the run is stopping).
    pub(crate) fn in_progress(&self) -> Option<u64> {
        if self.failed.load(Ordering::Acquire) {
            return None;
        }
        let e = self.announced.load(Ordering::Acquire);
        (e > self.completed.load(Ordering::Acquire)).then_some(e)
    }

    fn all_acked(&self, role: Role, epoch: u64) -> bool {
        self.acks[self.topo.range(role)]
            .iter()
            .all(|a| a.load(Ordering::Acquire) >= epoch)
    }

    /// Whether every instance of the first `n` steps took part in `epoch` (a step reads a
    /// source or a step before it).
    fn steps_acked(&self, n: usize, epoch: u64) -> bool {
        let r = self.topo.range(Role::Step);
        self.acks[r.start..r.start + n * self.topo.workers]
            .iter()
            .all(|a| a.load(Ordering::Acquire) >= epoch)
    }

    /// Whether the run may end now: a stop was asked for and its checkpoint is complete (or
    /// checkpoints failed, so none will ever complete).
    pub fn stop_checkpointed(&self) -> bool {
        let f = self.final_epoch.load(Ordering::Acquire);
        (f > 0 && self.completed.load(Ordering::Acquire) >= f)
            || self.failed.load(Ordering::Acquire)
    }

    /// Takes a checkpoint every `interval` until the dataflow ends. When the run is asked to
    /// stop, takes one last checkpoint at once so that nothing read is lost. When a checkpoint
    /// cannot be written the run stops: going on would read input no checkpoint covers, and a
    /// stop would wait for a checkpoint that never comes.
    pub fn run(&self, rt: &tokio::runtime::Handle, stop: &AtomicBool) -> Result<()> {
        let result = if self.topo.leader() {
            self.checkpoint_until_end(rt, stop)
        } else {
            self.follow_until_end();
            Ok(())
        };
        if result.is_err() {
            self.failed.store(true, Ordering::Release);
            stop.store(true, Ordering::Release);
        }
        result
    }

    /// A follower process: once every instance of this process took part in an announced
    /// epoch, sends what they handed over to the leader, which commits.
    fn follow_until_end(&self) {
        let slots = self.topo.local_slots();
        let mut contributed = self.completed.load(Ordering::Acquire);
        while !self.ended.load(Ordering::Acquire) && !self.failed.load(Ordering::Acquire) {
            let epoch = self.announced.load(Ordering::Acquire);
            if epoch > contributed
                && slots
                    .iter()
                    .all(|s| self.acks[*s].load(Ordering::Acquire) >= epoch)
                && let Some(c) = self.cluster.get()
            {
                let collected = encode(&self.take_collected(epoch));
                c.control.send(ControlMsg::CpCollected {
                    process: c.process as u32,
                    epoch,
                    collected,
                });
                contributed = epoch;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Whether every follower sent its part of `epoch`.
    fn all_contributed(&self, epoch: u64) -> bool {
        self.cluster.get().is_none_or(|c| {
            c.contributed
                .iter()
                .enumerate()
                .all(|(p, a)| p == c.process || a.load(Ordering::Acquire) >= epoch)
        })
    }

    fn announce(&self, epoch: u64) {
        self.announced.store(epoch, Ordering::Release);
        if let Some(c) = self.cluster.get() {
            c.control.send(ControlMsg::CpAnnounce { epoch });
        }
    }

    fn checkpoint_until_end(&self, rt: &tokio::runtime::Handle, stop: &AtomicBool) -> Result<()> {
        let interval = self.spec.interval.to_std();
        loop {
            let deadline = Instant::now() + interval;
            // Once every source, step and sink has finished (a bounded run), what they handed
            // over is committed at once, while the dataflow is still there: an output that
            // commits its own transaction (the Kafka sink) waits for that to end.
            let mut finished = false;
            while Instant::now() < deadline && !stop.load(Ordering::Acquire) {
                if self.ended.load(Ordering::Acquire) {
                    return Ok(());
                }
                if self.all_finished() {
                    finished = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let last = stop.load(Ordering::Acquire);
            let epoch = self.completed.load(Ordering::Acquire) + 1;
            self.announce(epoch);
            let started = Instant::now();
            // Phase by phase (the timings go to the debug log).
            let mut phases = [Duration::ZERO; 4];
            let roles = [Role::Source, Role::Step, Role::Sink, Role::DeadLetters];
            for (i, role) in roles.into_iter().enumerate() {
                while !self.all_acked(role, epoch) {
                    if self.ended.load(Ordering::Acquire) || self.failed.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                phases[i] = started.elapsed();
            }
            while !self.all_contributed(epoch) {
                if self.ended.load(Ordering::Acquire) || self.failed.load(Ordering::Acquire) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            if self.failed.load(Ordering::Acquire) {
                return Ok(());
            }
            let state_bytes = self.commit(epoch, last, rt)?;
            tracing::debug!(
                epoch,
                state_bytes,
                sources = ?phases[0],
                steps = ?phases[1],
                sinks = ?phases[2],
                dead_letters = ?phases[3],
                committed = ?started.elapsed(),
                "checkpoint phases"
            );
            self.metrics
                .checkpoint_millis
                .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            if last || finished {
                return Ok(());
            }
        }
    }

    /// Whether every source, step and sink instance of the cluster has finished.
    fn all_finished(&self) -> bool {
        let end = self.topo.range(Role::Sink).end;
        self.acks[..end]
            .iter()
            .all(|a| a.load(Ordering::Acquire) == FINISHED)
    }

    /// The run failed: no further checkpoint may commit (its state could be incomplete), and
    /// nothing waits for one. A restart resumes from the last complete checkpoint.
    pub fn abort(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Tells the coordinator thread the dataflow has ended.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }

    /// The commit at the end of a run whose sources all finished (`--bounded`): everything the
    /// instances handed over since the last checkpoint.
    pub fn commit_final(&self, rt: &tokio::runtime::Handle) -> Result<()> {
        let epoch = self
            .completed
            .load(Ordering::Acquire)
            .max(self.announced.load(Ordering::Acquire))
            + 1;
        self.announced.store(epoch, Ordering::Release);
        self.commit(epoch, false, rt).map(|_| ())
    }

    /// Whether this process commits (alone, or the cluster's process 0).
    pub fn leader(&self) -> bool {
        self.topo.leader()
    }

    /// Writes state and manifest (last), publishes the pending files, then lets the operators
    /// resume. Returns the size of the state written.
    fn commit(&self, epoch: u64, last: bool, rt: &tokio::runtime::Handle) -> Result<usize> {
        let collected = self.take_collected(epoch);
        let dir = manifest::folder(epoch);
        let mut m = Manifest {
            epoch,
            key_groups: self.spec.key_groups,
            inputs: self.topo.inputs.clone(),
            ..Manifest::default()
        };
        {
            let mut last = self.last_sources.lock().unwrap_or_else(|e| e.into_inner());
            for (source, parts) in collected.sources {
                last.entry(source).or_default().extend(parts);
            }
            m.sources = last.clone();
        }
        let mut state_bytes = 0;
        for (step, groups) in collected.state {
            let file = format!("state-{step}.bin");
            let bytes = bincode::serialize(&groups)?;
            state_bytes += bytes.len();
            self.storage.put(&format!("{dir}/{file}"), bytes)?;
            m.state.insert(step, file);
        }
        m.pending = collected.pending;
        {
            let mut open = self
                .open_transactions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            open.extend(collected.transactions);
            open.retain(|t| !collected.committed.contains(&t.tag));
            m.transactions = open.clone();
        }
        // The commit point, fenced: a manifest for this epoch that someone else wrote (a stale
        // process of an earlier cluster generation, say) is never overwritten.
        let manifest_name = format!("{dir}/{}", manifest::MANIFEST);
        if !self
            .storage
            .put_new(&manifest_name, serde_json::to_vec_pretty(&m)?)?
        {
            anyhow::bail!(
                "checkpoint {epoch} in `{}` was committed by another process: two leaders write to the same checkpoint folder (is an old process of this pipeline still running?)",
                self.storage.display
            );
        }
        if !m.transactions.is_empty() && failpoint("crash-after-manifest") {
            tracing::error!(
                epoch,
                "failpoint crash-after-manifest: the process aborts after the manifest, before any transaction of it commits"
            );
            std::process::abort();
        }
        // Committed. Publishing is idempotent, so a crash from here on is repaired at restart.
        manifest::publish(&m.pending, rt)?;
        self.metrics
            .files_published
            .fetch_add(m.pending.len() as u64, Ordering::Relaxed);
        self.metrics.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .checkpoint_completed_ms
            .store(crate::base::time::now_ms(), Ordering::Relaxed);
        if last {
            self.final_epoch.store(epoch, Ordering::Release);
        }
        // For the other processes (encoded before this one takes them).
        let decisions = match self.cluster.get() {
            Some(_) if !collected.decisions.is_empty() => bincode::serialize(&collected.decisions)?,
            _ => Vec::new(),
        };
        self.adopt_decisions(epoch, collected.decisions);
        self.completed.store(epoch, Ordering::Release);
        if let Some(c) = self.cluster.get() {
            c.control.send(ControlMsg::CpCompleted {
                epoch,
                last,
                decisions,
            });
        }
        if let Err(e) = manifest::delete_older(&self.storage, epoch.saturating_sub(1)) {
            tracing::warn!(error = %format!("{e:#}"), "deleting old checkpoints");
        }
        tracing::debug!(epoch, files = m.pending.len(), "checkpoint complete");
        Ok(state_bytes)
    }
}

/// One operator instance's part in checkpoints.
pub struct Participant {
    cp: Arc<Coordinator>,
    role: Role,
    /// The source, window, model or sink number.
    index: usize,
    slot: usize,
    /// The node this instance emits for, and (consumer, input node) it receives as.
    emits: Option<usize>,
    consumes: Option<(usize, usize)>,
    /// Other nodes it reads (a join's right side): their records count as received too.
    also: Vec<usize>,
    acked: u64,
}

impl Participant {
    pub fn coordinator(&self) -> &Coordinator {
        &self.cp
    }

    /// A step that reads `nodes` besides its input: it is drained once it received what all of
    /// them emitted.
    pub fn also_consumes(mut self, nodes: &[usize]) -> Self {
        self.also = nodes.to_vec();
        self
    }

    /// Counts records this instance gave to its output.
    pub fn emitted(&self, n: usize) {
        if let (Some(node), true) = (self.emits, n > 0) {
            self.cp.emitted[node].fetch_add(n as u64, Ordering::AcqRel);
        }
    }

    /// Counts records this instance took from its input.
    pub fn received(&self, n: usize) {
        if let (Some((consumer, _)), true) = (self.consumes, n > 0) {
            self.cp.received[consumer].fetch_add(n as u64, Ordering::AcqRel);
        }
    }

    /// The checkpoint in progress, if any: while there is one, sources read nothing and windows
    /// fire nothing.
    pub fn in_progress(&self) -> Option<u64> {
        self.cp.in_progress()
    }

    /// Whether this instance should take its part in `epoch` now: it has not yet, and everything
    /// upstream has stopped and been delivered to it.
    pub fn due(&self, epoch: u64) -> bool {
        if self.acked >= epoch {
            return false;
        }
        let upstream_quiet = match self.role {
            Role::Source => true,
            Role::Step => {
                self.cp.all_acked(Role::Source, epoch) && self.cp.steps_acked(self.index, epoch)
            }
            Role::Sink | Role::DeadLetters => {
                self.cp.all_acked(Role::Source, epoch) && self.cp.all_acked(Role::Step, epoch)
            }
        };
        upstream_quiet
            && self.consumes.is_none_or(|(consumer, input)| {
                let sent: u64 = self.also.iter().map(|n| self.cp.emitted_total(*n)).sum();
                self.cp.received_total(consumer) == self.cp.emitted_total(input) + sent
            })
    }

    /// Records this instance's part in `epoch`.
    pub fn ack(&mut self, epoch: u64) {
        self.acked = epoch;
        self.cp.acks[self.slot].fetch_max(epoch, Ordering::AcqRel);
        self.cp.broadcast_ack(self.slot, epoch);
    }

    /// The instance's input ended: it takes part in no further checkpoint.
    pub fn finish(&mut self) {
        self.acked = FINISHED;
        self.cp.acks[self.slot].store(FINISHED, Ordering::Release);
        self.cp.broadcast_ack(self.slot, FINISHED);
    }

    pub fn finished(&self) -> bool {
        self.acked == FINISHED
    }

    pub fn record_source(
        &self,
        source: &str,
        parts: impl IntoIterator<Item = (i32, PartitionCheckpoint)>,
    ) {
        let mut c = self.cp.collected.lock().unwrap_or_else(|e| e.into_inner());
        c.sources
            .entry(source.to_string())
            .or_default()
            .extend(parts);
    }

    /// A stateful operator's (window's or model's) turn, once per activation: counts the records
    /// that arrived and, during a checkpoint, records `snapshot()` once it is due. Returns whether
    /// the operator is frozen (a checkpoint is in progress: emit nothing); it is activated again
    /// soon either way, so it sees the checkpoint begin and end without input.
    pub fn stateful_turn(
        &mut self,
        step: &str,
        received: usize,
        activator: &timely::scheduling::Activator,
        snapshot: impl FnOnce() -> Option<GroupedState>,
    ) -> bool {
        if self.finished() {
            return false;
        }
        self.received(received);
        if let Some(epoch) = self.in_progress() {
            if self.due(epoch) {
                if let Some(groups) = snapshot() {
                    self.record_state(step, groups);
                }
                self.ack(epoch);
            }
            activator.activate_after(super::FROZEN_POLL);
            return true;
        }
        activator.activate_after(super::IDLE_POLL);
        false
    }

    /// Records a stateful step's (window's or model's) state of the key groups this instance owns.
    pub fn record_state(&self, step: &str, groups: GroupedState) {
        let mut c = self.cp.collected.lock().unwrap_or_else(|e| e.into_inner());
        c.state.entry(step.to_string()).or_default().extend(groups);
    }

    /// A handle to decide values at this instance's checkpoints ([`Decider`]).
    pub fn decider(&self) -> Decider {
        Decider {
            cp: Arc::clone(&self.cp),
        }
    }

    /// Hands over what an output precommitted; returns the checkpoint it belongs to.
    pub fn record_pending(&self, part: Precommit) -> u64 {
        let mut c = self.cp.collected.lock().unwrap_or_else(|e| e.into_inner());
        c.pending.extend(part.files);
        c.transactions.extend(part.transactions);
        self.cp.taken.load(Ordering::Acquire).saturating_add(1)
    }

    /// Reports a transaction committed (its tag): later manifests no longer list it.
    pub fn record_committed(&self, tag: String) {
        self.cp
            .collected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .committed
            .push(tag);
    }
}

/// Decides a value during a checkpoint (while taking its snapshot) that every worker of the
/// cluster adopts once that checkpoint completes, and not before: all of them switch at the same
/// boundary, so the output of no epoch mixes the old value and the new one (a model step's new
/// model, say). A run restored later starts from its own view again (the model file on disk).
pub struct Decider {
    cp: Arc<Coordinator>,
}

impl Decider {
    pub fn decide(&self, name: &str, value: Vec<u8>) {
        self.cp
            .collected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .decisions
            .insert(name.to_string(), value);
    }
}

/// Whether the failure test named `name` is on (`TICKFLOW_FAILPOINT=name`): the tests crash
/// the process at points no signal can be timed to hit.
fn failpoint(name: &str) -> bool {
    std::env::var("TICKFLOW_FAILPOINT").is_ok_and(|v| v == name)
}

/// A follower's part as it travels to the leader ([`ControlMsg::CpCollected`]).
fn encode(collected: &Collected) -> Vec<u8> {
    bincode::serialize(collected).expect("a checkpoint part serializes")
}
