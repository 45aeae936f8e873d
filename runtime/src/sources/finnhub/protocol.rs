//! Finnhub websocket frames: parsing and per-trade validation.
//!
//! A frame is one JSON text message: `{"data":[{"c":["1"],"p":189.5,"s":"AAPL","t":1700000000123,
//! "v":100}],"type":"trade"}`, `{"type":"ping"}` or `{"msg":"...","type":"error"}`. Each trade is
//! validated on its own: a bad trade is rejected with a reason while the rest of its frame is kept.
//! A frame that is not valid JSON, or not shaped like a Finnhub message, is rejected whole.
//! Parsing borrows from the input; the only allocation per trade is none (symbols up to 24 bytes
//! are stored inline).

use std::borrow::Cow;
use std::fmt;

use compact_str::CompactString;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::base::reject::RejectReason;

/// A trade that passed validation, borrowing its symbol from the frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidTrade {
    pub symbol: CompactString,
    pub price: f64,
    pub volume: f64,
    pub ts: i64,
    pub conditions: CompactString,
}

/// A trade that failed validation: its index in the frame's `data` and why.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidTrade {
    pub index: usize,
    pub reason: RejectReason,
    pub detail: String,
}

/// What kind of message a (well-formed) frame was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameKind {
    /// A trade frame with this many trades (valid and invalid).
    Trades(usize),
    Ping,
    /// An error message from the server.
    Error(String),
    /// Any other message type (counted and ignored).
    Other(String),
}

/// A frame rejected whole.
#[derive(Debug, Clone, PartialEq)]
pub struct MalformedFrame {
    pub detail: String,
}

/// Largest accepted event time: 9999-12-31T23:59:59.999Z.
pub const MAX_TS: i64 = 253_402_300_799_999;

/// Longest accepted symbol, in bytes (Finnhub's longest are about 30: `BINANCE:1000SATSUSDT`).
/// Symbols name output folders and Kafka keys: they must stay short.
pub const MAX_SYMBOL_BYTES: usize = 64;

/// Largest accepted price and volume. No instrument trades near it, and it keeps every sum a
/// window computes finite (`price·volume` ≤ 1e30; 2^63 of those stay far below f64's 1.8e308).
pub const MAX_VALUE: f64 = 1e15;

/// The latest event time a source accepts now: the wall clock plus `max_future_ms`
/// (`i64::MAX` when `max_future_ms` is 0, i.e. off).
pub fn future_limit(max_future_ms: i64) -> i64 {
    if max_future_ms <= 0 {
        i64::MAX
    } else {
        crate::base::time::now_ms().saturating_add(max_future_ms)
    }
}

/// The dead-letter detail of a trade rejected as `future_timestamp`.
pub fn future_detail(ts: i64, limit: i64) -> String {
    format!(
        "`t` ({}) is more than `max_future` ahead of the wall clock (latest accepted: {})",
        crate::base::record::format_ts(ts),
        crate::base::record::format_ts(limit)
    )
}

/// Whether `s` is an acceptable symbol: 1 to [`MAX_SYMBOL_BYTES`] bytes, no control characters.
#[inline]
pub fn valid_symbol(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SYMBOL_BYTES
        && (s.is_ascii() && s.bytes().all(|b| b >= 0x20 && b != 0x7f)
            || !s.is_ascii() && !s.chars().any(char::is_control))
}

/// A number JSON can write but f64 cannot hold (`1e400`), as the general parser sees it: the
/// frame is parsed again with the number replaced by this marker string, so only the trade
/// that holds it is rejected.
const OUT_OF_RANGE: &str = "\u{0}number out of range";

fn out_of_range(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("number out of range")
}

/// `text` with every number f64 cannot hold replaced by the [`OUT_OF_RANGE`] marker string (at
/// most 64 of them; the parse that follows reports anything else that is wrong).
fn mark_huge_numbers(text: &str) -> String {
    let mut owned = text.to_string();
    for _ in 0..64 {
        // NB: a `Value`, not `IgnoredAny`: serde_json skips ignored numbers without parsing them.
        let err = match serde_json::from_str::<serde_json::Value>(&owned) {
            Err(e) if out_of_range(&e) => e,
            _ => break,
        };
        let bytes = owned.as_bytes();
        let at = (err.column().max(1) - 1).min(bytes.len());
        let is_num = |b: u8| b.is_ascii_digit() || matches!(b, b'e' | b'E' | b'.' | b'+' | b'-');
        let mut end = at;
        while end < bytes.len() && is_num(bytes[end]) {
            end += 1;
        }
        let mut start = end;
        while start > 0 && is_num(bytes[start - 1]) {
            start -= 1;
        }
        if start == end {
            break;
        }
        owned.replace_range(start..end, "\"\\u0000number out of range\"");
    }
    owned
}

/// Parses one frame. Valid trades go to `on_trade` (with their index in `data`), invalid ones to
/// `invalid`. Returns the frame kind, or why the whole frame was rejected.
pub fn parse_frame(
    text: &str,
    on_trade: impl FnMut(usize, ValidTrade),
    invalid: &mut Vec<InvalidTrade>,
) -> Result<FrameKind, MalformedFrame> {
    let malformed = |e: serde_json::Error| MalformedFrame {
        detail: format!("not a Finnhub frame: {e}"),
    };
    match serde_json::from_str::<RawFrame>(text) {
        Ok(frame) => frame_kind(frame, on_trade, invalid),
        Err(e) if out_of_range(&e) => {
            let marked = mark_huge_numbers(text);
            let frame = serde_json::from_str::<RawFrame>(&marked).map_err(malformed)?;
            frame_kind(frame, on_trade, invalid)
        }
        Err(e) => Err(malformed(e)),
    }
}

pub(crate) fn frame_kind(
    frame: RawFrame,
    mut on_trade: impl FnMut(usize, ValidTrade),
    invalid: &mut Vec<InvalidTrade>,
) -> Result<FrameKind, MalformedFrame> {
    let kind = match frame.kind.as_deref() {
        None => {
            return Err(MalformedFrame {
                detail: "frame has no `type`".into(),
            });
        }
        Some(k) => k,
    };
    match kind {
        "trade" => {
            let Some(data) = frame.data else {
                return Err(MalformedFrame {
                    detail: "trade frame has no `data` list".into(),
                });
            };
            let n = data.0.len();
            for (index, raw) in data.0.into_iter().enumerate() {
                match raw.validate() {
                    Ok(t) => on_trade(index, t),
                    Err((reason, detail)) => invalid.push(InvalidTrade {
                        index,
                        reason,
                        detail,
                    }),
                }
            }
            Ok(FrameKind::Trades(n))
        }
        "ping" => Ok(FrameKind::Ping),
        "error" => Ok(FrameKind::Error(
            frame.msg.map(Cow::into_owned).unwrap_or_default(),
        )),
        other => Ok(FrameKind::Other(other.to_string())),
    }
}

/// Parses and validates one trade object (a Kafka record value).
pub fn parse_trade(bytes: &[u8]) -> Result<ValidTrade, (RejectReason, String)> {
    if let Some(t) = super::fast::parse_trade_object(bytes) {
        return Ok(t);
    }
    let not_a_trade = |e: serde_json::Error| {
        (
            RejectReason::MalformedRecord,
            format!("not a trade object: {e}"),
        )
    };
    match serde_json::from_slice::<RawTrade>(bytes) {
        Ok(raw) => raw.validate(),
        Err(e) if out_of_range(&e) => {
            let text = std::str::from_utf8(bytes).map_err(|_| not_a_trade(e))?;
            let marked = mark_huge_numbers(text);
            serde_json::from_str::<RawTrade>(&marked)
                .map_err(not_a_trade)?
                .validate()
        }
        Err(e) => Err((
            RejectReason::MalformedRecord,
            format!("not a trade object: {e}"),
        )),
    }
}

/// The raw JSON of trade `index` of a frame (slow path, only for dead letters).
pub fn raw_trade(text: &str, index: usize) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("data")?.get(index).map(|t| t.to_string())
}

#[derive(serde::Deserialize)]
pub(crate) struct RawFrame<'a> {
    #[serde(default)]
    data: Option<RawData<'a>>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    msg: Option<Cow<'a, str>>,
}

struct RawData<'a>(Vec<RawTrade<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for RawData<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawData<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`data` to be a list of trades")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(RawData(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(8));
                while let Some(t) = seq.next_element()? {
                    v.push(t);
                }
                Ok(RawData(v))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A JSON value as loosely typed as validation needs.
#[derive(Debug, Default)]
enum Loose<'a> {
    #[default]
    Absent,
    Null,
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Other(&'static str),
}

impl Loose<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Loose::Absent => "nothing",
            Loose::Null => "null",
            Loose::Int(_) | Loose::Float(_) => "a number",
            Loose::Str(_) => "a string",
            Loose::Other(t) => t,
        }
    }
    fn number(&self) -> Option<f64> {
        match self {
            Loose::Int(i) => Some(*i as f64),
            Loose::Float(f) => Some(*f),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Loose<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Loose::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Loose::Other("a boolean"))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Loose::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v)
                    .map(Loose::Int)
                    .unwrap_or(Loose::Float(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Loose::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Other("a list"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Other("an object"))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `c`: absent, null, or a list of condition codes (strings; numbers are accepted as codes).
#[derive(Debug, Default)]
enum Conditions {
    #[default]
    None,
    Codes(CompactString),
    Invalid(&'static str),
}

impl<'de> Deserialize<'de> for Conditions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Conditions;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of condition codes")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Conditions::None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut codes = CompactString::default();
                let mut bad = None;
                while let Some(item) = seq.next_element::<Loose>()? {
                    let piece: Cow<str> = match &item {
                        Loose::Str(s) => Cow::Borrowed(s.as_ref()),
                        Loose::Int(i) => Cow::Owned(i.to_string()),
                        other => {
                            bad.get_or_insert(other.type_name());
                            continue;
                        }
                    };
                    if !codes.is_empty() {
                        codes.push(',');
                    }
                    codes.push_str(&piece);
                }
                Ok(match bad {
                    Some(t) => Conditions::Invalid(t),
                    None => Conditions::Codes(codes),
                })
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Conditions::Invalid("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Conditions::Invalid("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Conditions::Invalid("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Conditions::Invalid("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Conditions::Invalid("a string"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Conditions::Invalid("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

enum RawTrade<'a> {
    Object {
        c: Conditions,
        p: Loose<'a>,
        s: Loose<'a>,
        t: Loose<'a>,
        v: Loose<'a>,
    },
    NotObject(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawTrade<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawTrade<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a trade object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut c, mut p, mut s, mut t, mut v) = (
                    Conditions::None,
                    Loose::Absent,
                    Loose::Absent,
                    Loose::Absent,
                    Loose::Absent,
                );
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "c" => c = map.next_value()?,
                        "p" => p = map.next_value()?,
                        "s" => s = map.next_value()?,
                        "t" => t = map.next_value()?,
                        "v" => v = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(RawTrade::Object { c, p, s, t, v })
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(RawTrade::NotObject("null"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(RawTrade::NotObject("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(RawTrade::NotObject("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(RawTrade::NotObject("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(RawTrade::NotObject("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(RawTrade::NotObject("a string"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RawTrade::NotObject("a list"))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A trade's field as a typed record (an Avro record) holds it: validated exactly like the
/// same value in a JSON trade object.
#[derive(Debug, Clone, Copy)]
pub enum TypedField<'a> {
    Absent,
    Null,
    Int(i64),
    Float(f64),
    Str(&'a str),
    /// Another type, by name (`a list`, `a record`, ...).
    Other(&'static str),
}

impl<'a> From<TypedField<'a>> for Loose<'a> {
    fn from(f: TypedField<'a>) -> Self {
        match f {
            TypedField::Absent => Loose::Absent,
            TypedField::Null => Loose::Null,
            TypedField::Int(i) => Loose::Int(i),
            TypedField::Float(x) => Loose::Float(x),
            TypedField::Str(s) => Loose::Str(Cow::Borrowed(s)),
            TypedField::Other(t) => Loose::Other(t),
        }
    }
}

/// Validates a trade given as typed fields (`s`, `p`, `t`, `v`, and `c`: the condition codes,
/// `None` when absent or NULL), with the rules of a JSON trade object.
pub fn validate_typed(
    s: TypedField<'_>,
    p: TypedField<'_>,
    t: TypedField<'_>,
    v: TypedField<'_>,
    c: Option<&[TypedField<'_>]>,
) -> Result<ValidTrade, (RejectReason, String)> {
    let c = match c {
        None => Conditions::None,
        Some(codes) => {
            let mut joined = CompactString::default();
            let mut bad = None;
            for code in codes {
                let piece: Cow<str> = match code {
                    TypedField::Str(s) => Cow::Borrowed(*s),
                    TypedField::Int(i) => Cow::Owned(i.to_string()),
                    other => {
                        bad.get_or_insert(Loose::from(*other).type_name());
                        continue;
                    }
                };
                if !joined.is_empty() {
                    joined.push(',');
                }
                joined.push_str(&piece);
            }
            match bad {
                Some(t) => Conditions::Invalid(t),
                None => Conditions::Codes(joined),
            }
        }
    };
    RawTrade::Object {
        c,
        p: p.into(),
        s: s.into(),
        t: t.into(),
        v: v.into(),
    }
    .validate()
}

impl RawTrade<'_> {
    fn validate(self) -> Result<ValidTrade, (RejectReason, String)> {
        use RejectReason::*;
        let RawTrade::Object { c, p, s, t, v } = self else {
            let RawTrade::NotObject(what) = self else {
                unreachable!()
            };
            return Err((InvalidType, format!("trade must be an object, got {what}")));
        };
        let symbol = match s {
            Loose::Str(s) if s.as_ref() == OUT_OF_RANGE => {
                return Err((
                    InvalidType,
                    "`s` (symbol) must be a string, got a number out of range".into(),
                ));
            }
            Loose::Str(s) if valid_symbol(&s) => CompactString::from(s.as_ref()),
            Loose::Str(s) if s.is_empty() => {
                return Err((MissingField, "`s` (symbol) is empty".into()));
            }
            Loose::Str(s) => {
                return Err((
                    InvalidSymbol,
                    format!(
                        "`s` (symbol) must be at most {MAX_SYMBOL_BYTES} bytes without control characters, got `{}`",
                        crate::base::text::quote(&s, 32)
                    ),
                ));
            }
            Loose::Absent => return Err((MissingField, "trade has no `s` (symbol)".into())),
            other => {
                return Err((
                    InvalidType,
                    format!("`s` (symbol) must be a string, got {}", other.type_name()),
                ));
            }
        };
        let price = match (&p, p.number()) {
            (_, Some(x)) if x.is_finite() && x > 0.0 && x <= MAX_VALUE => x,
            (_, Some(x)) if x > MAX_VALUE => {
                return Err((
                    InvalidPrice,
                    format!("`p` (price) must be at most {MAX_VALUE:e}, got {x:e}"),
                ));
            }
            (_, Some(x)) => {
                return Err((
                    InvalidPrice,
                    format!("`p` (price) must be a positive finite number, got {x}"),
                ));
            }
            (Loose::Str(s), None) if s.as_ref() == OUT_OF_RANGE => {
                return Err((InvalidPrice, "`p` (price) is out of range".into()));
            }
            (Loose::Absent, None) => return Err((MissingField, "trade has no `p` (price)".into())),
            (other, None) => {
                return Err((
                    InvalidType,
                    format!("`p` (price) must be a number, got {}", other.type_name()),
                ));
            }
        };
        let volume = match (&v, v.number()) {
            (_, Some(x)) if x.is_finite() && (0.0..=MAX_VALUE).contains(&x) => x,
            (_, Some(x)) if x > MAX_VALUE => {
                return Err((
                    InvalidVolume,
                    format!("`v` (volume) must be at most {MAX_VALUE:e}, got {x:e}"),
                ));
            }
            (_, Some(x)) => {
                return Err((
                    InvalidVolume,
                    format!("`v` (volume) must be a finite number ≥ 0, got {x}"),
                ));
            }
            (Loose::Str(s), None) if s.as_ref() == OUT_OF_RANGE => {
                return Err((InvalidVolume, "`v` (volume) is out of range".into()));
            }
            (Loose::Absent, None) => {
                return Err((MissingField, "trade has no `v` (volume)".into()));
            }
            (other, None) => {
                return Err((
                    InvalidType,
                    format!("`v` (volume) must be a number, got {}", other.type_name()),
                ));
            }
        };
        let ts = match t {
            Loose::Int(ms) if (0..=MAX_TS).contains(&ms) => ms,
            Loose::Float(f) if f.fract() == 0.0 && (0.0..=MAX_TS as f64).contains(&f) => f as i64,
            Loose::Int(ms) => {
                return Err((
                    InvalidTimestamp,
                    format!("`t` (time, ms since epoch) is out of range: {ms}"),
                ));
            }
            Loose::Float(f) => {
                return Err((
                    InvalidTimestamp,
                    format!("`t` (time) must be whole milliseconds since the epoch, got {f}"),
                ));
            }
            Loose::Str(s) if s.as_ref() == OUT_OF_RANGE => {
                return Err((InvalidTimestamp, "`t` (time) is out of range".into()));
            }
            Loose::Absent => return Err((MissingField, "trade has no `t` (time)".into())),
            other => {
                return Err((
                    InvalidType,
                    format!("`t` (time) must be an integer, got {}", other.type_name()),
                ));
            }
        };
        let conditions = match c {
            Conditions::None => CompactString::default(),
            Conditions::Codes(codes) => codes,
            Conditions::Invalid(what) => {
                return Err((
                    InvalidType,
                    format!("`c` (conditions) must be a list of codes, got {what}"),
                ));
            }
        };
        Ok(ValidTrade {
            symbol,
            price,
            volume,
            ts,
            conditions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        text: &str,
    ) -> (
        Result<FrameKind, MalformedFrame>,
        Vec<(usize, ValidTrade)>,
        Vec<InvalidTrade>,
    ) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        let kind = parse_frame(text, |i, t| ok.push((i, t)), &mut bad);
        (kind, ok, bad)
    }

    #[test]
    fn parses_a_finnhub_trade_frame() {
        let (kind, ok, bad) = parse(
            r#"{"data":[{"c":["1","12"],"p":189.52,"s":"AAPL","t":1700000000123,"v":100},{"p":0.5,"s":"BINANCE:BTCUSDT","t":1700000000124,"v":0.00012}],"type":"trade"}"#,
        );
        assert_eq!(kind, Ok(FrameKind::Trades(2)));
        assert!(bad.is_empty());
        assert_eq!(ok[0].1.symbol, "AAPL");
        assert_eq!(ok[0].1.conditions, "1,12");
        assert_eq!(ok[0].1.ts, 1_700_000_000_123);
        assert_eq!(ok[1].1.volume, 0.00012);
        assert_eq!(ok[1].1.conditions, "");
    }

    #[test]
    fn conditions_may_be_absent_null_empty_or_codes() {
        for c in [r#""#, r#""c":null,"#, r#""c":[],"#, r#""c":["1"],"#] {
            let frame = format!(r#"{{"data":[{{{c}"p":1,"s":"X","t":1,"v":0}}],"type":"trade"}}"#);
            let (_, ok, bad) = parse(&frame);
            assert_eq!((ok.len(), bad.len()), (1, 0), "{frame}");
        }
    }

    #[test]
    fn rejects_bad_trades_one_by_one() {
        let (kind, ok, bad) = parse(
            r#"{"data":[{"p":-1,"s":"A","t":1,"v":1},{"p":1,"s":"B","t":2,"v":1},{"p":1,"t":3,"v":1},{"p":"1","s":"C","t":4,"v":1},{"p":1,"s":"D","t":5,"v":-2},{"p":1,"s":"E","t":6.5,"v":1},7,{"p":1,"s":"F","t":8,"v":1,"c":5}],"type":"trade"}"#,
        );
        assert_eq!(kind, Ok(FrameKind::Trades(8)));
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].0, 1);
        let reasons: Vec<_> = bad.iter().map(|b| (b.index, b.reason)).collect();
        assert_eq!(
            reasons,
            vec![
                (0, RejectReason::InvalidPrice),
                (2, RejectReason::MissingField),
                (3, RejectReason::InvalidType),
                (4, RejectReason::InvalidVolume),
                (5, RejectReason::InvalidTimestamp),
                (6, RejectReason::InvalidType),
                (7, RejectReason::InvalidType),
            ]
        );
        assert_eq!(
            bad[0].detail,
            "`p` (price) must be a positive finite number, got -1"
        );
    }

    #[test]
    fn classifies_other_frames() {
        assert_eq!(parse(r#"{"type":"ping"}"#).0, Ok(FrameKind::Ping));
        assert_eq!(
            parse(r#"{"msg":"Invalid symbol XYZ","type":"error"}"#).0,
            Ok(FrameKind::Error("Invalid symbol XYZ".into()))
        );
        assert_eq!(
            parse(r#"{"data":[],"type":"news"}"#).0,
            Ok(FrameKind::Other("news".into()))
        );
        assert!(parse(r#"{"data":[1,2"#).0.is_err());
        assert!(parse(r#"{"data":5,"type":"trade"}"#).0.is_err());
        assert!(parse(r#"{"type":"trade"}"#).0.is_err());
        assert!(parse(r#"[1]"#).0.is_err());
        assert!(parse(r#"{"data":[]}"#).0.is_err());
    }

    #[test]
    fn a_number_out_of_range_rejects_its_trade_only() {
        let (kind, ok, bad) = parse(
            r#"{"data":[{"p":1e400,"s":"A","t":1,"v":1},{"p":2,"s":"B","t":2,"v":1},{"p":1,"s":"C","t":3,"v":-1e999},{"p":1,"s":"D","t":1e30,"v":1}],"type":"trade"}"#,
        );
        assert_eq!(kind, Ok(FrameKind::Trades(4)));
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].1.symbol, "B");
        let reasons: Vec<_> = bad.iter().map(|b| (b.index, b.reason)).collect();
        assert_eq!(
            reasons,
            vec![
                (0, RejectReason::InvalidPrice),
                (2, RejectReason::InvalidVolume),
                (3, RejectReason::InvalidTimestamp),
            ]
        );
        assert_eq!(bad[0].detail, "`p` (price) is out of range");
        // A Kafka record (one trade object) too.
        let err = parse_trade(br#"{"p":1,"s":"A","t":1,"v":1e400}"#).unwrap_err();
        assert_eq!(err.0, RejectReason::InvalidVolume);
    }

    #[test]
    fn values_whose_sums_could_overflow_are_rejected() {
        let (_, ok, bad) = parse(
            r#"{"data":[{"p":1,"s":"A","t":1,"v":1e308},{"p":1e300,"s":"A","t":1,"v":1},{"p":1e15,"s":"A","t":1,"v":1e15}],"type":"trade"}"#,
        );
        assert_eq!(ok.len(), 1, "the largest accepted values pass");
        assert_eq!(bad[0].reason, RejectReason::InvalidVolume);
        assert_eq!(bad[1].reason, RejectReason::InvalidPrice);
        // Even 2^40 of the largest trades sum to a finite number.
        assert!((1e15f64 * 1e15 * (1u64 << 40) as f64).is_finite());
    }

    #[test]
    fn symbols_are_bounded_and_free_of_control_characters() {
        let long = "X".repeat(MAX_SYMBOL_BYTES + 1);
        let huge = "Y".repeat(1_000_000);
        let frame = format!(
            r#"{{"data":[{{"p":1,"s":"{long}","t":1,"v":1}},{{"p":1,"s":"A\u0000B","t":1,"v":1}},{{"p":1,"s":"{}","t":1,"v":1}},{{"p":1,"s":"{huge}","t":1,"v":1}},{{"p":1,"s":"BINANCE:BTCUSDT","t":1,"v":1}}],"type":"trade"}}"#,
            "Z".repeat(MAX_SYMBOL_BYTES)
        );
        let (_, ok, bad) = parse(&frame);
        let accepted: Vec<usize> = ok.iter().map(|(i, _)| *i).collect();
        assert_eq!(accepted, vec![2, 4]);
        assert!(
            bad.iter().all(|b| b.reason == RejectReason::InvalidSymbol),
            "{bad:?}"
        );
        assert!(
            bad.iter().all(|b| b.detail.len() < 200),
            "details are bounded"
        );
        // The fast path agrees: it never accepts what validation refuses.
        let mut fast = Vec::new();
        assert!(super::super::fast::parse_trade_frame(frame.as_bytes(), &mut fast).is_none());
        assert!(fast.is_empty(), "a frame the fast path gives up on adds nothing");
    }

    #[test]
    fn raw_trade_is_recovered_for_dead_letters() {
        let f =
            r#"{"data":[{"p":1,"s":"A","t":1,"v":1},{"p":-1,"s":"B","t":1,"v":1}],"type":"trade"}"#;
        assert_eq!(raw_trade(f, 1).unwrap(), r#"{"p":-1,"s":"B","t":1,"v":1}"#);
    }
}
