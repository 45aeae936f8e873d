//! What flows through the dataflow: trades on the hot path (a fixed struct, symbol inline, no
//! allocation) and rows with a plan-time schema for everything downstream of a window.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// One validated trade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    pub symbol: CompactString,
    pub price: f64,
    pub volume: f64,
    /// Event time, ms since the Unix epoch (UTC).
    pub ts: i64,
    /// Arrival order within its source: `(line << 20) | index in frame`. Breaks event-time ties
    /// for `first`/`last` and orders every aggregation, so results never depend on scheduling.
    pub seq: u64,
    /// The source watermark at the moment this trade was read. Lateness is decided against it.
    pub wm: i64,
    /// Trade condition codes, comma-separated (`c` in the Finnhub frame).
    pub conditions: CompactString,
}

impl Trade {
    pub const SEQ_INDEX_BITS: u32 = 20;

    /// The 1-based input line this trade came from.
    pub fn line(&self) -> u64 {
        self.seq >> Self::SEQ_INDEX_BITS
    }
}

/// Types of fields known at plan time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldType {
    Utf8,
    Float64,
    Int64,
    /// Milliseconds since the Unix epoch, UTC.
    Timestamp,
    /// A list of strings.
    Utf8List,
    Boolean,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Utf8 => "string",
            FieldType::Float64 => "double",
            FieldType::Int64 => "int64",
            FieldType::Timestamp => "timestamp",
            FieldType::Utf8List => "list<string>",
            FieldType::Boolean => "boolean",
        }
    }
    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::Float64 | FieldType::Int64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub nullable: bool,
}

impl Field {
    pub fn new(name: &str, ty: FieldType, nullable: bool) -> Self {
        Field {
            name: name.to_string(),
            ty,
            nullable,
        }
    }
}

/// An ordered list of fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub fields: Vec<Field>,
}

impl Schema {
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
    pub fn names(&self) -> impl Iterator<Item = &str> + Clone {
        self.fields.iter().map(|f| f.name.as_str())
    }

    /// The schema of trades as sources produce them.
    pub fn trades() -> Schema {
        Schema {
            fields: vec![
                Field::new("symbol", FieldType::Utf8, false),
                Field::new("price", FieldType::Float64, false),
                Field::new("volume", FieldType::Float64, false),
                Field::new("timestamp", FieldType::Timestamp, false),
                Field::new("conditions", FieldType::Utf8List, false),
            ],
        }
    }
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Str(CompactString),
    F64(f64),
    I64(i64),
    Ts(i64),
    StrList(Vec<CompactString>),
    Bool(bool),
}

/// A row, laid out as its schema.
pub type Row = Vec<Value>;

/// Column `c` of a trade as a row of [`Schema::trades`] (`trade_row(t)[c]` without the row).
pub fn trade_field(t: &Trade, c: usize) -> Value {
    match c {
        0 => Value::Str(t.symbol.clone()),
        1 => Value::F64(t.price),
        2 => Value::F64(t.volume),
        3 => Value::Ts(t.ts),
        _ => trade_row(t).swap_remove(c),
    }
}

/// A trade as a row of [`Schema::trades`].
pub fn trade_row(t: &Trade) -> Row {
    trade_row_with_room(t, 0)
}

/// [`trade_row`] with capacity for `extra` more columns (a join's added ones), so that adding
/// them does not move the row.
pub fn trade_row_with_room(t: &Trade, extra: usize) -> Row {
    let conditions = if t.conditions.is_empty() {
        Vec::new()
    } else {
        t.conditions.split(',').map(CompactString::from).collect()
    };
    let mut row = Vec::with_capacity(5 + extra);
    row.extend([
        Value::Str(t.symbol.clone()),
        Value::F64(t.price),
        Value::F64(t.volume),
        Value::Ts(t.ts),
        Value::StrList(conditions),
    ]);
    row
}

/// Formats ms since the epoch as RFC 3339 UTC (`2026-11-27T10:00:00.123Z`).
pub fn format_ts(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// `YYYY-MM-DD` of ms since the epoch, UTC.
pub fn format_date(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// (year, month, day) → days since 1970-01-01, the inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A trade as the compact, key-sorted JSON object Finnhub sends (for dead letters).
pub fn trade_json(t: &Trade) -> String {
    let mut buf = Vec::with_capacity(96);
    write_trade_json(t, &mut buf);
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// Appends [`trade_json`] to `buf` without building an intermediate JSON value (the Kafka sink
/// calls it once per record with a reused buffer).
pub fn write_trade_json(t: &Trade, buf: &mut Vec<u8>) {
    let w = |buf: &mut Vec<u8>, v: &dyn erased::Json| v.write(buf);
    buf.extend_from_slice(b"{\"c\":[");
    if !t.conditions.is_empty() {
        for (i, code) in t.conditions.split(',').enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            w(buf, &code);
        }
    }
    buf.extend_from_slice(b"],\"p\":");
    w(buf, &t.price);
    buf.extend_from_slice(b",\"s\":");
    w(buf, &t.symbol.as_str());
    buf.extend_from_slice(b",\"t\":");
    w(buf, &t.ts);
    buf.extend_from_slice(b",\"v\":");
    w(buf, &t.volume);
    buf.push(b'}');
}

mod erased {
    /// A scalar serde_json writes (escaping strings, formatting floats as it always does).
    pub trait Json {
        fn write(&self, buf: &mut Vec<u8>);
    }
    impl<T: serde::Serialize> Json for T {
        fn write(&self, buf: &mut Vec<u8>) {
            serde_json::to_writer(buf, self).expect("writing JSON to a Vec cannot fail");
        }
    }
}

/// Whether `name` can name a column a spec writes (a derived column, a table's column): ASCII
/// letters, digits and `_`, not starting with a digit, 1 to 128 characters.
pub fn valid_column_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(1_700_000_000_123), "2023-11-14");
        assert_eq!(format_ts(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_date(951_782_400_000), "2000-02-29");
        assert_eq!(format_date(-1), "1969-12-31");
    }

    #[test]
    fn a_trade_field_is_the_column_of_its_row() {
        let t = Trade {
            symbol: "AAPL".into(),
            price: 189.5,
            volume: 100.0,
            ts: 1_700_000_000_123,
            seq: 7,
            wm: 0,
            conditions: "1,12".into(),
        };
        let row = trade_row(&t);
        assert_eq!(row.len(), Schema::trades().fields.len());
        for (c, v) in row.iter().enumerate() {
            assert_eq!(&trade_field(&t, c), v, "column {c}");
        }
    }
}
