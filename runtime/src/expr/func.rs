//! Scalar functions, each evaluated over whole columns.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
use arrow_schema::ArrowError;

use super::types::Type;
use crate::base::record::{civil_from_days, days_from_civil};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Abs,
    /// round(x, digits)
    Round(i32),
    Floor,
    Ceil,
    Sqrt,
    Ln,
    Exp,
    Power,
    Least,
    Greatest,
    StartsWith,
    EndsWith,
    Contains,
    SplitPart,
    Upper,
    Lower,
    Length,
    DateTrunc(TruncUnit),
    Extract(DatePart),
    /// timestamp → bigint ms
    EpochMs,
    /// bigint ms → timestamp
    FromEpochMs,
}

impl Func {
    pub fn name(self) -> &'static str {
        match self {
            Func::Abs => "abs",
            Func::Round(_) => "round",
            Func::Floor => "floor",
            Func::Ceil => "ceil",
            Func::Sqrt => "sqrt",
            Func::Ln => "ln",
            Func::Exp => "exp",
            Func::Power => "power",
            Func::Least => "least",
            Func::Greatest => "greatest",
            Func::StartsWith => "starts_with",
            Func::EndsWith => "ends_with",
            Func::Contains => "contains",
            Func::SplitPart => "split_part",
            Func::Upper => "upper",
            Func::Lower => "lower",
            Func::Length => "length",
            Func::DateTrunc(_) => "date_trunc",
            Func::Extract(_) => "extract",
            Func::EpochMs | Func::FromEpochMs => "epoch_ms",
        }
    }
}

/// Units of `date_trunc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruncUnit {
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    /// ISO weeks start on Monday.
    Week,
    Month,
    Quarter,
    Year,
}

impl TruncUnit {
    pub const NAMES: &'static [&'static str] = &[
        "'millisecond'",
        "'second'",
        "'minute'",
        "'hour'",
        "'day'",
        "'week'",
        "'month'",
        "'quarter'",
        "'year'",
    ];
    pub fn parse(s: &str) -> Option<TruncUnit> {
        Some(match s.strip_suffix('s').unwrap_or(s) {
            "millisecond" | "ms" => TruncUnit::Millisecond,
            "second" => TruncUnit::Second,
            "minute" => TruncUnit::Minute,
            "hour" => TruncUnit::Hour,
            "day" => TruncUnit::Day,
            "week" => TruncUnit::Week,
            "month" => TruncUnit::Month,
            "quarter" => TruncUnit::Quarter,
            "year" => TruncUnit::Year,
            _ => return None,
        })
    }
}

/// Parts of `extract` / `date_part`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePart {
    Year,
    Quarter,
    Month,
    /// ISO week number.
    Week,
    Day,
    /// Sunday = 0.
    Dow,
    /// Monday = 1 … Sunday = 7.
    IsoDow,
    Doy,
    Hour,
    Minute,
    Second,
    /// Seconds × 1000 + milliseconds (as DuckDB).
    Millisecond,
    /// Seconds since the epoch, with fraction (double).
    Epoch,
}

impl DatePart {
    pub const NAMES: &'static [&'static str] = &[
        "'year'",
        "'quarter'",
        "'month'",
        "'week'",
        "'day'",
        "'dow'",
        "'isodow'",
        "'doy'",
        "'hour'",
        "'minute'",
        "'second'",
        "'millisecond'",
        "'epoch'",
    ];
    pub fn parse(s: &str) -> Option<DatePart> {
        Some(match s {
            "year" | "years" => DatePart::Year,
            "quarter" => DatePart::Quarter,
            "month" | "months" => DatePart::Month,
            "week" | "weeks" => DatePart::Week,
            "day" | "days" => DatePart::Day,
            "dow" | "dayofweek" => DatePart::Dow,
            "isodow" => DatePart::IsoDow,
            "doy" | "dayofyear" => DatePart::Doy,
            "hour" | "hours" => DatePart::Hour,
            "minute" | "minutes" => DatePart::Minute,
            "second" | "seconds" => DatePart::Second,
            "millisecond" | "milliseconds" => DatePart::Millisecond,
            "epoch" => DatePart::Epoch,
            _ => return None,
        })
    }
    pub fn result_type(self) -> Type {
        if self == DatePart::Epoch {
            Type::Float
        } else {
            Type::Int
        }
    }
}

fn compute(msg: impl Into<String>) -> ArrowError {
    ArrowError::ComputeError(msg.into())
}

/// Evaluates `func` over its evaluated arguments (each `n` long).
pub fn call(func: Func, args: &[ArrayRef], ty: Type, n: usize) -> Result<ArrayRef, ArrowError> {
    use arrow_arith::arity::{try_unary, unary};
    let a0 = &args[0];
    Ok(match func {
        Func::Abs if ty == Type::Int => Arc::new(try_unary::<Int64Type, _, Int64Type>(
            a0.as_primitive::<Int64Type>(),
            |x| {
                x.checked_abs()
                    .ok_or_else(|| compute(format!("Overflow on abs({x})")))
            },
        )?),
        Func::Abs => Arc::new(unary::<Float64Type, _, Float64Type>(
            a0.as_primitive(),
            f64::abs,
        )),
        Func::Round(d) if ty == Type::Int => {
            if d >= 0 {
                a0.clone()
            } else {
                let m = 10i64.checked_pow((-d) as u32);
                Arc::new(try_unary::<Int64Type, _, Int64Type>(
                    a0.as_primitive::<Int64Type>(),
                    |x| {
                        let Some(m) = m else { return Ok(0) };
                        let r = (x as f64 / m as f64).round() * m as f64;
                        if r.abs() < 9.2e18 {
                            Ok(r as i64)
                        } else {
                            Err(compute(format!("Overflow in round({x}, {d})")))
                        }
                    },
                )?)
            }
        }
        Func::Round(d) => {
            // As DuckDB: with digits, a result that is not finite gives the input back (d > 0)
            // or 0 (d < 0).
            let m = 10f64.powi(d.abs());
            Arc::new(unary::<Float64Type, _, Float64Type>(
                a0.as_primitive(),
                move |x| {
                    if d == 0 {
                        return x.round();
                    }
                    let r = if d > 0 {
                        (x * m).round() / m
                    } else {
                        (x / m).round() * m
                    };
                    match (r.is_finite(), d > 0) {
                        (true, _) => r,
                        (false, true) => x,
                        (false, false) => 0.0,
                    }
                },
            ))
        }
        Func::Floor | Func::Ceil if ty == Type::Int => a0.clone(),
        Func::Floor => Arc::new(unary::<Float64Type, _, Float64Type>(
            a0.as_primitive(),
            f64::floor,
        )),
        Func::Ceil => Arc::new(unary::<Float64Type, _, Float64Type>(
            a0.as_primitive(),
            f64::ceil,
        )),
        Func::Sqrt => Arc::new(try_unary::<Float64Type, _, Float64Type>(
            a0.as_primitive(),
            |x| {
                if x < 0.0 {
                    Err(compute("cannot take square root of a negative number"))
                } else {
                    Ok(x.sqrt())
                }
            },
        )?),
        Func::Ln => Arc::new(try_unary::<Float64Type, _, Float64Type>(
            a0.as_primitive(),
            |x| {
                if x == 0.0 {
                    Err(compute("cannot take logarithm of zero"))
                } else if x < 0.0 {
                    Err(compute("cannot take logarithm of a negative number"))
                } else {
                    Ok(x.ln())
                }
            },
        )?),
        Func::Exp => Arc::new(unary::<Float64Type, _, Float64Type>(
            a0.as_primitive(),
            f64::exp,
        )),
        Func::Power => Arc::new(arrow_arith::arity::binary::<
            Float64Type,
            Float64Type,
            _,
            Float64Type,
        >(
            a0.as_primitive(), args[1].as_primitive(), f64::powf
        )?),
        Func::Least | Func::Greatest => extreme(args, func == Func::Least)?,
        Func::StartsWith => Arc::new(arrow_string::like::starts_with(a0, &args[1])?),
        Func::EndsWith => Arc::new(arrow_string::like::ends_with(a0, &args[1])?),
        Func::Contains => Arc::new(arrow_string::like::contains(a0, &args[1])?),
        Func::SplitPart => {
            let (s, d, i) = (
                a0.as_string::<i32>(),
                args[1].as_string::<i32>(),
                args[2].as_primitive::<Int64Type>(),
            );
            let out: StringArray = (0..n)
                .map(|r| {
                    if s.is_null(r) || d.is_null(r) || i.is_null(r) {
                        return None;
                    }
                    Some(split_part(s.value(r), d.value(r), i.value(r)))
                })
                .collect();
            Arc::new(out)
        }
        Func::Upper | Func::Lower => {
            let s = a0.as_string::<i32>();
            let out: StringArray = s
                .iter()
                .map(|v| {
                    v.map(|v| {
                        if func == Func::Upper {
                            v.to_uppercase()
                        } else {
                            v.to_lowercase()
                        }
                    })
                })
                .collect();
            Arc::new(out)
        }
        Func::Length => {
            let s = a0.as_string::<i32>();
            let out: Int64Array = s
                .iter()
                .map(|v| v.map(|v| v.chars().count() as i64))
                .collect();
            Arc::new(out)
        }
        Func::DateTrunc(unit) => {
            let t = a0.as_primitive::<TimestampMillisecondType>();
            Arc::new(ts_array(unary::<TimestampMillisecondType, _, Int64Type>(
                t,
                |ms| trunc(ms, unit),
            )))
        }
        Func::Extract(part) => {
            let t = a0.as_primitive::<TimestampMillisecondType>();
            if part == DatePart::Epoch {
                Arc::new(unary::<TimestampMillisecondType, _, Float64Type>(t, |ms| {
                    ms as f64 / 1000.0
                }))
            } else {
                Arc::new(unary::<TimestampMillisecondType, _, Int64Type>(t, |ms| {
                    extract(ms, part)
                }))
            }
        }
        Func::EpochMs => {
            let t = a0.as_primitive::<TimestampMillisecondType>();
            Arc::new(Int64Array::new(t.values().clone(), t.nulls().cloned()))
        }
        Func::FromEpochMs => {
            let t = a0.as_primitive::<Int64Type>();
            Arc::new(
                TimestampMillisecondArray::new(t.values().clone(), t.nulls().cloned())
                    .with_timezone("UTC"),
            )
        }
    })
}

fn ts_array(a: Int64Array) -> TimestampMillisecondArray {
    TimestampMillisecondArray::new(a.values().clone(), a.nulls().cloned()).with_timezone("UTC")
}

/// least/greatest: NULLs are skipped; NULL only when every argument is. Floats are compared as
/// DuckDB compares them (-0.0 = 0.0, NaN above all), but the values kept are the originals; on a
/// tie the earlier argument wins.
fn extreme(args: &[ArrayRef], least: bool) -> Result<ArrayRef, ArrowError> {
    let mut acc = args[0].clone();
    for next in &args[1..] {
        let (a, b) = (
            super::eval::normalize_floats(&acc),
            super::eval::normalize_floats(next),
        );
        let better = if least {
            arrow_ord::cmp::lt(&b, &a)?
        } else {
            arrow_ord::cmp::gt(&b, &a)?
        };
        let take_next = arrow_arith::boolean::or(
            &super::eval::truthy(&better),
            &arrow_arith::boolean::and(
                &arrow_arith::boolean::is_null(&acc)?,
                &arrow_arith::boolean::is_not_null(next)?,
            )?,
        )?;
        acc = arrow_select::zip::zip(&take_next, next, &acc)?;
    }
    Ok(acc)
}

/// DuckDB's split_part: 1-based; negative counts from the end; out of range gives ''.
fn split_part(s: &str, delim: &str, index: i64) -> String {
    // An empty delimiter splits into characters.
    let chars: Vec<String>;
    let parts: Vec<&str> = if delim.is_empty() {
        chars = s.chars().map(String::from).collect();
        chars.iter().map(String::as_str).collect()
    } else {
        s.split(delim).collect()
    };
    let n = parts.len() as i64;
    let i = if index > 0 {
        index - 1
    } else if index < 0 {
        n + index
    } else {
        return String::new();
    };
    if (0..n).contains(&i) {
        parts[i as usize].to_string()
    } else {
        String::new()
    }
}

const DAY: i64 = 86_400_000;

fn trunc(ms: i64, unit: TruncUnit) -> i64 {
    let floor = |size: i64| ms.div_euclid(size) * size;
    match unit {
        TruncUnit::Millisecond => ms,
        TruncUnit::Second => floor(1000),
        TruncUnit::Minute => floor(60_000),
        TruncUnit::Hour => floor(3_600_000),
        TruncUnit::Day => floor(DAY),
        TruncUnit::Week => {
            // 1970-01-01 was a Thursday; Mondays are days ≡ 4 (mod 7).
            let days = ms.div_euclid(DAY);
            (days - (days - 4).rem_euclid(7)) * DAY
        }
        TruncUnit::Month | TruncUnit::Quarter | TruncUnit::Year => {
            let (y, m, _) = civil_from_days(ms.div_euclid(DAY));
            let m = match unit {
                TruncUnit::Month => m,
                TruncUnit::Quarter => (m - 1) / 3 * 3 + 1,
                _ => 1,
            };
            days_from_civil(y, m, 1) * DAY
        }
    }
}

fn extract(ms: i64, part: DatePart) -> i64 {
    let days = ms.div_euclid(DAY);
    let rem = ms.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    let dow = (days + 4).rem_euclid(7); // Sunday = 0
    match part {
        DatePart::Year => y,
        DatePart::Quarter => (m as i64 - 1) / 3 + 1,
        DatePart::Month => m as i64,
        DatePart::Day => d as i64,
        DatePart::Dow => dow,
        DatePart::IsoDow => {
            if dow == 0 {
                7
            } else {
                dow
            }
        }
        DatePart::Doy => days - days_from_civil(y, 1, 1) + 1,
        DatePart::Hour => rem / 3_600_000,
        DatePart::Minute => rem / 60_000 % 60,
        DatePart::Second => rem / 1000 % 60,
        DatePart::Millisecond => rem % 60_000,
        DatePart::Week => {
            // ISO 8601: the week with the year's first Thursday is week 1.
            let thursday = days - (days - 4).rem_euclid(7) + 3; // Thursday of this ISO week
            let (ty, _, _) = civil_from_days(thursday);
            (thursday - days_from_civil(ty, 1, 1)) / 7 + 1
        }
        DatePart::Epoch => ms / 1000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_and_units() {
        for days in [-800_000i64, -1, 0, 1, 59, 365, 11_016, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        // 2026-12-02 17:05:04.321 UTC, a Wednesday
        let t = 1_796_230_504_321;
        assert_eq!(
            crate::base::record::format_ts(t),
            "2026-12-02T16:55:04.321Z"
        );
        assert_eq!(
            crate::base::record::format_ts(trunc(t, TruncUnit::Week)),
            "2026-11-30T00:00:00.000Z"
        );
        assert_eq!(
            crate::base::record::format_ts(trunc(t, TruncUnit::Quarter)),
            "2026-10-01T00:00:00.000Z"
        );
        assert_eq!(extract(t, DatePart::IsoDow), 3);
        assert_eq!(extract(t, DatePart::Dow), 3);
        assert_eq!(extract(t, DatePart::Week), 49);
        assert_eq!(extract(t, DatePart::Doy), 336);
        assert_eq!(extract(t, DatePart::Millisecond), 4_321);
        assert_eq!(split_part("a:b:c", ":", -1), "c");
        assert_eq!(split_part("a:b", ":", 5), "");
        assert_eq!(split_part("abc", "", 1), "a");
        assert_eq!(split_part("a:b", ":", 0), "");
    }
}
