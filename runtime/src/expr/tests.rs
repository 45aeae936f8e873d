//! Expressions: type checking and its messages, and evaluation against values worked out by
//! hand. The differential test against DuckDB (tests/expressions.rs) covers random expressions.

use compact_str::CompactString;

use super::*;
use crate::base::record::{Field, FieldType, Row, Schema, Value};

fn schema() -> Schema {
    Schema {
        fields: vec![
            Field::new("symbol", FieldType::Utf8, false),
            Field::new("open", FieldType::Float64, false),
            Field::new("close", FieldType::Float64, true),
            Field::new("trades", FieldType::Int64, false),
            Field::new("window_start", FieldType::Timestamp, false),
        ],
    }
}

fn s(x: &str) -> Value {
    Value::Str(CompactString::from(x))
}

fn rows() -> Vec<Row> {
    vec![
        vec![
            s("AAPL"),
            Value::F64(100.0),
            Value::F64(101.0),
            Value::I64(3),
            Value::Ts(1_700_000_040_000),
        ],
        vec![
            s("BINANCE:BTCUSDT"),
            Value::F64(0.0),
            Value::Null,
            Value::I64(0),
            Value::Ts(1_700_000_100_000),
        ],
        vec![
            s("OANDA:EUR_USD"),
            Value::F64(1.5),
            Value::F64(1.25),
            Value::I64(i64::MAX),
            Value::Ts(0),
        ],
    ]
}

fn eval(text: &str) -> Vec<Value> {
    let sc = schema();
    let e = Expr::compile(text, &sc).unwrap_or_else(|e| panic!("{text}: {e:?}"));
    let batch = from_rows(&rows(), &sc, e.columns());
    let out = e.eval(&batch).unwrap_or_else(|err| panic!("{text}: {err}"));
    values_of(&out, e.ty())
}

fn error(text: &str) -> String {
    match Expr::compile(text, &schema()) {
        Ok(_) => panic!("`{text}` compiled"),
        Err(e) => e
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn arithmetic_with_nulls_and_division() {
    // close / open - 1: 101/100-1 = 0.01; NULL / 0 → NULL; 1.25/1.5-1 = -1/6
    let v = eval("close / open - 1");
    assert!(matches!(v[0], Value::F64(x) if (x - 0.01).abs() < 1e-12));
    assert_eq!(v[1], Value::Null);
    assert!(matches!(v[2], Value::F64(x) if (x + 1.0 / 6.0).abs() < 1e-12));
    // 7 / 2 is double division; open / 0 is IEEE (inf), int % 0 is NULL
    assert_eq!(eval("7 / 2")[0], Value::F64(3.5));
    assert_eq!(eval("open / 0")[0], Value::F64(f64::INFINITY));
    assert_eq!(eval("trades % 0")[0], Value::Null);
    assert_eq!(eval("-7 % 3")[0], Value::I64(-1));
    assert_eq!(
        eval("(trades % 5) * 2 + 1"),
        vec![Value::I64(7), Value::I64(1), Value::I64(5)]
    );
}

#[test]
fn overflow_fails_only_its_row() {
    let sc = schema();
    let e = Expr::compile("trades + 1", &sc).unwrap();
    let batch = from_rows(&rows(), &sc, e.columns());
    let per_row = e.eval_rows(&batch).expect_err("row 3 overflows");
    assert_eq!(per_row.len(), 3);
    assert!(per_row[0].2.is_empty() && per_row[1].2.is_empty());
    assert!(per_row[2].2.contains("verflow"), "{}", per_row[2].2);
    assert_eq!(values_of(&per_row[0].1, e.ty()), vec![Value::I64(4)]);
}

#[test]
fn three_valued_logic() {
    // close > 100: true, NULL, false
    assert_eq!(
        eval("close > 100"),
        vec![Value::Bool(true), Value::Null, Value::Bool(false)]
    );
    assert_eq!(eval("close > 100 AND false"), vec![Value::Bool(false); 3]);
    assert_eq!(eval("close > 100 OR true"), vec![Value::Bool(true); 3]);
    assert_eq!(
        eval("NOT (close > 100)"),
        vec![Value::Bool(false), Value::Null, Value::Bool(true)]
    );
    assert_eq!(
        eval("close IS NULL"),
        vec![Value::Bool(false), Value::Bool(true), Value::Bool(false)]
    );
    // 2 IN (1, NULL) is NULL, 1 IN (1, NULL) is true
    assert_eq!(
        eval("trades IN (3, NULL)")[..2],
        [Value::Bool(true), Value::Null]
    );
    assert_eq!(
        eval("trades BETWEEN 1 AND 3")[..2],
        [Value::Bool(true), Value::Bool(false)]
    );
}

#[test]
fn strings() {
    assert_eq!(
        eval("starts_with(symbol, 'BINANCE:')"),
        vec![Value::Bool(false), Value::Bool(true), Value::Bool(false)]
    );
    assert_eq!(
        eval("split_part(symbol, ':', 2)"),
        vec![s(""), s("BTCUSDT"), s("EUR_USD")]
    );
    assert_eq!(eval("lower(symbol) || '!'")[0], s("aapl!"));
    assert_eq!(eval("concat(symbol, NULL, '-', trades)")[0], s("AAPL-3"));
    assert_eq!(eval("symbol || NULL")[0], Value::Null);
    assert_eq!(eval("length(symbol)")[1], Value::I64(15));
    assert_eq!(
        eval("symbol LIKE '%:%'"),
        vec![Value::Bool(false), Value::Bool(true), Value::Bool(true)]
    );
}

#[test]
fn case_runs_a_branch_only_where_it_is_taken() {
    // ln(0) is an error, but the branch is not taken for open = 0.
    let v = eval("CASE WHEN open > 0 THEN ln(open) ELSE -1 END");
    assert_eq!(v[0], Value::F64(100f64.ln()));
    assert_eq!(v[1], Value::F64(-1.0));
    let v = eval("CASE symbol WHEN 'AAPL' THEN 'equity' WHEN 'OANDA:EUR_USD' THEN 'fx' END");
    assert_eq!(v, vec![s("equity"), Value::Null, s("fx")]);
    assert_eq!(
        eval("coalesce(close, open, 0)"),
        vec![Value::F64(101.0), Value::F64(0.0), Value::F64(1.25)]
    );
    assert_eq!(eval("nullif(trades, 0)")[1], Value::Null);
}

#[test]
fn time() {
    // 1_700_000_040_000 = 2023-11-14 22:14:00 UTC
    assert_eq!(eval("extract(hour FROM window_start)")[0], Value::I64(22));
    assert_eq!(
        eval("date_trunc('hour', window_start)")[0],
        Value::Ts(1_699_999_200_000)
    );
    assert_eq!(
        eval("window_start + INTERVAL '5 minutes'")[0],
        Value::Ts(1_700_000_340_000)
    );
    assert_eq!(
        eval("window_start - INTERVAL 1 HOUR")[0],
        Value::Ts(1_699_996_440_000)
    );
    assert_eq!(
        eval("epoch_ms(window_start)")[0],
        Value::I64(1_700_000_040_000)
    );
    assert_eq!(
        eval("window_start >= '2023-11-14 22:14:00'")[0],
        Value::Bool(true)
    );
    assert_eq!(
        eval("window_start > TIMESTAMP '2023-11-14 22:14:00'")[0],
        Value::Bool(false)
    );
}

#[test]
fn casts() {
    assert_eq!(eval("CAST(open AS BIGINT)")[2], Value::I64(2)); // 1.5 rounds half to even
    assert_eq!(eval("CAST(trades AS VARCHAR)")[0], s("3"));
    assert_eq!(eval("CAST(open AS VARCHAR)")[0], s("100.0"));
    assert_eq!(eval("TRY_CAST(symbol AS DOUBLE)")[0], Value::Null);
    assert_eq!(eval("open::bigint")[0], Value::I64(100));
}

#[test]
fn type_errors_name_what_is_wrong_and_where() {
    assert_eq!(
        error("clsoe / open"),
        "1:1: unknown column `clsoe`; did you mean `close`?"
    );
    assert_eq!(
        error("close / opne"),
        "1:9: unknown column `opne`; did you mean `open`?"
    );
    assert!(error("sqrtt(close)").contains("unknown function `sqrtt`; did you mean `sqrt`?"));
    assert!(
        error("symbol + 1").contains(
            "`+` needs numbers, `symbol` is a varchar (join strings with `||` or concat())"
        )
    );
    assert!(error("now() > window_start").contains("`now()` is not allowed"));
    assert!(error("close >").contains("1:"));
    assert!(error("close > 1 close").contains("unexpected `close` after the expression"));
    assert!(error("symbol = 1").contains("cannot compare a varchar with an bigint"));
    assert!(error("round(close, open)").contains("integer literal"));
    assert!(error("'x' \"y\"").len() > 0);
    // several problems in one expression are all reported
    let both = error("foo + bar");
    assert_eq!(both.lines().count(), 2, "{both}");
}

#[test]
fn absurd_expressions_are_refused_in_words() {
    let deep = format!("{}1{}", "(".repeat(300), ")".repeat(300));
    assert!(
        error(&deep).contains("nested more than 256"),
        "{}",
        error(&deep)
    );
    let long = format!("close + {}", "1 + ".repeat(300_000));
    assert!(error(&long).contains("at most 65536 are allowed"));
    assert!(error("").contains("empty"));
}

/// Conditions compiled against a trade's fields keep exactly the trades the column evaluator
/// keeps: random conditions (comparisons both ways round, ±0, NaN, ±∞, prefixes, AND/OR/NOT,
/// IN, BETWEEN) over random trades.
#[test]
fn trade_conditions_agree_with_the_column_evaluator() {
    use crate::base::record::Trade;
    use arrow_array::cast::AsArray;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let floats = [
        "0",
        "-0.0",
        "1.5",
        "100",
        "'NaN'::double",
        "'inf'::double",
        "-1e300",
        "2.5e-308",
    ];
    let symbols = [
        "''",
        "'AAPL'",
        "'BINANCE:BTCUSDT'",
        "'é'",
        "'AAP'",
        "'BINANCE:'",
    ];
    let leaf = |rng: &mut rand::rngs::StdRng| -> String {
        let ops = ["=", "<>", "<", "<=", ">", ">="];
        let op = ops[rng.random_range(0..ops.len())];
        match rng.random_range(0..8) {
            0 => format!("price {op} {}", floats[rng.random_range(0..floats.len())]),
            1 => format!("{} {op} volume", floats[rng.random_range(0..floats.len())]),
            2 => format!(
                "symbol {op} {}",
                symbols[rng.random_range(0..symbols.len())]
            ),
            3 => format!("timestamp {op} TIMESTAMP '2023-11-14 22:13:20.500'"),
            4 => format!(
                "starts_with(symbol, {})",
                symbols[rng.random_range(0..symbols.len())]
            ),
            5 => format!(
                "contains(symbol, {})",
                symbols[rng.random_range(0..symbols.len())]
            ),
            6 => "price BETWEEN 1 AND 100".to_string(),
            _ => "symbol IN ('AAPL', 'MSFT') OR symbol IS NULL".to_string(),
        }
    };
    let values = [
        0.0,
        -0.0,
        1.5,
        100.0,
        f64::NAN,
        f64::INFINITY,
        -1e300,
        2.5e-308,
        99.9,
    ];
    let names = ["AAPL", "BINANCE:BTCUSDT", "", "é", "AAP", "MSFT"];
    let trades: Vec<Trade> = (0..400)
        .map(|i| Trade {
            symbol: CompactString::from(names[rng.random_range(0..names.len())]),
            price: values[rng.random_range(0..values.len())],
            volume: values[rng.random_range(0..values.len())],
            ts: 1_700_000_000_000 + rng.random_range(-1_000..1_000),
            seq: i,
            wm: 0,
            conditions: CompactString::default(),
        })
        .collect();
    let schema = Schema::trades();
    let mut compiled = 0;
    for _ in 0..300 {
        let mut text = leaf(&mut rng);
        for _ in 0..rng.random_range(0..3) {
            let joint = ["AND", "OR"][rng.random_range(0..2)];
            text = format!(
                "({text}) {joint} {}{}",
                ["", "NOT "][rng.random_range(0..2)],
                leaf(&mut rng)
            );
        }
        let e = Expr::compile(&text, &schema).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let Some(cond) = e.trade_condition() else {
            continue;
        };
        compiled += 1;
        let batch = from_trades(&trades, e.columns());
        let mask = truthy(e.eval(&batch).unwrap().as_boolean());
        for (i, t) in trades.iter().enumerate() {
            assert_eq!(cond.test(t), mask.value(i), "{text} on {t:?}");
        }
    }
    assert!(compiled > 200, "only {compiled} of 300 conditions compiled");
}
