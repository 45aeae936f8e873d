//! The exactly-once protocol of outputs, one for all: Parquet sinks, the Kafka sink and the dead
//! letters. An output writes as records come; at a checkpoint's cut — once everything upstream
//! has stopped and reached it — it *precommits*: what it wrote becomes durable but not visible
//! (files closed and kept pending; Kafka records delivered), and the checkpoint's manifest lists
//! it; the coordinator *publishes* the pending files once the manifest is written. At the end of
//! its input, what is left joins the final checkpoint. Without checkpoints an output publishes
//! at the end.

use std::time::Duration;

use anyhow::Result;

use super::{Participant, PendingFile, PendingTransaction};

/// What an output made durable and not yet visible at a checkpoint's cut.
#[derive(Debug, Default)]
pub struct Precommit {
    /// Files the checkpoint publishes once it completes.
    pub files: Vec<PendingFile>,
    /// Transactions the output commits once the checkpoint completes.
    pub transactions: Vec<PendingTransaction>,
}

impl From<Vec<PendingFile>> for Precommit {
    fn from(files: Vec<PendingFile>) -> Self {
        Precommit {
            files,
            transactions: Vec::new(),
        }
    }
}

/// An output with two phases.
pub trait TwoPhase {
    /// Makes everything written so far durable and not yet visible; returns what the checkpoint
    /// publishes (nothing for an output that only needs its records delivered).
    fn precommit(&mut self) -> Result<Precommit>;
    /// The precommitted part belongs to checkpoint `epoch` (it becomes visible once that one
    /// completes).
    fn precommitted(&mut self, _epoch: u64) {}
    /// Without checkpoints: makes everything written so far visible.
    fn publish(&mut self) -> Result<()>;
}

/// One output instance's side of the protocol.
pub struct OutputProtocol {
    cp: Option<Participant>,
}

impl OutputProtocol {
    /// `cp`: the instance's participant when the run has checkpoints.
    pub fn new(cp: Option<Participant>) -> Self {
        OutputProtocol { cp }
    }

    pub fn checkpointed(&self) -> bool {
        self.cp.is_some()
    }

    /// The instance's participant, when the run has checkpoints.
    pub fn participant(&self) -> Option<&Participant> {
        self.cp.as_ref()
    }

    /// A checkpoint is in progress (everything upstream is stopping): look again soon.
    pub fn frozen(&self) -> bool {
        self.cp
            .as_ref()
            .is_some_and(|cp| !cp.finished() && cp.in_progress().is_some())
    }

    /// Counts records taken from the input (the drained-input test of a checkpoint's cut).
    pub fn received(&self, n: usize) {
        if let Some(cp) = &self.cp {
            cp.received(n);
        }
    }

    /// Once per activation while input may still come: precommits at a checkpoint's cut.
    /// Returns how soon to look again (`None`: no checkpoints, or this output is done).
    ///
    /// NB: after an error, the caller fails the run (which aborts the checkpoint) and then
    /// [`OutputProtocol::abandon`]s: the error is never acked as a precommit.
    pub fn turn(&mut self, out: &mut impl TwoPhase) -> Result<Option<Duration>> {
        let Some(cp) = self.cp.as_mut().filter(|cp| !cp.finished()) else {
            return Ok(None);
        };
        let Some(epoch) = cp.in_progress() else {
            return Ok(Some(super::IDLE_POLL));
        };
        if cp.due(epoch) {
            let part = cp.record_pending(out.precommit()?);
            out.precommitted(part);
            cp.ack(epoch);
        }
        Ok(Some(super::FROZEN_POLL))
    }

    /// The input ended: with checkpoints, what is left joins the final one; without, it is
    /// published.
    pub fn end(&mut self, out: &mut impl TwoPhase) -> Result<()> {
        match self.cp.as_mut() {
            Some(cp) => {
                let pre = out.precommit()?;
                let part = cp.record_pending(pre);
                out.precommitted(part);
                cp.finish();
                Ok(())
            }
            None => out.publish(),
        }
    }

    /// The output failed (and the run with it): it holds no checkpoint back.
    pub fn abandon(&mut self) {
        if let Some(cp) = self.cp.as_mut() {
            cp.finish();
        }
    }
}
