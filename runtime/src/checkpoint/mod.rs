//! Checkpoints and exactly-once publication.
//!
//! A checkpoint is taken at a quiescent cut instead of with in-band barriers: the coordinator
//! asks every source to pause (each records its partitions' next offsets and watermark state);
//! once every record the sources emitted has reached the window operators, each operator
//! serializes its state by key group and freezes; once every row the windows emitted has reached
//! the sinks, each sink closes its open files into `_pending/`. The coordinator then writes the
//! state files and the manifest (last), publishes the pending files (renames, idempotent on
//! retry), and lets everything resume. On start, the last complete manifest is loaded: its
//! pending files are published if they are not yet, every other pending file is deleted,
//! sources seek to its offsets and operators load the key groups they own (`group mod workers`).
//! The dataflow is deterministic for a given input order per partition, so output after any
//! crash equals the uninterrupted run.

pub mod config;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::sinks::storage::Storage;

pub use config::CheckpointSpec;

/// Where a partition stands in a checkpoint.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct PartitionCheckpoint {
    /// Next offset to read.
    pub next: i64,
    pub max_ts: i64,
    pub wm: i64,
}

/// The last file of a checkpoint, written after everything it refers to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub epoch: u64,
    pub key_groups: u32,
    /// source name → partition → position.
    pub sources: BTreeMap<String, BTreeMap<i32, PartitionCheckpoint>>,
    /// window step name → state file (relative to the checkpoint folder).
    pub windows: BTreeMap<String, String>,
    /// Files to publish: (sink path, pending name, final name).
    pub pending: Vec<(String, String, String)>,
}

/// Window state by key group: group → serialized entries.
pub type GroupedState = BTreeMap<u32, Vec<u8>>;

#[derive(Default)]
struct Collected {
    sources: BTreeMap<String, BTreeMap<i32, PartitionCheckpoint>>,
    windows: BTreeMap<String, GroupedState>,
    pending: Vec<(String, String, String)>,
}

/// Coordinates checkpoints among the workers of this process.
pub struct Coordinator {
    pub spec: CheckpointSpec,
    storage: Storage,
    source_instances: usize,
    window_instances: usize,
    sink_instances: usize,
    /// The epoch being taken (0: none).
    pub pausing: AtomicU64,
    /// The last completed epoch.
    pub completed: AtomicU64,
    pub sources_paused: AtomicUsize,
    pub windows_done: AtomicUsize,
    pub sinks_done: AtomicUsize,
    /// Instances that finished (count as paused/done from then on).
    pub sources_finished: AtomicUsize,
    pub windows_finished: AtomicUsize,
    pub sinks_finished: AtomicUsize,
    /// Records emitted per node (sources, then windows) and received per consumer.
    pub emitted: Vec<AtomicU64>,
    pub received: Vec<AtomicU64>,
    collected: Mutex<Collected>,
    /// What the run was restored from.
    pub restored: Option<Manifest>,
    /// Source positions of the last complete checkpoint.
    last_sources: Mutex<BTreeMap<String, BTreeMap<i32, PartitionCheckpoint>>>,
    restored_windows: BTreeMap<String, GroupedState>,
    pub stopping: AtomicBool,
    /// The epoch taken when the run was asked to stop (0: none yet); sources end after it.
    pub final_epoch: AtomicU64,
}

impl Coordinator {
    /// Opens the checkpoint folder and loads the last complete checkpoint, if any: its pending
    /// files are published and every other pending file under `sink_paths` is deleted.
    pub fn open(
        spec: CheckpointSpec,
        rt: tokio::runtime::Handle,
        workers: usize,
        counts: (usize, usize, usize),
        nodes: usize,
        consumers: usize,
        sink_paths: &[String],
    ) -> Result<Coordinator> {
        let storage =
            Storage::open(&spec.path, rt.clone()).context("opening the checkpoint folder")?;
        let mut restored = None;
        let mut restored_windows = BTreeMap::new();
        let manifests: Vec<String> = storage
            .list()?
            .into_iter()
            .filter(|n| n.ends_with("/_manifest.json"))
            .collect();
        if let Some(latest) = manifests.iter().max_by_key(|n| epoch_of(n)) {
            let manifest: Manifest = serde_json::from_slice(&storage.get(latest)?)
                .with_context(|| format!("reading checkpoint `{latest}`"))?;
            anyhow::ensure!(
                manifest.key_groups == spec.key_groups,
                "the checkpoint has {} key groups, the spec {}: key_groups cannot change",
                manifest.key_groups,
                spec.key_groups
            );
            let dir = latest.trim_end_matches("/_manifest.json");
            for (window, file) in &manifest.windows {
                let bytes = storage.get(&format!("{dir}/{file}"))?;
                let groups: GroupedState = serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading window state `{file}`"))?;
                restored_windows.insert(window.clone(), groups);
            }
            publish(&manifest.pending, &rt)?;
            tracing::info!(epoch = manifest.epoch, "restored from checkpoint");
            restored = Some(manifest);
        }
        // Files written under a checkpoint that never completed are discarded.
        let keep: Vec<&(String, String, String)> = restored
            .as_ref()
            .map(|m| m.pending.iter().collect())
            .unwrap_or_default();
        for path in sink_paths {
            let sink = Storage::open(path, rt.clone())?;
            for name in sink.list()? {
                if name.starts_with("_pending/")
                    && !keep
                        .iter()
                        .any(|(p, pending, _)| p == path && pending == &name)
                {
                    sink.delete(&name)?;
                }
            }
        }
        let (source_instances, window_instances, sink_instances) =
            (counts.0 * workers, counts.1 * workers, counts.2 * workers);
        Ok(Coordinator {
            spec,
            storage,
            source_instances,
            window_instances,
            sink_instances,
            pausing: AtomicU64::new(0),
            completed: AtomicU64::new(restored.as_ref().map(|m| m.epoch).unwrap_or(0)),
            sources_paused: AtomicUsize::new(0),
            windows_done: AtomicUsize::new(0),
            sinks_done: AtomicUsize::new(0),
            sources_finished: AtomicUsize::new(0),
            windows_finished: AtomicUsize::new(0),
            sinks_finished: AtomicUsize::new(0),
            emitted: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            received: (0..consumers).map(|_| AtomicU64::new(0)).collect(),
            collected: Mutex::new(Collected::default()),
            last_sources: Mutex::new(
                restored
                    .as_ref()
                    .map(|m| m.sources.clone())
                    .unwrap_or_default(),
            ),
            restored,
            restored_windows,
            stopping: AtomicBool::new(false),
            final_epoch: AtomicU64::new(0),
        })
    }

    /// A source's restored partition positions.
    pub fn restored_partitions(&self, source: &str) -> BTreeMap<i32, PartitionCheckpoint> {
        self.restored
            .as_ref()
            .and_then(|m| m.sources.get(source).cloned())
            .unwrap_or_default()
    }

    /// A window's restored state for the key groups `worker` owns.
    pub fn restored_groups(&self, window: &str, worker: usize, peers: usize) -> Vec<Vec<u8>> {
        self.restored_windows
            .get(window)
            .map(|groups| {
                groups
                    .iter()
                    .filter(|(g, _)| **g as usize % peers == worker)
                    .map(|(_, b)| b.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The epoch a participant should act on now, if any.
    pub fn pending_epoch(&self) -> Option<u64> {
        match self.pausing.load(Ordering::Acquire) {
            0 => None,
            e if e > self.completed.load(Ordering::Acquire) => Some(e),
            _ => None,
        }
    }

    pub fn all_sources_paused(&self) -> bool {
        self.sources_paused.load(Ordering::Acquire) + self.sources_finished.load(Ordering::Acquire)
            >= self.source_instances
    }

    pub fn all_windows_done(&self) -> bool {
        self.windows_done.load(Ordering::Acquire) + self.windows_finished.load(Ordering::Acquire)
            >= self.window_instances
    }

    pub fn record_source(
        &self,
        source: &str,
        parts: impl IntoIterator<Item = (i32, PartitionCheckpoint)>,
    ) {
        let mut c = self.collected.lock().unwrap_or_else(|e| e.into_inner());
        c.sources
            .entry(source.to_string())
            .or_default()
            .extend(parts);
    }

    pub fn record_window(&self, window: &str, groups: GroupedState) {
        let mut c = self.collected.lock().unwrap_or_else(|e| e.into_inner());
        c.windows
            .entry(window.to_string())
            .or_default()
            .extend(groups);
    }

    pub fn record_pending(&self, files: Vec<(String, String, String)>) {
        self.collected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending
            .extend(files);
    }

    /// Whether a source should end now (after the checkpoint taken at a stop).
    pub fn may_end(&self) -> bool {
        let f = self.final_epoch.load(Ordering::Acquire);
        f > 0 && self.completed.load(Ordering::Acquire) >= f
    }

    /// Takes checkpoint after checkpoint until `stopping`. When the run is asked to stop, takes
    /// one last checkpoint at once, so that nothing read is lost.
    pub fn run(self: Arc<Self>, rt: tokio::runtime::Handle, stop: Arc<AtomicBool>) -> Result<()> {
        let interval = self.spec.interval.to_std();
        let mut epoch = self.completed.load(Ordering::Acquire);
        loop {
            let deadline = std::time::Instant::now() + interval;
            while std::time::Instant::now() < deadline && !stop.load(Ordering::Acquire) {
                if self.stopping.load(Ordering::Acquire) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.stopping.load(Ordering::Acquire) {
                return Ok(());
            }
            epoch += 1;
            let last = stop.load(Ordering::Acquire);
            self.sources_paused.store(0, Ordering::Release);
            self.windows_done.store(0, Ordering::Release);
            self.sinks_done.store(0, Ordering::Release);
            self.pausing.store(epoch, Ordering::Release);
            loop {
                let sinks = self.sinks_done.load(Ordering::Acquire)
                    + self.sinks_finished.load(Ordering::Acquire);
                if self.all_sources_paused()
                    && self.all_windows_done()
                    && sinks >= self.sink_instances
                {
                    break;
                }
                if self.stopping.load(Ordering::Acquire) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if last {
                self.final_epoch.store(epoch, Ordering::Release);
            }
            self.commit(epoch, &rt)?;
            self.completed.store(epoch, Ordering::Release);
            if last {
                return Ok(());
            }
        }
    }

    /// The commit at the end of a run whose sources all finished (bounded).
    pub fn commit_final(&self, rt: &tokio::runtime::Handle) -> Result<()> {
        let epoch = self
            .completed
            .load(Ordering::Acquire)
            .max(self.pausing.load(Ordering::Acquire))
            + 1;
        self.commit(epoch, rt)?;
        self.completed.store(epoch, Ordering::Release);
        Ok(())
    }

    /// Writes state and manifest (last), then publishes the pending files.
    pub fn commit(&self, epoch: u64, rt: &tokio::runtime::Handle) -> Result<()> {
        let started = std::time::Instant::now();
        let collected =
            std::mem::take(&mut *self.collected.lock().unwrap_or_else(|e| e.into_inner()));
        let dir = format!("chk-{epoch:010}");
        let mut manifest = Manifest {
            epoch,
            key_groups: self.spec.key_groups,
            ..Manifest::default()
        };
        // Sources not heard from this epoch (e.g. finished) keep their previous positions.
        {
            let mut last = self.last_sources.lock().unwrap_or_else(|e| e.into_inner());
            for (source, parts) in collected.sources {
                last.entry(source).or_default().extend(parts);
            }
            manifest.sources = last.clone();
        }
        for (window, groups) in collected.windows {
            let file = format!("window-{window}.json");
            self.storage
                .put(&format!("{dir}/{file}"), serde_json::to_vec(&groups)?)?;
            manifest.windows.insert(window, file);
        }
        manifest.pending = collected.pending;
        self.storage.put(
            &format!("{dir}/_manifest.json"),
            serde_json::to_vec_pretty(&manifest)?,
        )?;
        publish(&manifest.pending, rt)?;
        tracing::debug!(epoch, files = manifest.pending.len(), took = ?started.elapsed(), "checkpoint complete");
        Ok(())
    }
}

fn epoch_of(name: &str) -> u64 {
    name.split('/')
        .next()
        .and_then(|d| d.strip_prefix("chk-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Renames pending files into place; a file already published is skipped (idempotent).
fn publish(files: &[(String, String, String)], rt: &tokio::runtime::Handle) -> Result<()> {
    for (path, pending, fin) in files {
        let storage = Storage::open(path, rt.clone())?;
        storage.promote(pending, fin)?;
    }
    Ok(())
}
