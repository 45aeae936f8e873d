//! Checkpoints and exactly-once publication.
//!
//! A checkpoint is taken at a quiescent cut instead of with in-band barriers, which suits a
//! single-process timely job whose operators can all see one coordinator:
//!
//! 1. the [`Coordinator`] announces epoch `e`; every source instance records its partitions' next
//!    offsets and watermark state and stops reading;
//! 2. once every record the sources emitted has reached the window operators (emitted and
//!    received counts agree), each window instance serializes its state by key group and freezes;
//!    then each model (plugin) step, in declaration order, once its input is drained: the
//!    plugin's keyed state (`snapshot`) and the rows it has not scored yet, by key group;
//! 3. once every row the windows and models emitted has reached the sinks, each Parquet sink closes its open
//!    files into `_pending/`; a Kafka sink flushes its producer (exactly-once: its open
//!    transaction, listed in the manifest and committed by the sink once the checkpoint is);
//! 4. the coordinator writes the state files and then the manifest — the manifest is the
//!    commit point — publishes the pending files (renames; idempotent on retry) and lets
//!    everything resume.
//!
//! On start the last complete manifest is loaded: its pending files are published if they are
//! not yet, every other pending file is deleted, sources seek to its offsets and window and model
//! instances load the key groups they own (a plugin gets its keys through `restore`) (`group mod workers`, the same rule the exchange routes keys by),
//! so a checkpoint taken with N workers restores on M. The dataflow is deterministic for a given
//! order of records per partition, so the output after any crash equals the uninterrupted run.

pub mod config;
pub mod coordinator;
mod manifest;
pub mod output;

pub use config::CheckpointSpec;
pub use coordinator::{Coordinator, Participant, Role};
pub use manifest::{
    Collected, GroupedState, Manifest, PartitionCheckpoint, PendingFile, PendingTransaction,
};

/// How often a paused or frozen operator looks whether the checkpoint completed.
pub const FROZEN_POLL: std::time::Duration = std::time::Duration::from_millis(1);
/// How often an operator with nothing to do looks whether a checkpoint began.
pub const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(5);
