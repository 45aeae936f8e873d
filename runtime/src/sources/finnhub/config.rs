use schemars::JsonSchema;
use serde::Deserialize;

use crate::base::units::Duration;

/// The live Finnhub websocket trade feed. One connection (on one worker); trades are exchanged by
/// symbol to all workers. The token is read from the environment variable named by `token_env`
/// and never printed; without it (unset or empty) an in-process simulator serves the feed over a
/// real loopback websocket, unless `simulator.when` says otherwise.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinnhubConfig {
    /// Websocket URL of the feed.
    #[serde(default = "default_url")]
    pub url: String,
    /// Name of the environment variable holding the API token (the token itself never goes in
    /// a spec).
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// Symbols to subscribe to, e.g. `AAPL`, `BINANCE:BTCUSDT`, `OANDA:EUR_USD`.
    pub symbols: Vec<String>,
    /// Most symbols one connection may subscribe to (Finnhub's limit is 50).
    #[serde(default = "default_max_symbols")]
    pub max_symbols: usize,
    /// How far behind the newest event time the watermark trails.
    #[serde(default = "default_max_out_of_orderness")]
    pub max_out_of_orderness: Duration,
    /// A trade stamped more than this ahead of the wall clock is rejected with reason
    /// `future_timestamp` instead of moving the watermark (one bad clock would otherwise make
    /// every later trade late). `0s` turns the check off.
    #[serde(default = "crate::sources::default_max_future")]
    pub max_future: Duration,
    /// Reconnect when nothing (not even a ping) arrives for this long.
    #[serde(default = "default_silence_timeout")]
    pub silence_timeout: Duration,
    /// When no trade has arrived for this long (markets closed), the watermark follows the wall
    /// clock (minus this and `max_out_of_orderness`), so windows still close.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// A subscribed symbol without a trade for this long counts as stale
    /// (`tickflow_stale_symbols`): a delisted symbol, a typo, or a feed problem.
    #[serde(default = "default_stale_after")]
    pub stale_after: Duration,
    /// Reconnect backoff: starts here, doubles (with jitter) up to `backoff_max`, and resets
    /// after a connection has been healthy for a minute.
    #[serde(default = "default_backoff_min")]
    pub backoff_min: Duration,
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Duration,
    /// Wait after an HTTP 429 (too many connections) before trying again.
    #[serde(default = "default_rate_limited_backoff")]
    pub rate_limited_backoff: Duration,
    /// Keep every raw frame in rolling JSONL files, replayable with a `replay` source.
    #[serde(default)]
    pub archive: Option<ArchiveConfig>,
    /// The built-in simulator used when there is no token.
    #[serde(default)]
    pub simulator: SimulatorConfig,
}

/// Rolling JSONL files of raw frames (one frame per line).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Local folder for the archive files.
    pub path: String,
    /// Start a new file after this many bytes.
    #[serde(default = "default_archive_bytes")]
    pub max_bytes: crate::base::units::ByteSize,
    /// Start a new file after this long.
    #[serde(default = "default_archive_age")]
    pub max_age: Duration,
}

/// The in-process Finnhub simulator.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// `auto`: simulate when the token variable is unset or empty; `always`; `never` (a missing
    /// token is then an error).
    #[serde(default)]
    pub when: SimulateWhen,
    /// Trades per second.
    #[serde(default = "default_sim_rate")]
    pub rate: f64,
    /// Random seed of the simulated market.
    #[serde(default = "default_sim_seed")]
    pub seed: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            when: SimulateWhen::Auto,
            rate: default_sim_rate(),
            seed: default_sim_seed(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SimulateWhen {
    #[default]
    Auto,
    Always,
    Never,
}

pub fn default_url() -> String {
    "wss://ws.finnhub.io".to_string()
}
pub fn default_token_env() -> String {
    "FINNHUB_TOKEN".to_string()
}
pub const fn default_max_symbols() -> usize {
    50
}
pub const fn default_max_out_of_orderness() -> Duration {
    Duration::secs(2)
}
pub const fn default_silence_timeout() -> Duration {
    Duration::secs(90)
}
pub const fn default_idle_timeout() -> Duration {
    Duration::secs(30)
}
pub const fn default_stale_after() -> Duration {
    Duration::secs(300)
}
pub const fn default_backoff_min() -> Duration {
    Duration::secs(1)
}
pub const fn default_backoff_max() -> Duration {
    Duration::secs(60)
}
pub const fn default_rate_limited_backoff() -> Duration {
    Duration::secs(60)
}
pub const fn default_archive_bytes() -> crate::base::units::ByteSize {
    crate::base::units::ByteSize(64 << 20)
}
pub const fn default_archive_age() -> Duration {
    Duration::secs(3600)
}
pub const fn default_sim_rate() -> f64 {
    200.0
}
pub const fn default_sim_seed() -> u64 {
    42
}
