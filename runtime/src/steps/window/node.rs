//! What a window step's planning makes of its config: the window's shape, its aggregates and
//! how it reads its input, for the operators.

use crate::base::record::Schema;
use super::config::AggregateFn;

/// The most hopping windows one record may belong to (`size / slide`): each costs state and a
/// row per window, so `size: 1d, slide: 1ms` (86 million) is refused at validation.
pub const MAX_WINDOWS_PER_RECORD: i64 = 10_000;

/// The number an aggregate reads: a trade's field, or a value slot of a row window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeField {
    Price,
    Volume,
    /// The slot of [`RowInput::slots`].
    Column(usize),
}

/// How a window reads rows (of another step) instead of trades.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowInput {
    /// The input columns of the key and the event time.
    pub key: usize,
    pub time: usize,
    /// The input column of each value slot ([`TradeField::Column`]).
    pub slots: Vec<usize>,
    /// `Some(lag)`: the rows were fired by a window, and every row whose time is below `T` has
    /// arrived once the frontier reaches `T + lag` (windows fire then; no row is late). `None`:
    /// rows are stamped like trades, each judged late by the watermark it was read at.
    pub lag: Option<i64>,
    /// The rows' `revision` column: a row replaces the earlier revision of the same input row.
    pub revision: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct AggregatePlan {
    pub name: String,
    pub func: AggregateFn,
    pub field: TradeField,
    /// `vwap` over rows: the volume `field` (the price) is weighed by.
    pub weight: Option<TradeField>,
}

/// Window shape in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling { size: i64 },
    Hopping { size: i64, slide: i64 },
    Session { gap: i64 },
}

#[derive(Debug, Clone)]
pub struct WindowNode {
    pub name: String,
    /// The source at the root of its input (its trades' positions, its time quantum).
    pub input: usize,
    pub kind: WindowKind,
    pub allowed_lateness_ms: i64,
    pub aggregates: Vec<AggregatePlan>,
    /// `key`, `window_start`, `window_end`, the aggregates, then `revision` when late records
    /// can revise a window.
    pub schema: Schema,
    /// Whether differential dataflow maintains the windows (else the timely operator).
    pub differential: bool,
    /// Windows that started before the run are not emitted (a live input, `partial_windows:
    /// skip`).
    pub skip_partial: bool,
    /// Rows instead of trades.
    pub rows: Option<RowInput>,
    /// Tumbling windows in market time (a time zone, a calendar's sessions).
    pub align: Option<std::sync::Arc<crate::base::calendar::Align>>,
    /// Gap filling: a row for every window of every key seen within `fill_for`.
    pub fill: Option<FillPlan>,
}

/// How a window step fills windows without records.
#[derive(Debug, Clone)]
pub struct FillPlan {
    pub mode: super::config::FillMode,
    /// Windows starting this long after a key's last window with records are not filled.
    pub for_ms: i64,
    /// `last` aggregates kept beside the visible ones (one per field that `previous` carries).
    pub carried: Vec<AggregatePlan>,
    /// For each visible aggregate, the carried value it takes in a filled row.
    pub carry_of: Vec<Option<usize>>,
}

