//! Durations (`500ms`, `2s`, `1m`, `1h`, `1d`) and byte sizes (`64KiB`, `128MiB`, `1GB`) as the
//! spec writes them. Both deserialize from a string (or a bare integer: milliseconds / bytes)
//! and publish a JSON Schema pattern so editors flag typos before `tickflow validate` does.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, de};

/// A span of time, stored in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub i64);

impl Duration {
    pub const fn millis(ms: i64) -> Self {
        Duration(ms)
    }
    pub const fn secs(s: i64) -> Self {
        Duration(s * 1000)
    }
    pub fn as_millis(self) -> i64 {
        self.0
    }
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0) as u64)
    }

    /// Parses `<number><unit>` with unit one of ms, s, m, h, d, w, mo (`1m30s` style sums too).
    pub fn parse(text: &str) -> Result<Duration, String> {
        let bad = || {
            format!(
                "invalid duration `{text}`: expected a number with a unit (ms, s, m, h, d, w, mo), e.g. 500ms, 2s, 1m, 1h30m"
            )
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(bad());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "invalid duration `{text}`: a unit is required (ms, s, m, h, d, w, mo), e.g. {text}s or {text}ms"
            ));
        }
        let mut total: i64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
            if num_len == 0 {
                return Err(bad());
            }
            let n: i64 = rest[..num_len].parse().map_err(|_| bad())?;
            rest = &rest[num_len..];
            let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let factor = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                // A month is not a fixed length: windows of `1mo` in market time are calendar
                // months; as a plain duration it is the mean Gregorian month.
                "mo" => MONTH_MS,
                _ => return Err(bad()),
            };
            total = n
                .checked_mul(factor)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("invalid duration `{text}`: too large"))?;
        }
        Ok(Duration(total))
    }
}

/// `1mo`: the mean Gregorian month (30.436875 days), in ms.
pub const MONTH_MS: i64 = 2_629_746_000;

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms == 0 {
            return f.write_str("0s");
        }
        if ms > 0 && ms % MONTH_MS == 0 {
            return write!(f, "{}mo", ms / MONTH_MS);
        }
        // As written: `6h30m`, not `390m`.
        let (sign, mut rest) = if ms < 0 {
            ("-", ms.unsigned_abs())
        } else {
            ("", ms as u64)
        };
        f.write_str(sign)?;
        for (unit, factor) in [
            ("d", 86_400_000u64),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if rest >= factor {
                write!(f, "{}{unit}", rest / factor)?;
                rest %= factor;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 500ms, 2s, 1m or 1h")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: a unit is required (ms, s, m, h, d, w, mo), e.g. {v}s or {v}ms"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                self.visit_u64(v.unsigned_abs())
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration: a number with a unit (ms, s, m, h, d, w, mo), e.g. 500ms, 2s, 1m, 1h30m."
        })
    }
}

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let bad = || {
            format!(
                "invalid size `{text}`: expected a number with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 64MiB"
            )
        };
        let s = text.trim();
        let num_len = s.bytes().take_while(|b| b.is_ascii_digit()).count();
        if num_len == 0 {
            return Err(bad());
        }
        let n: u64 = s[..num_len].parse().map_err(|_| bad())?;
        let factor: u64 = match s[num_len..].trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(bad()),
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size `{text}`: too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if b >= factor && b % factor == 0 {
                return write!(f, "{}{unit}", b / factor);
            }
        }
        write!(f, "{b}B")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 64MiB or 1GB")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size `{v}`: must not be negative")))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]+ ?(B|KB|kB|MB|GB|KiB|MiB|GiB)?$"},
                {"type": "integer", "minimum": 0}
            ],
            "description": "A size in bytes: a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 128MiB."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_sums() {
        assert_eq!(Duration::parse("500ms"), Ok(Duration(500)));
        assert_eq!(Duration::parse("2s"), Ok(Duration(2_000)));
        assert_eq!(Duration::parse("1m"), Ok(Duration(60_000)));
        assert_eq!(Duration::parse("1h30m"), Ok(Duration(5_400_000)));
        assert_eq!(Duration::parse("1d"), Ok(Duration(86_400_000)));
        assert!(
            Duration::parse("10")
                .unwrap_err()
                .contains("a unit is required")
        );
        assert!(
            Duration::parse("5 parsecs")
                .unwrap_err()
                .contains("invalid duration")
        );
        assert_eq!(Duration(90_000).to_string(), "1m30s");
        assert_eq!(Duration(60_000).to_string(), "1m");
        assert_eq!(Duration::parse("6h30m").unwrap().to_string(), "6h30m");
        assert_eq!(Duration::parse("1mo").unwrap().to_string(), "1mo");
        assert_eq!(Duration::parse("1w").unwrap().to_string(), "7d");
        assert_eq!(Duration(1_500).to_string(), "1s500ms");
        for ms in [1, 999, 61_001, 86_400_001, 3 * 3_600_000 + 7] {
            assert_eq!(Duration::parse(&Duration(ms).to_string()), Ok(Duration(ms)));
        }
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("64MiB"), Ok(ByteSize(64 << 20)));
        assert_eq!(ByteSize::parse("1GB"), Ok(ByteSize(1_000_000_000)));
        assert_eq!(ByteSize::parse("123"), Ok(ByteSize(123)));
        assert!(ByteSize::parse("12 parsecs").is_err());
    }
}

/// A point in time as RFC 3339 (`2026-12-01T14:30:00Z`, `2026-12-01T09:30:00-05:00`), stored
/// as milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimePoint(pub i64);

impl TimePoint {
    pub fn parse(text: &str) -> Result<TimePoint, String> {
        text.trim()
            .parse::<jiff::Timestamp>()
            .map(|t| TimePoint(t.as_millisecond()))
            .map_err(|e| {
                format!("invalid point in time `{text}`: expected RFC 3339 with an offset, e.g. 2026-12-01T14:30:00Z ({e})")
            })
    }
    pub fn as_millis(self) -> i64 {
        self.0
    }
}

impl fmt::Display for TimePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::base::record::format_ts(self.0))
    }
}

impl<'de> Deserialize<'de> for TimePoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = TimePoint;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a point in time such as 2026-12-01T14:30:00Z")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TimePoint, E> {
                TimePoint::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl JsonSchema for TimePoint {
    fn schema_name() -> Cow<'static, str> {
        "TimePoint".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "A point in time, RFC 3339 with an offset, e.g. 2026-12-01T14:30:00Z."
        })
    }
}
