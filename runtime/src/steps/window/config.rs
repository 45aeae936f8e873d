use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

pub use crate::base::calendar::SessionKind;
use crate::base::units::Duration;

/// Event-time windows per key: records are grouped by `key`, assigned to windows by their event
/// time, and each window emits one row of aggregates once the watermark passes its end. The
/// input is trades (a source, or a filter of one) or rows of another step: 5-minute bars from
/// 1-minute bars read `window_start` of the 1-minute bars.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowStepConfig {
    /// Name of the source (or step) whose records this step reads.
    pub input: String,
    /// Field to group by (a string column). Records are exchanged across workers by this key.
    #[serde(default = "default_key")]
    pub key: String,
    /// The event-time column of the input (a timestamp). Trades: `timestamp`. Rows of a window:
    /// `window_start` (the default; a tumbling or hopping window's rows) or `window_end`. Rows
    /// made from trades: their time column.
    #[serde(default)]
    pub time: Option<String>,
    /// The shape of the windows.
    pub window: WindowSpec,
    /// Market time for tumbling windows: local time in a time zone, and optionally an exchange
    /// calendar's sessions. Without it windows are aligned to the Unix epoch (UTC).
    #[serde(default)]
    pub align: Option<AlignSpec>,
    /// How long after a window has fired late records are still accepted. Each late record
    /// then emits a corrected row for its window with `revision` incremented (the first emission
    /// has revision 0). With 0s (the default) late records are dropped, counted and dead-lettered.
    #[serde(default)]
    pub allowed_lateness: Duration,
    /// Output columns, in order: column name → aggregate. Bars:
    /// `open: {fn: first, field: price}`, `high: {fn: max, field: price}`, ...
    pub aggregates: IndexMap<String, AggregateSpec>,
    /// Which implementation maintains the windows: `timely` (the default, also what `auto`
    /// picks) or `differential` (differential-dataflow collections, for tumbling and hopping
    /// windows). Both give identical rows, revisions included; BENCHMARKS.md compares their speed.
    #[serde(default)]
    pub engine: WindowEngine,
    /// A live source (`finnhub`) starts mid-window, so the first window of each key covers only
    /// part of its time. `skip` (the default) never emits a window that started before the run
    /// did; `keep` emits those partial windows like any other. Replays and Kafka sources read
    /// recorded data and are not affected.
    #[serde(default)]
    pub partial_windows: PartialWindows,
    /// Gap filling (tumbling windows): a row for every window of every key seen so far, also
    /// when a window had no record. `previous` carries the key's last value of each field into
    /// `first`/`last`/`min`/`max`/`avg`/`vwap` (a bar's open, high, low and close are the last
    /// close) with `sum` and `count` 0 and `stddev` NULL; `null` gives NULLs and a `count` of 0.
    /// A boolean `filled` column marks the filled rows. In market time only windows in sessions
    /// are filled. (`fill: null` means NULL filling, not "no filling": leave `fill` out for none.)
    #[serde(default, deserialize_with = "fill_mode")]
    #[schemars(with = "Option<FillMode>")]
    pub fill: Option<FillMode>,
    /// How long after a key's last record its windows are still filled (the default, `1d`,
    /// bounds what a delisted or halted symbol produces).
    #[serde(default)]
    pub fill_for: Option<Duration>,
}

/// `fill: null` (YAML's null) is NULL filling, as written; a missing `fill` is none.
fn fill_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<FillMode>, D::Error> {
    Ok(Some(
        Option::<FillMode>::deserialize(d)?.unwrap_or(FillMode::Null),
    ))
}

/// What a filled window holds.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FillMode {
    /// The key's last values (a flat bar at the last close), volume and count 0.
    Previous,
    /// NULLs, count 0.
    Null,
}

/// Windows in market time: `{ timezone: America/New_York }` puts daily windows at local
/// midnight (23 or 25 hours long when the clocks change) and hours on local hours;
/// `{ calendar: XNYS }` keeps only the exchange's sessions: intraday windows start at the open and
/// the last ends at the close (early closes included), a `1d` window is one session, and records
/// outside every session are counted (`tickflow_step_records_skipped_total`) and left out.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlignSpec {
    /// An IANA time zone (`America/New_York`, `Europe/London`, `Asia/Tokyo`, `UTC`): the
    /// calendar's when a calendar is given.
    #[serde(default)]
    pub timezone: Option<String>,
    /// An exchange calendar: `XNYS` (NYSE), `XNAS` (Nasdaq), `24/7` (crypto: every local day),
    /// `24/5` (forex: Monday to Friday, each session from 17:00 New York time the day before),
    /// or the path of a calendar file (`.cal`, see the README).
    #[serde(default)]
    pub calendar: Option<String>,
    /// Which part of a trading day: `regular` (the default), `extended` (pre-market to
    /// after-hours) or `all` (the whole local day of each trading day). Needs a calendar.
    #[serde(default)]
    pub session: SessionKind,
}

/// What to do with windows that started before a live source did.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PartialWindows {
    /// Never emit them: every bar covers its whole window.
    #[default]
    Skip,
    /// Emit them (their first bar covers only the time since the start).
    Keep,
}

/// Implementation of a window step.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WindowEngine {
    /// The fastest engine for the window: today always `timely` (measured 4–5× faster than
    /// `differential` on revisable bars, see BENCHMARKS.md).
    #[default]
    Auto,
    /// A timely operator with per-key window state (any window kind).
    Timely,
    /// Differential dataflow collections: updates per window, `reduce` per window (tumbling and
    /// hopping windows).
    Differential,
}

pub fn default_key() -> String {
    "symbol".to_string()
}

/// Window shapes. Time windows are aligned to the Unix epoch (UTC) unless `align:` says
/// otherwise; `count`, `volume` and `notional` bars close on what they hold instead of on time.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowSpec {
    /// Fixed-size, non-overlapping windows: `[k·size, (k+1)·size)`.
    Tumbling {
        /// Length of each window, e.g. `1m`.
        size: Duration,
    },
    /// Fixed-size windows that start every `slide`; a record belongs to `size/slide` windows.
    Hopping {
        /// Length of each window, e.g. `5m`.
        size: Duration,
        /// Distance between window starts, e.g. `1m`.
        slide: Duration,
    },
    /// Per-key bursts of activity: a window closes after `gap` without records.
    Session {
        /// Inactivity that ends a session, e.g. `30s`.
        gap: Duration,
    },
    /// Tick bars: a bar of every `size` records of a key, in event-time order.
    Count {
        /// Records per bar, e.g. `100`.
        size: u64,
    },
    /// Volume bars: records of a key in event-time order until the sum of `field` reaches
    /// `size`; the record that reaches it closes the bar (it is not split).
    Volume {
        /// Volume per bar, e.g. `10000`.
        size: f64,
        /// The number column summed: `volume` (the default).
        #[serde(default)]
        field: Option<String>,
    },
    /// Dollar bars: like volume bars over `price · volume` (trades) or `field` (rows).
    Notional {
        /// Notional per bar, e.g. `1e6`.
        size: f64,
        /// Rows: the notional column summed (e.g. a derived `price * volume`). Trades: none.
        #[serde(default)]
        field: Option<String>,
    },
}

impl WindowSpec {
    /// Bars that close on what they hold (count, volume, notional) rather than on time.
    pub fn sampled(&self) -> bool {
        matches!(
            self,
            WindowSpec::Count { .. } | WindowSpec::Volume { .. } | WindowSpec::Notional { .. }
        )
    }
}

/// One output column computed over the records of a window.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    /// The aggregate function.
    #[serde(rename = "fn")]
    pub func: AggregateFn,
    /// Numeric input field: `price` or `volume` of trades, any number column of rows (NULLs are
    /// skipped, as in SQL). Not used by `count` and `vwap`.
    #[serde(default)]
    pub field: Option<String>,
    /// `vwap` over rows: the price column (e.g. the `vwap` of 1-minute bars) ...
    #[serde(default)]
    pub price: Option<String>,
    /// ... weighed by this volume column: `sum(price·volume)/sum(volume)`.
    #[serde(default)]
    pub volume: Option<String>,
}

/// Aggregate functions. `first`/`last` are by event time, ties broken by arrival order;
/// `stddev` is the sample standard deviation (null below 2 records); `vwap` is
/// `sum(price·volume)/sum(volume)` (null when the volume is 0; over rows, of the `price` and
/// `volume` columns it names).
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFn {
    Count,
    Sum,
    Min,
    Max,
    First,
    Last,
    Avg,
    Stddev,
    Vwap,
}

impl AggregateFn {
    pub const NAMES: &'static [&'static str] = &[
        "count", "sum", "min", "max", "first", "last", "avg", "stddev", "vwap",
    ];

    /// Whether the function reads a `field`.
    pub fn takes_field(self) -> bool {
        !matches!(self, AggregateFn::Count | AggregateFn::Vwap)
    }
}
