//! What a window reads: trades (the hot path), or rows of another step reduced to what the
//! window needs (a key, an event time, one number per aggregate).

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::base::record::{Row, Trade, Value, trade_json};
use crate::base::reject::RejectReason;
use crate::steps::window::node::TradeField;

/// A record a window can aggregate.
pub trait WindowRecord:
    Clone + Send + Serialize + for<'de> Deserialize<'de> + timely::ExchangeData + 'static
{
    fn key(&self) -> &str;
    fn key_owned(&self) -> CompactString;
    /// Event time (ms).
    fn ts(&self) -> i64;
    /// Breaks event-time ties (`first`/`last`) deterministically.
    fn seq(&self) -> u64;
    /// The watermark lateness is judged against.
    fn wm(&self) -> i64;
    fn set_wm(&mut self, wm: i64);
    /// The number an aggregate reads (`None`: SQL NULL, skipped by the aggregate).
    fn value(&self, field: TradeField) -> Option<f64>;
    /// `price · volume` and `volume`, for `vwap` (trades only).
    fn notional(&self) -> (f64, f64);
    /// How records of one timestamp are ordered before they are applied, so that results never
    /// depend on how batches interleaved.
    type Order: Ord;
    fn order(&self) -> Self::Order;
    /// The record as JSON, for a dead letter.
    fn raw(&self) -> String;
    /// Why the record cannot be windowed (a row whose key or time is NULL).
    fn problem(&self) -> Option<(RejectReason, &'static str)> {
        None
    }
    /// The record as a row of another step (a window over revised rows keeps them).
    fn as_row(&self) -> Option<&WindowRow> {
        None
    }
}

impl WindowRecord for Trade {
    fn key(&self) -> &str {
        &self.symbol
    }
    fn key_owned(&self) -> CompactString {
        self.symbol.clone()
    }
    fn ts(&self) -> i64 {
        self.ts
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn wm(&self) -> i64 {
        self.wm
    }
    fn set_wm(&mut self, wm: i64) {
        self.wm = wm;
    }
    #[inline]
    fn value(&self, field: TradeField) -> Option<f64> {
        Some(match field {
            TradeField::Price => self.price,
            TradeField::Volume => self.volume,
            TradeField::Column(_) => unreachable!("trades are read by field"),
        })
    }
    fn notional(&self) -> (f64, f64) {
        (self.price * self.volume, self.volume)
    }
    type Order = u64;
    fn order(&self) -> u64 {
        // Arrival order (file order, or partition order).
        self.seq
    }
    fn raw(&self) -> String {
        trade_json(self)
    }
}

/// A row of another step as a window reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    pub key: CompactString,
    pub ts: i64,
    /// A hash of the row's content: ties of `first`/`last` are broken by it, the same in every
    /// run and for any worker count.
    pub seq: u64,
    pub wm: i64,
    /// The value of each [`TradeField::Column`] slot.
    pub values: Vec<Option<f64>>,
    /// The row's key or time was NULL: it is dead-lettered where it is applied (so that it is
    /// counted like any record the window received).
    pub null: Option<NullColumn>,
    /// `price · volume` and `volume` of a trade read as a row (for `vwap` of volume bars).
    #[serde(default)]
    pub notional: Option<(f64, f64)>,
    /// The row's revision (rows of a window with `allowed_lateness`; 0 otherwise).
    #[serde(default)]
    pub revision: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NullColumn {
    Key,
    Time,
}

impl WindowRow {
    /// The row's key column, time column and the columns of the value slots.
    pub fn from_row(row: &Row, key: usize, time: usize, slots: &[usize]) -> WindowRow {
        let mut null = None;
        let key = match &row[key] {
            Value::Str(s) => s.clone(),
            _ => {
                null = Some(NullColumn::Key);
                CompactString::default()
            }
        };
        let ts = match row[time] {
            Value::Ts(t) => t,
            _ => {
                null = null.or(Some(NullColumn::Time));
                0
            }
        };
        let values = slots
            .iter()
            .map(|&c| match row[c] {
                Value::F64(x) => Some(x),
                Value::I64(x) => Some(x as f64),
                _ => None,
            })
            .collect::<Vec<_>>();
        let mut h = crate::base::keys::key_hash(&key) ^ (ts as u64).rotate_left(17);
        for v in &values {
            let bits = v.map_or(0x7ff8_dead_beef, f64::to_bits);
            h = (h ^ bits).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
        }
        WindowRow {
            key,
            ts,
            seq: h,
            wm: i64::MIN,
            values,
            null,
            notional: None,
            revision: 0,
        }
    }
}

impl WindowRecord for WindowRow {
    fn key(&self) -> &str {
        &self.key
    }
    fn key_owned(&self) -> CompactString {
        self.key.clone()
    }
    fn ts(&self) -> i64 {
        self.ts
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn wm(&self) -> i64 {
        self.wm
    }
    fn set_wm(&mut self, wm: i64) {
        self.wm = wm;
    }
    #[inline]
    fn value(&self, field: TradeField) -> Option<f64> {
        match field {
            TradeField::Column(slot) => self.values[slot],
            _ => unreachable!("rows are read by column"),
        }
    }
    fn notional(&self) -> (f64, f64) {
        self.notional
            .expect("vwap reads trades only (refused at plan time for rows)")
    }
    type Order = (i64, u64);
    fn order(&self) -> (i64, u64) {
        (self.ts, self.seq)
    }
    fn as_row(&self) -> Option<&WindowRow> {
        Some(self)
    }
    fn problem(&self) -> Option<(RejectReason, &'static str)> {
        self.null.map(|n| match n {
            NullColumn::Key => (RejectReason::MissingField, "the key column is NULL"),
            NullColumn::Time => (RejectReason::InvalidTimestamp, "the time column is NULL"),
        })
    }
    fn raw(&self) -> String {
        let values: Vec<serde_json::Value> = self
            .values
            .iter()
            .map(|v| v.map_or(serde_json::Value::Null, |x| serde_json::json!(x)))
            .collect();
        serde_json::json!({
            "key": self.key.as_str(),
            "time": crate::base::record::format_ts(self.ts),
            "values": values,
        })
        .to_string()
    }
}
