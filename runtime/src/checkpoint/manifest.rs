//! What a checkpoint is made of on storage: `chk-EPOCH/` folders holding one state file per
//! stateful step (windows, models) and, written last, `_manifest.json`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::base::storage::Storage;

pub const MANIFEST: &str = "_manifest.json";

/// Where a partition stands in a checkpoint.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct PartitionCheckpoint {
    /// Next offset to read.
    pub next: i64,
    pub max_ts: i64,
    pub wm: i64,
}

/// A sink file closed under a checkpoint and published when the checkpoint completes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingFile {
    /// The sink's configured path (local path or URL).
    pub sink: String,
    /// Name under the sink folder while pending.
    pub pending: String,
    /// Final name under the sink folder.
    pub file: String,
}

/// A transaction an output (the Kafka sink) flushed under a checkpoint: its writer commits it
/// once the checkpoint completes. Until a later checkpoint learns that it did, every manifest
/// lists it, and a restart makes sure it is committed (or writes its records again).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingTransaction {
    /// The sink's name.
    pub sink: String,
    /// The writer's `transactional.id`.
    pub id: String,
    /// What every record of the transaction carries (a header): unique per transaction.
    pub tag: String,
    pub topic: String,
    /// Partition → the first and last offset the transaction wrote there.
    pub partitions: BTreeMap<i32, (i64, i64)>,
}

/// A step's state by key group: group → serialized entries.
pub type GroupedState = BTreeMap<u32, Vec<u8>>;

/// The last file of a checkpoint, written after everything it refers to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub epoch: u64,
    pub key_groups: u32,
    /// source name → what it reads (a Kafka topic): a checkpoint only restores the same input.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// source name → partition → position.
    pub sources: BTreeMap<String, BTreeMap<i32, PartitionCheckpoint>>,
    /// stateful step (window or model) name → state file (relative to the checkpoint folder).
    #[serde(alias = "windows")]
    pub state: BTreeMap<String, String>,
    /// Files to publish.
    pub pending: Vec<PendingFile>,
    /// Transactions not known to be committed yet.
    #[serde(default)]
    pub transactions: Vec<PendingTransaction>,
}

pub fn folder(epoch: u64) -> String {
    format!("chk-{epoch:010}")
}

pub fn epoch_of(name: &str) -> Option<u64> {
    name.split('/').next()?.strip_prefix("chk-")?.parse().ok()
}

/// The last complete checkpoint under `storage` and its steps' state, if there is one.
pub fn load_latest(
    storage: &Storage,
) -> Result<Option<(Manifest, BTreeMap<String, GroupedState>)>> {
    let latest = storage
        .list()?
        .into_iter()
        .filter(|n| n.ends_with(&format!("/{MANIFEST}")))
        .filter_map(|n| Some((epoch_of(&n)?, n)))
        .max();
    let Some((_, name)) = latest else {
        return Ok(None);
    };
    let manifest: Manifest = serde_json::from_slice(&storage.get(&name)?)
        .with_context(|| format!("reading checkpoint `{}/{name}`", storage.display))?;
    let dir = folder(manifest.epoch);
    let mut state = BTreeMap::new();
    for (step, file) in &manifest.state {
        let bytes = storage.get(&format!("{dir}/{file}"))?;
        let groups: GroupedState = bincode::deserialize(&bytes)
            .with_context(|| format!("reading step state `{dir}/{file}`"))?;
        state.insert(step.clone(), groups);
    }
    Ok(Some((manifest, state)))
}

/// Renames pending files into place; a file already published is skipped (idempotent).
pub fn publish(files: &[PendingFile], rt: &tokio::runtime::Handle) -> Result<()> {
    let mut opened: BTreeMap<&str, Storage> = BTreeMap::new();
    for f in files {
        if !opened.contains_key(f.sink.as_str()) {
            opened.insert(&f.sink, Storage::open(&f.sink, rt.clone())?);
        }
        opened[f.sink.as_str()].promote(&f.pending, &f.file)?;
    }
    Ok(())
}

/// Deletes every pending file under `sinks` that `keep` does not list: they were written under
/// a checkpoint that never completed, and the restored run writes their rows again.
pub fn discard_uncommitted(
    sinks: &[String],
    keep: &[PendingFile],
    rt: &tokio::runtime::Handle,
) -> Result<usize> {
    let mut deleted = 0;
    for path in sinks {
        let sink = Storage::open(path, rt.clone())?;
        for name in sink.list_under("_pending")? {
            if !keep.iter().any(|f| &f.sink == path && f.pending == name) {
                sink.delete(&name)?;
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// Deletes the checkpoints older than `keep_from`.
pub fn delete_older(storage: &Storage, keep_from: u64) -> Result<()> {
    for name in storage.list()? {
        if epoch_of(&name).is_some_and(|e| e < keep_from) {
            storage.delete(&name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The commit point is fenced: a manifest somebody else wrote is never overwritten (local
    /// files and memory; GCS speaks `x-goog-if-generation-match: 0` for the same put mode).
    #[test]
    fn a_manifest_is_written_once_and_never_overwritten() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        for url in [
            dir.path().display().to_string(),
            "memory://fence/chk".into(),
        ] {
            let chk = Storage::open(&url, rt.handle().clone()).unwrap();
            let name = format!("{}/{MANIFEST}", folder(7));
            assert!(chk.put_new(&name, b"leader A".to_vec()).unwrap(), "{url}");
            // A retry of the same write finds its own bytes: fine.
            assert!(chk.put_new(&name, b"leader A".to_vec()).unwrap(), "{url}");
            // A stale leader's write is refused and changes nothing.
            assert!(!chk.put_new(&name, b"leader B".to_vec()).unwrap(), "{url}");
            assert_eq!(&chk.get(&name).unwrap()[..], b"leader A");
        }
    }

    #[test]
    fn the_latest_complete_checkpoint_wins_and_publishing_is_idempotent() {
        let rt = rt();
        let h = rt.handle().clone();
        {
            let chk = Storage::open("memory://chk-test/chk", h.clone()).unwrap();
            let sink = Storage::open("memory://chk-test/out", h.clone()).unwrap();
            let file = |n: &str| PendingFile {
                sink: "memory://chk-test/out".into(),
                pending: format!("_pending/{n}.inprogress"),
                file: n.into(),
            };
            for (epoch, complete) in [(1, true), (2, true), (3, false)] {
                let m = Manifest {
                    epoch,
                    key_groups: 4,
                    pending: vec![file(&format!("f{epoch}"))],
                    ..Manifest::default()
                };
                chk.put(&format!("{}/state-w.bin", folder(epoch)), b"x".to_vec())
                    .unwrap();
                if complete {
                    chk.put(
                        &format!("{}/{MANIFEST}", folder(epoch)),
                        serde_json::to_vec(&m).unwrap(),
                    )
                    .unwrap();
                }
                sink.put(&file(&format!("f{epoch}")).pending, b"rows".to_vec())
                    .unwrap();
            }
            let (m, _) = load_latest(&chk).unwrap().unwrap();
            assert_eq!(m.epoch, 2, "epoch 3 has no manifest");
            publish(&m.pending, &h).unwrap();
            publish(&m.pending, &h).unwrap(); // a retry after a crash
            assert_eq!(sink.get("f2").unwrap().as_ref(), b"rows");
            let deleted = discard_uncommitted(&["memory://chk-test/out".into()], &m.pending, &h);
            assert_eq!(
                deleted.unwrap(),
                2,
                "f1 and f3 were never committed by epoch 2"
            );
            assert_eq!(sink.list().unwrap(), vec!["f2".to_string()]);
            delete_older(&chk, 2).unwrap();
            assert!(chk.list().unwrap().iter().all(|n| epoch_of(n) >= Some(2)));
        }
    }
}

/// What the instances of a process handed over for a checkpoint (in a cluster, each follower
/// process sends its own to the leader).
#[derive(Default, Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Collected {
    pub(super) sources: BTreeMap<String, BTreeMap<i32, PartitionCheckpoint>>,
    /// Stateful steps (windows, models) by name.
    pub(super) state: BTreeMap<String, GroupedState>,
    pub(super) pending: Vec<PendingFile>,
    /// Transactions flushed under the checkpoint, committed once it completes.
    pub(super) transactions: Vec<PendingTransaction>,
    /// The tags of transactions committed since the last checkpoint.
    pub(super) committed: Vec<String>,
    /// Values decided during the checkpoint, by name, that every worker adopts once it
    /// completes ([`super::coordinator::Decider`]). Not in the manifest.
    pub(super) decisions: BTreeMap<String, Vec<u8>>,
}
