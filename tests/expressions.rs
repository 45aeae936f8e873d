//! Expressions: random typed expressions over random rows (NULLs, NaN, ±0, ±∞, huge and tiny
//! values, empty and non-ASCII strings, timestamps around DST changes and leap days), evaluated
//! by tickflow and by DuckDB; every row of every expression must agree (values, NULLs, and
//! whether it is an error). The seed is in the failure message; `TICKFLOW_EXPR_SEED` and
//! `TICKFLOW_EXPR_COUNT` run others.

use std::process::Command;

use compact_str::CompactString;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tickflow::base::record::{Field, FieldType, Row, Schema, Value};
use tickflow::expr::types::Type;
use tickflow::expr::{Expr, from_rows, values_of};

use crate::support::repo;

const COLUMNS: &[(&str, FieldType, &str)] = &[
    ("a", FieldType::Int64, "BIGINT"),
    ("b", FieldType::Int64, "BIGINT"),
    ("x", FieldType::Float64, "DOUBLE"),
    ("y", FieldType::Float64, "DOUBLE"),
    ("s", FieldType::Utf8, "VARCHAR"),
    ("u", FieldType::Utf8, "VARCHAR"),
    ("ts", FieldType::Timestamp, "TIMESTAMP"),
    ("f", FieldType::Boolean, "BOOLEAN"),
];

const INTS: &[i64] = &[
    0,
    1,
    -1,
    2,
    3,
    7,
    100,
    -50,
    i64::MAX,
    i64::MIN + 1,
    1 << 40,
    -(1 << 33),
];
const FLOATS: &[f64] = &[
    0.0,
    -0.0,
    1.5,
    -2.25,
    3.0,
    0.1,
    123.456,
    1e300,
    -1e300,
    1e-300,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    2.5,
    -7.0,
];
const STRINGS: &[&str] = &[
    "",
    "abc",
    "ABC",
    "é",
    "日本",
    "a:b:c",
    "BINANCE:BTCUSDT",
    " 12 ",
    "7",
    "-3",
    "true",
    "x_y%z",
];
/// Epoch ms: the epoch, the US and EU DST changes of 2026, a leap day, before 1970, far ahead.
const TIMES: &[i64] = &[
    0,
    1_700_000_040_123,
    1_772_953_200_000, // 2026-03-08 07:00 UTC (US clocks go forward)
    1_792_889_999_999, // 2026-10-25 00:59:59.999 UTC (EU clocks go back at 01:00)
    1_709_164_800_000, // 2024-02-29
    -1_500,
    4_102_444_799_000, // 2099-12-31 23:59:59
    1_767_225_600_000, // 2026-01-01 (a Thursday: ISO week edge)
];

fn rows(rng: &mut SmallRng, n: usize) -> Vec<Row> {
    (0..n)
        .map(|_| {
            let null = |rng: &mut SmallRng| rng.random::<f64>() < 0.12;
            COLUMNS
                .iter()
                .map(|(_, ty, _)| {
                    if null(rng) {
                        return Value::Null;
                    }
                    match ty {
                        FieldType::Int64 => Value::I64(INTS[rng.random_range(0..INTS.len())]),
                        FieldType::Float64 => Value::F64(FLOATS[rng.random_range(0..FLOATS.len())]),
                        FieldType::Utf8 => Value::Str(CompactString::from(
                            STRINGS[rng.random_range(0..STRINGS.len())],
                        )),
                        FieldType::Timestamp => Value::Ts(TIMES[rng.random_range(0..TIMES.len())]),
                        FieldType::Boolean => Value::Bool(rng.random()),
                        FieldType::Utf8List => unreachable!(),
                    }
                })
                .collect()
        })
        .collect()
}

/// A random expression of type `ty` (in SQL both engines read alike: literals are cast to
/// BIGINT/DOUBLE, since DuckDB reads `2` as INTEGER and `1.5` as DECIMAL).
fn random_expr(rng: &mut SmallRng, ty: Type, depth: u32) -> String {
    let leaf = depth == 0 || rng.random::<f64>() < 0.25;
    let pick = |rng: &mut SmallRng, xs: &[&str]| xs[rng.random_range(0..xs.len())].to_string();
    let g = |rng: &mut SmallRng, t: Type| random_expr(rng, t, depth.saturating_sub(1));
    match ty {
        Type::Int => {
            if leaf {
                return match rng.random_range(0..3) {
                    0 => pick(rng, &["a", "b"]),
                    _ => format!(
                        "({}::BIGINT)",
                        [0, 1, -1, 2, 3, 7, 10, 1000][rng.random_range(0..8)]
                    ),
                };
            }
            match rng.random_range(0..15) {
                0 => format!("({} + {})", g(rng, Type::Int), g(rng, Type::Int)),
                1 => format!("({} - {})", g(rng, Type::Int), g(rng, Type::Int)),
                2 => format!("({} * {})", g(rng, Type::Int), g(rng, Type::Int)),
                3 => format!("({} % {})", g(rng, Type::Int), g(rng, Type::Int)),
                4 => format!("abs({})", g(rng, Type::Int)),
                5 => format!("(- {})", g(rng, Type::Int)),
                6 => format!("length({})", g(rng, Type::Str)),
                7 => format!(
                    "extract({} FROM {})",
                    pick(
                        rng,
                        &[
                            "year",
                            "month",
                            "day",
                            "hour",
                            "minute",
                            "second",
                            "dow",
                            "isodow",
                            "doy",
                            "week",
                            "quarter",
                            "millisecond"
                        ]
                    ),
                    g(rng, Type::Ts)
                ),
                8 => format!("epoch_ms({})", g(rng, Type::Ts)),
                9 => format!("CAST({} AS BIGINT)", g(rng, Type::Float)),
                10 => format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    g(rng, Type::Bool),
                    g(rng, Type::Int),
                    g(rng, Type::Int)
                ),
                11 => format!("coalesce({}, {})", g(rng, Type::Int), g(rng, Type::Int)),
                12 => format!("nullif({}, {})", g(rng, Type::Int), g(rng, Type::Int)),
                13 => format!(
                    "{}({}, {}, {})",
                    pick(rng, &["least", "greatest"]),
                    g(rng, Type::Int),
                    g(rng, Type::Int),
                    g(rng, Type::Int)
                ),
                _ => format!("TRY_CAST({} AS BIGINT)", g(rng, Type::Str)),
            }
        }
        Type::Float => {
            if leaf {
                return match rng.random_range(0..3) {
                    0 => pick(rng, &["x", "y"]),
                    _ => format!(
                        "({}::DOUBLE)",
                        pick(
                            rng,
                            &[
                                "0.0", "1.5", "-2.25", "3.0", "0.1", "1e300", "1e-300", "100.0"
                            ]
                        )
                    ),
                };
            }
            match rng.random_range(0..20) {
                0 => format!("({} + {})", g(rng, Type::Float), g(rng, Type::Float)),
                1 => format!("({} - {})", g(rng, Type::Float), g(rng, Type::Int)),
                2 => format!("({} * {})", g(rng, Type::Float), g(rng, Type::Float)),
                3 => format!("({} / {})", g(rng, Type::Float), g(rng, Type::Float)),
                4 => format!("({} / {})", g(rng, Type::Int), g(rng, Type::Int)),
                5 => format!("({} % {})", g(rng, Type::Float), g(rng, Type::Float)),
                6 => format!("abs({})", g(rng, Type::Float)),
                7 => format!("round({})", g(rng, Type::Float)),
                8 => format!(
                    "round({}, {})",
                    g(rng, Type::Float),
                    rng.random_range(-2..4)
                ),
                9 => format!("{}({})", pick(rng, &["floor", "ceil"]), g(rng, Type::Float)),
                10 => format!("sqrt({})", g(rng, Type::Float)),
                11 => format!("ln({})", g(rng, Type::Float)),
                12 => format!("exp({})", g(rng, Type::Float)),
                13 => format!("power({}, {})", g(rng, Type::Float), g(rng, Type::Float)),
                14 => format!("CAST({} AS DOUBLE)", g(rng, Type::Int)),
                15 => format!(
                    "CASE WHEN {} THEN {} WHEN {} THEN {} END",
                    g(rng, Type::Bool),
                    g(rng, Type::Float),
                    g(rng, Type::Bool),
                    g(rng, Type::Float)
                ),
                16 => format!(
                    "coalesce({}, {}, {})",
                    g(rng, Type::Float),
                    g(rng, Type::Float),
                    g(rng, Type::Float)
                ),
                17 => format!(
                    "{}({}, {})",
                    pick(rng, &["least", "greatest"]),
                    g(rng, Type::Float),
                    g(rng, Type::Float)
                ),
                18 => format!("extract(epoch FROM {})", g(rng, Type::Ts)),
                _ => format!("TRY_CAST({} AS DOUBLE)", g(rng, Type::Str)),
            }
        }
        Type::Str => {
            if leaf {
                return match rng.random_range(0..3) {
                    0 => pick(rng, &["s", "u"]),
                    _ => format!("'{}'", pick(rng, &["", "abc", "é", "日本", "a:b", ":"])),
                };
            }
            match rng.random_range(0..10) {
                0 => format!("lower({})", g(rng, Type::Str)),
                1 => format!("upper({})", g(rng, Type::Str)),
                2 => format!("({} || {})", g(rng, Type::Str), g(rng, Type::Str)),
                3 => format!(
                    "concat({}, {}, {})",
                    g(rng, Type::Str),
                    g(rng, Type::Int),
                    g(rng, Type::Str)
                ),
                4 => format!(
                    "split_part({}, {}, {})",
                    g(rng, Type::Str),
                    pick(rng, &["':'", "'b'", "''"]),
                    rng.random_range(-2..4)
                ),
                5 => format!("CAST({} AS VARCHAR)", g(rng, Type::Int)),
                6 => format!("CAST({} AS VARCHAR)", g(rng, Type::Float)),
                7 => format!(
                    "CASE {} WHEN 'abc' THEN 'x' WHEN '' THEN 'empty' ELSE {} END",
                    g(rng, Type::Str),
                    g(rng, Type::Str)
                ),
                8 => format!("coalesce({}, {})", g(rng, Type::Str), g(rng, Type::Str)),
                _ => format!("CAST({} AS VARCHAR)", g(rng, Type::Bool)),
            }
        }
        Type::Bool => {
            if leaf {
                return pick(rng, &["f", "true", "false", "(NULL::BOOLEAN)"]);
            }
            let cmp = |rng: &mut SmallRng| pick(rng, &["=", "<>", "<", "<=", ">", ">="]);
            match rng.random_range(0..16) {
                0 => format!("({} {} {})", g(rng, Type::Int), cmp(rng), g(rng, Type::Int)),
                1 => format!(
                    "({} {} {})",
                    g(rng, Type::Float),
                    cmp(rng),
                    g(rng, Type::Float)
                ),
                2 => format!("({} {} {})", g(rng, Type::Str), cmp(rng), g(rng, Type::Str)),
                3 => format!("({} {} {})", g(rng, Type::Ts), cmp(rng), g(rng, Type::Ts)),
                4 => format!("({} AND {})", g(rng, Type::Bool), g(rng, Type::Bool)),
                5 => format!("({} OR {})", g(rng, Type::Bool), g(rng, Type::Bool)),
                6 => format!("(NOT {})", g(rng, Type::Bool)),
                7 => format!(
                    "({} IS {}NULL)",
                    g(rng, Type::Float),
                    pick(rng, &["", "NOT "])
                ),
                8 => format!(
                    "({} {}LIKE '{}')",
                    g(rng, Type::Str),
                    pick(rng, &["", "NOT "]),
                    pick(rng, &["a%", "%b%", "_", "", "%", "日%", "x\\_y%"])
                ),
                9 => format!(
                    "{}({}, {})",
                    pick(rng, &["starts_with", "ends_with", "contains"]),
                    g(rng, Type::Str),
                    g(rng, Type::Str)
                ),
                10 => format!(
                    "({} {}IN ({}, {}, {}))",
                    g(rng, Type::Int),
                    pick(rng, &["", "NOT "]),
                    g(rng, Type::Int),
                    g(rng, Type::Int),
                    g(rng, Type::Int)
                ),
                11 => format!(
                    "({} {}BETWEEN {} AND {})",
                    g(rng, Type::Float),
                    pick(rng, &["", "NOT "]),
                    g(rng, Type::Float),
                    g(rng, Type::Float)
                ),
                12 => format!(
                    "({} {} {})",
                    g(rng, Type::Int),
                    cmp(rng),
                    g(rng, Type::Float)
                ),
                13 => format!(
                    "({} IS {}DISTINCT FROM {})",
                    g(rng, Type::Int),
                    pick(rng, &["", "NOT "]),
                    g(rng, Type::Int)
                ),
                14 => format!("CAST({} AS BOOLEAN)", g(rng, Type::Int)),
                _ => format!("({} > TIMESTAMP '2026-03-08 07:00:00')", g(rng, Type::Ts)),
            }
        }
        Type::Ts => {
            if leaf {
                return "ts".to_string();
            }
            match rng.random_range(0..4) {
                0 => format!(
                    "date_trunc('{}', {})",
                    pick(
                        rng,
                        &[
                            "second", "minute", "hour", "day", "week", "month", "quarter", "year"
                        ]
                    ),
                    g(rng, Type::Ts)
                ),
                1 => format!(
                    "({} + INTERVAL '{}')",
                    g(rng, Type::Ts),
                    pick(
                        rng,
                        &["5 minutes", "1 hour", "2 days", "1 second", "90 minutes"]
                    )
                ),
                2 => format!(
                    "({} - INTERVAL {} {})",
                    g(rng, Type::Ts),
                    rng.random_range(1..30),
                    pick(rng, &["MINUTE", "HOUR", "DAY"])
                ),
                _ => format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    g(rng, Type::Bool),
                    g(rng, Type::Ts),
                    g(rng, Type::Ts)
                ),
            }
        }
        _ => unreachable!(),
    }
}

fn cell(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::I64(x) | Value::Ts(x) => (*x).into(),
        Value::F64(x) => format!("{x:?}").into(),
        Value::Str(s) => s.as_str().into(),
        Value::Bool(b) => (*b).into(),
        Value::StrList(_) => unreachable!(),
    }
}

/// Whether tickflow's value equals DuckDB's cell.
fn agree(v: &Value, d: &serde_json::Value) -> bool {
    match (v, d) {
        (Value::Null, serde_json::Value::Null) => true,
        (Value::F64(x), serde_json::Value::String(s)) => {
            let y: f64 = s.parse().unwrap_or(f64::NAN);
            (x.is_nan() && y.is_nan()) || x == &y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::I64(x) | Value::Ts(x), serde_json::Value::Number(n)) => n.as_i64() == Some(*x),
        (Value::Str(s), serde_json::Value::String(t)) => s.as_str() == t,
        (Value::Bool(b), serde_json::Value::Bool(c)) => b == c,
        _ => false,
    }
}

fn run_case(python: &str, seed: u64, count: usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let schema = Schema {
        fields: COLUMNS
            .iter()
            .map(|(n, t, _)| Field::new(n, *t, true))
            .collect(),
    };
    let data = rows(&mut rng, 48);
    let mut exprs: Vec<(String, Expr)> = Vec::new();
    while exprs.len() < count {
        let ty = [Type::Int, Type::Float, Type::Str, Type::Bool, Type::Ts][rng.random_range(0..5)];
        let text = random_expr(&mut rng, ty, 3);
        let e = Expr::compile(&text, &schema)
            .unwrap_or_else(|e| panic!("seed {seed}: `{text}` does not compile: {e:?}"));
        assert_eq!(e.ty(), ty, "seed {seed}: `{text}`");
        exprs.push((text, e));
    }
    let dir = tempfile::tempdir().unwrap();
    let case = serde_json::json!({
        "columns": COLUMNS.iter().map(|(n, _, d)| vec![*n, *d]).collect::<Vec<_>>(),
        "rows": data.iter().map(|r| r.iter().map(cell).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "exprs": exprs.iter().map(|(t, e)| vec![t.clone(), e.ty().name().to_string()]).collect::<Vec<_>>(),
    });
    let (case_file, result_file) = (dir.path().join("case.json"), dir.path().join("result.json"));
    std::fs::write(&case_file, case.to_string()).unwrap();
    let out = Command::new(python)
        .arg(repo().join("tests/sql/expressions.py"))
        .arg(&case_file)
        .arg(&result_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "seed {seed}: DuckDB: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duck: Vec<Vec<serde_json::Value>> =
        serde_json::from_str(&std::fs::read_to_string(&result_file).unwrap()).unwrap();
    let mut problems = Vec::new();
    let mut order_free_differences = 0;
    for ((text, e), expected) in exprs.iter().zip(&duck) {
        let batch = from_rows(&data, &schema, e.columns());
        let per_row: Vec<Result<Value, String>> = match e.eval_rows(&batch) {
            Ok(a) => values_of(&a, e.ty()).into_iter().map(Ok).collect(),
            Err(rows) => rows
                .into_iter()
                .map(|(_, a, err)| {
                    if err.is_empty() {
                        Ok(values_of(&a, e.ty()).remove(0))
                    } else {
                        Err(err)
                    }
                })
                .collect(),
        };
        // A deliberate difference: whether an error in an operand that cannot change the result
        // is raised depends on what the engine computes first. tickflow goes left to right and
        // skips such operands (AND, OR, IN, CASE, COALESCE, NULLIF) and folds constants; DuckDB's
        // optimizer reorders and rewrites (`a + 10 IS DISTINCT FROM 7` becomes
        // `a IS DISTINCT FROM -3`, and `3 * b <> 10` true, neither of which can overflow). So an error on one side and a value on
        // the other is accepted under those constructs, and only rarely; values always agree.
        let order_free = [
            "AND", "OR", " IN ", "BETWEEN", "CASE", "coalesce", "nullif", "DISTINCT", " = ",
            " <> ", " < ", " > ", " <= ", " >= ",
        ]
        .iter()
        .any(|k| text.contains(k));
        for (i, (ours, theirs)) in per_row.iter().zip(expected).enumerate() {
            let ok = match (ours, theirs.get("v"), theirs.get("error")) {
                (Ok(v), Some(d), _) => agree(v, d),
                (Err(_), _, Some(_)) => true,
                (Ok(_), None, Some(_)) | (Err(_), Some(_), None) => {
                    order_free_differences += 1;
                    order_free
                }
                _ => false,
            };
            if !ok {
                problems.push(format!(
                    "`{text}` on row {i} {:?}: tickflow {ours:?}, DuckDB {theirs}",
                    data[i]
                ));
            }
        }
    }
    let cells = exprs.len() * data.len();
    eprintln!(
        "seed {seed}: {} expressions × {} rows; {order_free_differences} error/value differences from evaluation order",
        exprs.len(),
        data.len()
    );
    assert!(
        order_free_differences * 50 < cells,
        "seed {seed}: {order_free_differences} of {cells} results are an error on one side only (more than 2%)"
    );
    assert!(
        problems.is_empty(),
        "seed {seed}: {} disagreement(s) with DuckDB:\n{}",
        problems.len(),
        problems
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn random_expressions_agree_with_duckdb() {
    let Some(python) = crate::sql::python() else {
        return;
    };
    let count = std::env::var("TICKFLOW_EXPR_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(300);
    let seeds: Vec<u64> = match std::env::var("TICKFLOW_EXPR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(s) => vec![s],
        None => vec![1, 2, 3],
    };
    for seed in seeds {
        run_case(&python, seed, count);
    }
}
