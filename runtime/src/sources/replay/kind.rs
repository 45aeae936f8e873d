//! The replay source behind the source contract.

use std::sync::Arc;

use anyhow::Context;
use timely::dataflow::{Scope, StreamVec};

use super::config::ReplayConfig;
use super::{BlockParsed, ReplayShared, replay_stream};
use crate::base::record::Trade;
use crate::sources::{OpenCx, SourceBuildCx, SourceConfig, SourceOp};
use crate::base::kinds::Checks;

impl SourceConfig for ReplayConfig {
    fn check(&self, cx: &mut Checks<'_>) {
        let path = &self.path;
        if path.trim().is_empty() {
            cx.error("path", "the replay file path is empty");
        } else if path.starts_with("gs://") {
            // Checked when the run opens it (credentials and network are run-time).
            if crate::base::storage::gcs::object_url(path).is_none() {
                cx.error(
                    "path",
                    format!("`{path}`: expected gs://BUCKET/PATH of an object"),
                );
            }
        } else if let Some(scheme) = path.split_once("://").map(|(s, _)| s)
            && scheme != "file"
        {
            cx.error(
                "path",
                format!(
                    "unsupported scheme `{scheme}://` (a replay reads a local path, file:// or gs://)"
                ),
            );
        } else if let Err(e) = std::fs::metadata(path.strip_prefix("file://").unwrap_or(path)) {
            cx.error("path", format!("cannot open `{path}`: {e}"));
        }
        if !self.speed.is_finite() || self.speed < 0.0 {
            cx.error(
                "speed",
                format!(
                    "speed must be 0 (as fast as possible) or a positive factor, got {}",
                    self.speed
                ),
            );
        }
        if self.max_out_of_orderness.as_millis() < 0 {
            cx.error("max_out_of_orderness", "must not be negative");
        }
    }
    fn describe(&self) -> String {
        format!("replay, out-of-orderness {}", self.max_out_of_orderness)
    }
    fn live(&self) -> bool {
        false
    }
    fn max_out_of_orderness_ms(&self) -> i64 {
        self.max_out_of_orderness.as_millis()
    }
    fn max_future_ms(&self) -> i64 {
        self.max_future.as_millis()
    }
    fn position_of(&self, seq: u64) -> u64 {
        crate::sources::line_of(seq)
    }
    fn rewinds(&self) -> Option<String> {
        None
    }
    fn local_fields(&self) -> &'static [&'static str] {
        // Every process checks that it reads the same bytes (block carries name them).
        &["path"]
    }
    fn open(&self, name: &str, cx: &OpenCx<'_>) -> anyhow::Result<Arc<dyn SourceOp>> {
        let shared = ReplayShared::open(
            &self.path,
            cx.block_size.unwrap_or(super::BLOCK_SIZE),
            cx.rt,
        )
            .with_context(|| format!("source `{name}`: cannot open `{}`", self.path))?;
        Ok(Arc::new(Replay {
            shared: Arc::new(shared),
            config: self.clone(),
        }))
    }
}

/// An open replay file.
struct Replay {
    shared: Arc<ReplayShared>,
    config: ReplayConfig,
}

impl SourceOp for Replay {
    fn build<'s>(&self, scope: Scope<'s, u64>, cx: &SourceBuildCx<'_>) -> StreamVec<'s, u64, Trade> {
        replay_stream(scope, cx, Arc::clone(&self.shared), &self.config)
    }
}

impl crate::worker::context::OnControl for Replay {
    fn on_control(&self, body: &[u8]) -> anyhow::Result<()> {
        let b: BlockParsed =
            bincode::deserialize(body).context("a replay block message from another process")?;
        self.shared
            .set_block(b.block as usize, b.max_ts, b.lines, b.file_len, &b.version)
    }
}
