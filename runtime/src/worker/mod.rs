//! What the operators of every kind build with, below the kinds: the run context every worker
//! of a run shares ([`context`]: sources' facts, metrics, the stop flag, checkpoints, the
//! cluster's control outbox), the stash of records waiting for their time ([`stash`]), the
//! allocator's tuning for a worker's buffers ([`malloc`]) and exchanges in larger vectors
//! ([`batches`]).

pub mod batches;
pub mod context;
pub mod malloc;
pub mod stash;
