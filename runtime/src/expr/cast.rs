//! CAST between the expression types, as DuckDB does it: double → bigint rounds half to even
//! and fails out of range; text parses strictly (after trimming blanks); numbers print the
//! way DuckDB prints them. `try_cast` gives NULL where CAST fails.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow_schema::ArrowError;

use super::types::Type;

fn fail(msg: String) -> ArrowError {
    ArrowError::CastError(msg)
}

/// Casts one column; an error names the first value that cannot be converted.
pub fn cast(a: &ArrayRef, from: Type, to: Type, try_: bool) -> Result<ArrayRef, ArrowError> {
    if from == to {
        return Ok(a.clone());
    }
    if from == Type::Null {
        return Ok(arrow_array::new_null_array(&to.arrow(), a.len()));
    }
    // Each conversion is a fallible function of one value; `try_` turns failures into NULLs.
    macro_rules! map {
        ($input:expr, $out:ty, $f:expr) => {{
            let mut out: Vec<Option<_>> = Vec::with_capacity(a.len());
            for v in $input.iter() {
                out.push(match v {
                    None => None,
                    Some(v) => match $f(v) {
                        Ok(x) => Some(x),
                        Err(e) if try_ => {
                            let _: String = e;
                            None
                        }
                        Err(e) => return Err(fail(e)),
                    },
                });
            }
            Arc::new(<$out>::from(out)) as ArrayRef
        }};
    }
    Ok(match (from, to) {
        (Type::Int, Type::Float) => {
            map!(a.as_primitive::<Int64Type>(), Float64Array, |x: i64| Ok::<
                _,
                String,
            >(
                x as f64
            ))
        }
        (Type::Float, Type::Int) => map!(a.as_primitive::<Float64Type>(), Int64Array, float_to_int),
        (Type::Int, Type::Str) => map!(a.as_primitive::<Int64Type>(), StringArray, |x: i64| Ok::<
            _,
            String,
        >(
            x.to_string()
        )),
        (Type::Float, Type::Str) => {
            map!(a.as_primitive::<Float64Type>(), StringArray, |x: f64| Ok::<
                _,
                String,
            >(
                format_float(x)
            ))
        }
        (Type::Bool, Type::Str) => map!(a.as_boolean(), StringArray, |x: bool| Ok::<_, String>(
            x.to_string()
        )),
        (Type::Ts, Type::Str) => map!(
            a.as_primitive::<TimestampMillisecondType>(),
            StringArray,
            |x: i64| Ok::<_, String>(format_timestamp(x))
        ),
        (Type::Str, Type::Int) => map!(a.as_string::<i32>(), Int64Array, |s: &str| {
            // As DuckDB: an integer, or a decimal number rounded half away from zero ('2.5' → 3,
            // unlike a DOUBLE).
            let t = s.trim();
            t.parse::<i64>().or_else(|_| match t.parse::<f64>() {
                Ok(x)
                    if x.is_finite()
                        && t.chars().all(|c| c.is_ascii_digit() || ".eE+-".contains(c)) =>
                {
                    float_to_int(x.round())
                }
                _ => Err(format!("could not convert string '{s}' to BIGINT")),
            })
        }),
        (Type::Str, Type::Float) => map!(a.as_string::<i32>(), Float64Array, |s: &str| {
            let t = s.trim();
            t.parse::<f64>()
                .map_err(|_| format!("could not convert string '{s}' to DOUBLE"))
        }),
        (Type::Str, Type::Bool) => map!(a.as_string::<i32>(), BooleanArray, |s: &str| {
            match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "1" | "yes" | "y" => Ok(true),
                "false" | "f" | "0" | "no" | "n" => Ok(false),
                _ => Err(format!("could not convert string '{s}' to BOOLEAN")),
            }
        }),
        (Type::Str, Type::Ts) => {
            let out = map!(a.as_string::<i32>(), Int64Array, |s: &str| {
                super::check::parse_timestamp(s)
                    .ok_or_else(|| format!("could not convert string '{s}' to TIMESTAMP"))
            });
            let ms = out.as_primitive::<Int64Type>();
            Arc::new(
                TimestampMillisecondArray::new(ms.values().clone(), ms.nulls().cloned())
                    .with_timezone("UTC"),
            )
        }
        (Type::Bool, Type::Int) => map!(a.as_boolean(), Int64Array, |b: bool| Ok::<_, String>(
            b as i64
        )),
        (Type::Bool, Type::Float) => map!(a.as_boolean(), Float64Array, |b: bool| Ok::<_, String>(
            b as i64 as f64
        )),
        (Type::Int, Type::Bool) => {
            map!(a.as_primitive::<Int64Type>(), BooleanArray, |x: i64| Ok::<
                _,
                String,
            >(
                x != 0
            ))
        }
        (Type::Float, Type::Bool) => map!(
            a.as_primitive::<Float64Type>(),
            BooleanArray,
            |x: f64| Ok::<_, String>(x != 0.0)
        ),
        _ => {
            return Err(fail(format!(
                "cannot cast {} to {}",
                from.name(),
                to.name()
            )));
        }
    })
}

/// Rounds half to even (as DuckDB casts a DOUBLE: 2.5 → 2, 3.5 → 4); NaN, ±∞ and values beyond
/// the bigint range are errors.
fn float_to_int(x: f64) -> Result<i64, String> {
    let r = x.round_ties_even();
    if r.is_finite() && r >= -9_223_372_036_854_775_808.0 && r < 9_223_372_036_854_775_808.0 {
        Ok(r as i64)
    } else {
        Err(format!(
            "value {} is out of range for BIGINT",
            format_float(x)
        ))
    }
}

/// A double as DuckDB prints it: the shortest digits that read back to the same value, in
/// positional notation for exponents -5 < e < 16 (always with a fraction: `3.0`), otherwise
/// scientific with a signed two-digit exponent (`1e+16`, `1e-05`).
pub fn format_float(x: f64) -> String {
    if x.is_nan() {
        // DuckDB prints the sign of a NaN (x86's `inf * 0` is a negative one).
        return if x.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{x:e}"); // shortest round-trip digits: "-1.2345e6"
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` has a numeric exponent");
    if (-4..16).contains(&exp) {
        let s = format!("{x}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// A timestamp as DuckDB prints one: `2026-12-01 14:30:00` with `.123` when it has
/// milliseconds.
pub fn format_timestamp(ms: i64) -> String {
    let s = crate::base::record::format_ts(ms); // 2026-12-01T14:30:00.123Z
    let s = s.trim_end_matches('Z').replacen('T', " ", 1);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_duckdb_prints_them() {
        // Expected strings are DuckDB 1.x's `CAST(x AS VARCHAR)`.
        for (x, s) in [
            (3.0, "3.0"),
            (0.1, "0.1"),
            (1e30, "1e+30"),
            (1e16, "1e+16"),
            (1234567.0, "1234567.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (-2.5, "-2.5"),
        ] {
            assert_eq!(format_float(x), s, "{x}");
        }
        assert_eq!(float_to_int(2.5), Ok(2));
        assert_eq!(float_to_int(3.5), Ok(4));
        assert_eq!(float_to_int(-2.5), Ok(-2));
        assert!(float_to_int(1e30).is_err());
        assert!(float_to_int(f64::NAN).is_err());
    }
}
