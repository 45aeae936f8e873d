use schemars::JsonSchema;
use serde::Deserialize;

use crate::base::units::Duration;

/// Replays a file of recorded Finnhub websocket frames: one text frame per line (JSONL), exactly
/// as the live feed sends them (trade frames, pings, error frames). Bounded: when the file ends,
/// the final watermark flushes every window and the run finishes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// Path of the JSONL file to replay, e.g. `${TRADES_FILE}`.
    pub path: String,
    /// Pacing by event time: 0 (the default) replays as fast as possible, 1.0 in real time,
    /// 10.0 ten times faster than real time.
    #[serde(default)]
    pub speed: f64,
    /// How far behind the newest event time the watermark trails:
    /// `watermark = max event time read − max_out_of_orderness`. A trade whose window has
    /// already ended at the watermark when it is read is late.
    #[serde(default = "default_max_out_of_orderness")]
    pub max_out_of_orderness: Duration,
    /// A trade stamped more than this ahead of the wall clock is rejected with reason
    /// `future_timestamp` instead of moving the watermark (one bad clock, e.g. a year-9999
    /// trade, would otherwise make every later trade late). `0s` turns the check off (synthetic
    /// data dated in the future).
    #[serde(default = "crate::sources::default_max_future")]
    pub max_future: Duration,
}

pub const fn default_max_out_of_orderness() -> Duration {
    Duration::secs(0)
}
