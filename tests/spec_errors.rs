use std::process::Command;

use crate::support::{bin, repo};

/// Runs `tickflow validate` on `yaml`; returns (exit code, stderr).
fn validate(yaml: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("validate")
        .arg(&path)
        .env_remove("TRADES_FILE")
        .env_remove("OUT_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8(out.stderr)
        .unwrap()
        .replace(&path.display().to_string(), "spec.yaml");
    (out.status.code().unwrap(), stderr)
}

/// A spec whose `steps:` are `lines` (over the sample trades, a sink reading `a`), validated:
/// the YAML, the exit code and the report.
fn validate_steps(lines: &[&str]) -> (String, i32, String) {
    let yaml = format!(
        "name: bad\nsources:\n  trades: {{ type: replay, path: {} }}\nsteps:\n{}\nsinks:\n  out: {{ type: parquet, input: a, path: out/a }}\n",
        sample(),
        lines.join("\n")
    );
    let (code, stderr) = validate(&yaml, &[]);
    (yaml, code, stderr)
}

/// `spec.yaml:LINE:COL` of `what` in step line `i` of [`validate_steps`] (1-based, as an editor
/// shows it), found in the text itself.
fn position(lines: &[&str], i: usize, what: &str) -> String {
    format!("spec.yaml:{}:{}", 5 + i, lines[i].find(what).unwrap() + 1)
}

fn sample() -> String {
    repo()
        .join("specs/sample/trades.jsonl")
        .display()
        .to_string()
}

#[test]
fn structural_errors_are_all_reported_with_positions_and_suggestions() {
    let (code, stderr) = validate(
        "name: bad
sources:
  trades:
    type: replay
    path: x.jsonl
    max_out_of_orderness: 2 parsecs
  other:
    type: replpay
steps:
  bars:
    type: window
    input: trades
    window: { type: tumbling, size: 1m }
    aggregates:
      x: { fn: median, field: price }
    colour: red
sinks:
  out: { type: parquet, input: bars, path: out }
",
        &[],
    );
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:6:27: sources.trades.max_out_of_orderness: invalid duration `2 parsecs`: expected a number with a unit (ms, s, m, h, d, w, mo), e.g. 500ms, 2s, 1m, 1h30m
spec.yaml:8:11: sources.other.type: unknown type `replpay`; did you mean `replay`?
spec.yaml:15:16: steps.bars.aggregates.x.fn: unknown value `median`; valid choices: `count`, `sum`, `min`, `max`, `first`, `last`, `avg`, `stddev`, `vwap`
spec.yaml:16:5: steps.bars.colour: unknown field `colour`; valid choices: `input`, `key`, `time`, `window`, `align`, `allowed_lateness`, `aggregates`, `engine`, `partial_windows`, `fill`, `fill_for`
4 error(s) in spec.yaml
"
    );
}

#[test]
fn planning_errors_name_the_field_and_the_fix() {
    let yaml = format!(
        "name: bad
sources:
  trades:
    type: replay
    path: {}
steps:
  bars:
    type: window
    input: trade
    window: {{ type: hopping, size: 1m, slide: 2m }}
    aggregates:
      open: {{ fn: first, field: prices }}
      n: {{ fn: count, field: price }}
      s: {{ fn: sum }}
sinks:
  out:
    type: parquet
    input: barz
    path: out
",
        sample()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:9:12: steps.bars.input: unknown input `trade`; did you mean `trades`?
spec.yaml:10:47: steps.bars.window.slide: slide (2m) must not exceed size (1m)
spec.yaml:12:33: steps.bars.aggregates.open.field: unknown field `prices`; did you mean `price`?
spec.yaml:13:30: steps.bars.aggregates.n.field: `count` takes no field (remove `field: price`)
spec.yaml:14:10: steps.bars.aggregates.s.field: `sum` needs a `field` (one of `price`, `volume`)
spec.yaml:18:12: sinks.out.input: unknown input `barz`; did you mean `bars`?
6 error(s) in spec.yaml
"
    );
}

#[test]
fn checkpoint_errors_name_the_field() {
    let yaml = format!(
        "name: bad
sources:
  trades:
    type: replay
    path: {}
steps:
  bars:
    type: window
    input: trades
    engine: differential
    window: {{ type: tumbling, size: 1m }}
    aggregates:
      n: {{ fn: count }}
sinks:
  out: {{ type: parquet, input: bars, path: out }}
checkpoints:
  path: chk
  interval: 0s
  key_groups: 0
  retain: 3
",
        sample()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:20:3: checkpoints.retain: unknown field `retain`; valid choices: `path`, `interval`, `key_groups`
1 error(s) in spec.yaml
"
    );
    let yaml = yaml.replace("  retain: 3\n", "");
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:4:11: sources.trades.type: checkpoints need sources that can rewind: `replay` cannot (use a kafka source, or remove `checkpoints`)
spec.yaml:10:13: steps.bars.engine: checkpoints support the timely engine only (use `engine: auto` or `timely`)
spec.yaml:18:13: checkpoints.interval: must be positive
spec.yaml:19:15: checkpoints.key_groups: must be between 1 and 32768, got 0
4 error(s) in spec.yaml
"
    );
}

#[test]
fn a_missing_environment_variable_is_named_with_every_other_error() {
    let (code, stderr) = validate(
        "name: x\nsources:\n  t:\n    type: replay\n    path: ${TRADES_FILE}\nsinks: {}\n",
        &[],
    );
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:5:11: sources.t.path: environment variable `TRADES_FILE` is not set (set it, or write `${TRADES_FILE:-default}`)
spec.yaml:6:8: sinks: a pipeline needs at least one sink
2 error(s) in spec.yaml
"
    );
}

#[test]
fn a_bad_duration_inside_a_window_is_named_at_its_field() {
    let (code, stderr) = validate(
        &format!(
            "name: x
sources:
  t: {{ type: replay, path: {} }}
steps:
  a:
    type: window
    input: t
    window: {{ type: tumbling, size: 1mn }}
    aggregates: {{ n: {{ fn: count }} }}
sinks:
  s: {{ type: parquet, input: a, path: out }}
",
            sample()
        ),
        &[],
    );
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:8:37: steps.a.window.size: invalid duration `1mn`: expected a number with a unit (ms, s, m, h, d, w, mo), e.g. 500ms, 2s, 1m, 1h30m
1 error(s) in spec.yaml
"
    );
}

#[test]
fn window_and_rolling_bounds_are_named_at_their_field() {
    let (code, stderr) = validate(
        &format!(
            "name: x
sources:
  t: {{ type: replay, path: {} }}
steps:
  b:
    type: window
    input: t
    window: {{ type: hopping, size: 1d, slide: 1ms }}
    aggregates: {{ n: {{ fn: count }} }}
sinks:
  s: {{ type: parquet, input: b, path: out, rolling: {{ max_bytes: 0B }} }}
",
            sample()
        ),
        &[],
    );
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:8:47: steps.b.window.slide: every record would belong to 86400000 windows (size 1d / slide 1ms); at most 10000 are allowed: use a larger slide or a smaller size
spec.yaml:11:66: sinks.s.rolling.max_bytes: must be at least 1B (e.g. 128MiB)
2 error(s) in spec.yaml
"
    );
}

#[test]
fn yaml_syntax_errors_point_at_the_line() {
    let (code, stderr) = validate("name: x\nsources: [\n", &[]);
    assert_eq!(code, 2);
    assert!(stderr.starts_with("spec.yaml:"), "{stderr}");
    assert!(stderr.ends_with("1 error(s) in spec.yaml\n"), "{stderr}");
}

#[test]
fn a_valid_spec_prints_a_summary_and_exits_0() {
    let out = Command::new(bin())
        .arg("validate")
        .arg(repo().join("specs/replay.yaml"))
        .env("TRADES_FILE", sample())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("ok — pipeline `replay-bars`: 1 source(s), 1 step(s), 1 sink(s)"),
        "{stdout}"
    );
}

#[test]
fn a_metrics_address_that_is_not_one_is_named() {
    let yaml = format!(
        "name: m
sources:
  trades: {{ type: replay, path: {} }}
steps:
  bars:
    type: window
    input: trades
    window: {{ type: tumbling, size: 1m }}
    aggregates:
      n: {{ fn: count }}
sinks:
  out: {{ type: parquet, input: bars, path: out }}
metrics:
  addr: port 9464
",
        sample()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("metrics.addr: `port 9464` is not an address to listen on (HOST:PORT, e.g. 127.0.0.1:9464, or :9464)"),
        "{stderr}"
    );
    let ok = yaml.replace("port 9464", "\":9464\"");
    let (code, stderr) = validate(&ok, &[]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_replay_url_without_a_bucket_or_an_object_is_named_not_a_crash() {
    let spec = |path: &str| {
        format!(
            "name: g
sources:
  trades: {{ type: replay, path: \"{path}\" }}
sinks:
  out: {{ type: parquet, input: trades, path: out }}
"
        )
    };
    for path in [
        "gs://",
        "gs:///",
        "gs://bucket",
        "gs://bucket/",
        "gs:///trades.jsonl",
    ] {
        let (code, stderr) = validate(&spec(path), &[]);
        assert_eq!(code, 2, "{path}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "sources.trades.path: `{path}`: expected gs://BUCKET/PATH of an object"
            )),
            "{path}: {stderr}"
        );
    }
    // A well-formed one is checked when the run opens it.
    let (code, stderr) = validate(&spec("gs://bucket/archive/trades.jsonl"), &[]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn expression_errors_are_reported_at_their_place_inside_the_expression() {
    let yaml = format!(
        "name: bad
sources:
  trades: {{ type: replay, path: {} }}
steps:
  crypto:
    type: filter
    input: trades
    where: \"starts_with(symbl, 'BINANCE:') AND volume > 0\"
  enriched:
    type: derive
    input: crypto
    columns:
      ret: close / open - 1
      spread: \"price - sqrtt(volume)\"
      ok: 'price > 1'
      label: symbol + 1
  nope: {{ type: filter, input: trades, where: \"price + 1\" }}
  slim: {{ type: select, input: enriched, columns: [symbol, price as p, foo, 'a b c'] }}
sinks:
  out: {{ type: parquet, input: slim, path: out }}
  more: {{ type: parquet, input: nope, path: out2 }}
",
        sample()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:8:25: steps.crypto.where: unknown column `symbl`; did you mean `symbol`?
spec.yaml:13:12: steps.enriched.columns.ret: unknown column `close`; valid choices: `symbol`, `price`, `volume`, `timestamp`, `conditions`
spec.yaml:13:20: steps.enriched.columns.ret: unknown column `open`; valid choices: `symbol`, `price`, `volume`, `timestamp`, `conditions`
spec.yaml:14:24: steps.enriched.columns.spread: unknown function `sqrtt`; did you mean `sqrt`?
spec.yaml:16:14: steps.enriched.columns.label: `+` needs numbers, `symbol` is a varchar (join strings with `||` or concat())
spec.yaml:17:47: steps.nope.where: `where` must be a condition (boolean), but `price + 1` is a double
6 error(s) in spec.yaml
"
    );
}

#[test]
fn absurd_expressions_are_refused_in_words_not_a_crash() {
    let deep = format!("{}price{}", "(".repeat(400), ")".repeat(400));
    let long = format!("price + {}", "1 + ".repeat(300_000));
    for (expr, want) in [
        (deep.as_str(), "nested more than 256 levels deep"),
        (long.as_str(), "at most 65536 are allowed"),
        ("price / (volume - volume)", ""),
        ("now() > timestamp", "`now()` is not allowed"),
    ] {
        let yaml = format!(
            "name: absurd
sources:
  trades: {{ type: replay, path: {} }}
steps:
  d: {{ type: derive, input: trades, columns: {{ x: \"{expr}\" }} }}
sinks:
  out: {{ type: parquet, input: d, path: out }}
",
            sample()
        );
        let (code, stderr) = validate(&yaml, &[]);
        if want.is_empty() {
            // Dividing by a column that may be zero is fine: IEEE division (inf/NaN), no error.
            assert_eq!(code, 0, "{stderr}");
        } else {
            assert_eq!(code, 2, "{stderr}");
            assert!(stderr.contains(want), "{stderr}");
            assert!(stderr.lines().count() <= 3, "{stderr}");
        }
    }
}

#[test]
fn a_step_or_source_nothing_reads_is_a_warning() {
    let yaml = format!(
        "name: unused
sources:
  trades: {{ type: replay, path: {} }}
  spare: {{ type: replay, path: {} }}
steps:
  lonely: {{ type: filter, input: trades, where: \"price > 1\" }}
sinks:
  out: {{ type: parquet, input: trades, path: out }}
",
        sample(),
        sample()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        "spec.yaml:4:10: warning: sources.spare: nothing reads the source `spare` (no step or sink has `input: spare`)
spec.yaml:6:11: warning: steps.lonely: nothing reads the filter step `lonely` (no step or sink has `input: lonely`)
"
    );
}

#[test]
fn windows_over_rows_name_what_they_cannot_read() {
    let yaml = format!(
        "name: bad
sources:
  trades: {{ type: replay, path: {} }}
steps:
  bars:
    type: window
    input: trades
    window: {{ type: tumbling, size: 1m }}
    aggregates: {{ close: {{ fn: last, field: price }}, volume: {{ fn: sum, field: volume }} }}
  odd: {{ type: window, input: trades, time: ts, window: {{ type: tumbling, size: 1m }}, aggregates: {{ n: {{ fn: count }} }} }}
  late:
    type: window
    input: trades
    allowed_lateness: 30s
    window: {{ type: tumbling, size: 1m }}
    aggregates: {{ close: {{ fn: last, field: price }} }}
  five:
    type: window
    input: bars
    time: timestamp
    window: {{ type: tumbling, size: 5m }}
    aggregates: {{ close: {{ fn: last, field: clse }}, w: {{ fn: vwap }}, k: {{ fn: max, field: symbol }} }}
  again:
    type: window
    input: late
    window: {{ type: tumbling, size: 5m }}
    aggregates: {{ close: {{ fn: last, field: close }} }}
  diff:
    type: window
    input: bars
    engine: differential
    window: {{ type: tumbling, size: 5m }}
    aggregates: {{ close: {{ fn: last, field: close }} }}
  tagged: {{ type: derive, input: late, columns: {{ side: \"CASE WHEN close > 100 THEN 'up' ELSE 'down' END\" }} }}
  sides: {{ type: window, input: tagged, key: side, allowed_lateness: 30s, window: {{ type: tumbling, size: 5m }}, aggregates: {{ n: {{ fn: count }} }} }}
sinks:
  a: {{ type: parquet, input: five, path: out/a }}
  b: {{ type: parquet, input: again, path: out/b }}
  c: {{ type: parquet, input: diff, path: out/c }}
  d: {{ type: parquet, input: odd, path: out/d }}
  e: {{ type: parquet, input: sides, path: out/e }}
",
        sample()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:10:45: steps.odd.time: trades are windowed by their `timestamp`, not `ts` (remove `time:`)
spec.yaml:20:11: steps.five.time: unknown column `timestamp`; valid choices: `window_start`, `window_end`
spec.yaml:22:45: steps.five.aggregates.close.field: unknown field `clse`; did you mean `close`?
spec.yaml:22:62: steps.five.aggregates.w.fn: `vwap` over rows weighs a price column by a volume column: name both (`{fn: vwap, price: vwap, volume: volume}` for bars)
spec.yaml:22:91: steps.five.aggregates.k.field: `symbol` is a string; `max` needs a numeric field (a number column)
spec.yaml:24:5: steps.again.allowed_lateness: `late` revises its rows up to 30s after they fire (`allowed_lateness: 30s`): a window over them needs `allowed_lateness` of at least 30s to take the revisions in
spec.yaml:31:13: steps.diff.engine: the differential engine reads trades; a window over rows uses `timely` or `auto`
spec.yaml:35:46: steps.sides.key: `tagged` revises its rows (`allowed_lateness`) and is keyed by `symbol`: a window over them groups by that key (a revision could move a row to another `side`); group rows without revisions (`allowed_lateness: 0s` upstream)
8 error(s) in spec.yaml
"
    );
}

#[test]
fn rolling_features_name_what_is_missing() {
    let yaml = format!(
        "name: bad
sources:
  trades: {{ type: replay, path: {} }}
steps:
  bars:
    type: window
    input: trades
    window: {{ type: tumbling, size: 1m }}
    aggregates: {{ close: {{ fn: last, field: price }} }}
  feats:
    type: rolling
    input: bars
    features:
      sma: {{ fn: avg, field: close }}
      e: {{ fn: ema, field: close }}
      r: {{ fn: rsi, field: clse, period: 14 }}
      close: {{ fn: lag, field: close }}
sinks:
  out: {{ type: parquet, input: feats, path: out/f }}
",
        sample()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:14:18: steps.feats.features.sma.fn: `avg` is computed over a frame: give the step `rows: N` or `range: D`
spec.yaml:15:10: steps.feats.features.e: `ema` needs `span: N` (alpha = 2 / (N + 1)) or `alpha: A`
spec.yaml:16:28: steps.feats.features.r.field: unknown column `clse`; did you mean `close`?
spec.yaml:17:14: steps.feats.features.close: `close` is already a column of `bars`
4 error(s) in spec.yaml
"
    );
}

#[test]
fn market_time_names_the_zone_the_calendar_and_the_size_that_do_not_fit() {
    let yaml = format!(
        "name: bad
sources:
  trades: {{ type: replay, path: {} }}
steps:
  a: {{ type: window, input: trades, window: {{ type: tumbling, size: 1d }}, align: {{ timezone: America/New_Yrok }}, aggregates: {{ n: {{ fn: count }} }} }}
  b: {{ type: window, input: trades, window: {{ type: tumbling, size: 1d }}, align: {{ calendar: NYSE }}, aggregates: {{ n: {{ fn: count }} }} }}
  c: {{ type: window, input: trades, window: {{ type: hopping, size: 1h, slide: 5m }}, align: {{ timezone: UTC }}, aggregates: {{ n: {{ fn: count }} }} }}
  d: {{ type: window, input: trades, window: {{ type: tumbling, size: 2d }}, align: {{ calendar: XNYS }}, aggregates: {{ n: {{ fn: count }} }} }}
  e: {{ type: window, input: trades, window: {{ type: tumbling, size: 7m }}, align: {{ timezone: Asia/Tokyo }}, aggregates: {{ n: {{ fn: count }} }} }}
  f: {{ type: window, input: trades, window: {{ type: tumbling, size: 1h }}, align: {{ timezone: Europe/London, session: extended }}, aggregates: {{ n: {{ fn: count }} }} }}
  g: {{ type: window, input: trades, window: {{ type: tumbling, size: 1h }}, align: {{ timezone: Europe/London, calendar: XNYS }}, aggregates: {{ n: {{ fn: count }} }} }}
  h: {{ type: window, input: trades, window: {{ type: tumbling, size: 1h }}, align: {{ }}, aggregates: {{ n: {{ fn: count }} }} }}
sinks:
  out: {{ type: parquet, input: a, path: out/a }}
",
        sample()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:5:94: steps.a.align.timezone: unknown time zone `America/New_Yrok`; did you mean `America/New_York`?
spec.yaml:6:94: steps.b.align.calendar: unknown calendar `NYSE`; did you mean `XNYS`? (built in: `XNYS`, `XNAS`, `24/7`, `24/5`; or a calendar file: a path ending in `.cal`)
spec.yaml:7:92: steps.c.align: `align` places tumbling windows in market time; hopping and session windows are aligned to UTC (remove `align:`)
spec.yaml:8:82: steps.d.align: a window of 2d in sessions: windows in sessions last at most a session (`size: 1d`)
spec.yaml:9:82: steps.e.align: a window of 7m does not divide a day: local and session windows restart every day (use e.g. 1m, 5m, 15m, 30m, 1h, 4h)
spec.yaml:10:118: steps.f.align.session: `session: extended` picks part of a calendar's trading day: add a `calendar` (e.g. `XNYS`)
spec.yaml:11:94: steps.g.align.timezone: calendar `XNYS` keeps time in America/New_York, not Europe/London: its sessions are America/New_York local time (remove `timezone:`)
spec.yaml:12:82: steps.h.align: `align` needs a `timezone` (e.g. `America/New_York`) or a `calendar` (e.g. `XNYS`)
8 error(s) in spec.yaml
"
    );
}

#[test]
fn gap_filling_names_the_windows_it_cannot_fill() {
    let lines = [
        "  a: { type: window, input: trades, window: { type: hopping, size: 5m, slide: 1m }, fill: previous, aggregates: { n: { fn: count } } }",
        "  b: { type: window, input: trades, window: { type: tumbling, size: 1m }, fill_for: 5m, aggregates: { n: { fn: count } } }",
        "  c: { type: window, input: trades, window: { type: tumbling, size: 1m }, fill: previous, fill_for: 0s, aggregates: { n: { fn: count } } }",
        "  d: { type: window, input: trades, window: { type: tumbling, size: 1m }, fill: null, engine: differential, aggregates: { n: { fn: count } } }",
        "  e: { type: window, input: trades, window: { type: tumbling, size: 1m }, fill: previous, aggregates: { filled: { fn: count } } }",
    ];
    let (yaml, code, stderr) = validate_steps(&lines);
    let at = |i: usize, what: &str| position(&lines, i, what);
    assert_eq!(code, 2);
    let want = [
        format!(
            "{}: steps.a.fill: gap filling gives a row per key for every window of a tumbling window's grid; hopping and session windows are not filled (remove `fill:`)",
            at(0, "previous")
        ),
        format!(
            "{}: steps.b.fill_for: `fill_for: 5m` bounds gap filling: add `fill: previous` (or `null`)",
            at(1, "5m")
        ),
        format!(
            "{}: steps.c.fill_for: must be positive, got 0s",
            at(2, "0s")
        ),
        format!(
            "{}: steps.d.engine: the differential engine does not fill gaps; use `timely` or `auto`",
            at(3, "differential")
        ),
        format!(
            "{}: steps.e.aggregates.filled: column `filled` clashes with the column gap filling adds",
            at(4, "{ fn: count }")
        ),
    ];
    for w in &want {
        assert!(stderr.contains(w.as_str()), "missing\n  {w}\nin\n{stderr}");
    }
    assert!(stderr.ends_with("5 error(s) in spec.yaml\n"), "{stderr}");
    let typo = yaml.replace(
        "fill: previous, aggregates: { filled",
        "fill: prev, aggregates: { filled",
    );
    let (code, stderr) = validate(&typo, &[]);
    assert_eq!(code, 2);
    let col = lines[4].find("prev").unwrap() + 1;
    assert!(
        stderr.contains(&format!(
            "spec.yaml:9:{col}: steps.e.fill: unknown value `prev`; did you mean `previous`?"
        )),
        "{stderr}"
    );
}

#[test]
fn count_volume_and_notional_bars_name_what_does_not_fit() {
    let lines = [
        "  a: { type: window, input: trades, window: { type: volume, size: 0 }, aggregates: { n: { fn: count } } }",
        "  b: { type: window, input: trades, window: { type: count, size: 10 }, allowed_lateness: 5s, aggregates: { n: { fn: count } } }",
        "  c: { type: window, input: trades, window: { type: notional, size: 1e6, field: price }, aggregates: { n: { fn: count } } }",
        "  d: { type: window, input: trades, window: { type: volume, size: 100, field: volum }, aggregates: { n: { fn: count } } }",
        "  e: { type: window, input: trades, window: { type: count, size: 10 }, align: { calendar: XNYS }, aggregates: { partial: { fn: count } } }",
    ];
    let (_, code, stderr) = validate_steps(&lines);
    let at = |i: usize, what: &str| position(&lines, i, what);
    assert_eq!(code, 2);
    let want = [
        format!(
            "{}: steps.a.window.size: must be a positive number, got 0",
            at(0, "0 }")
        ),
        format!(
            "{}: steps.b.allowed_lateness: `count` bars close on what they hold, not on time: a late record would move every later bar's boundary; late records are dead-lettered (use 0s)",
            at(1, "5s")
        ),
        format!(
            "{}: steps.c.window.field: notional bars over trades sum price × volume (remove `field: price`)",
            at(2, "price")
        ),
        format!(
            "{}: steps.d.window.field: unknown field `volum`; did you mean `volume`?",
            at(3, "volum }")
        ),
        format!(
            "{}: steps.e.align: `count` bars close on what they hold, not on time: they have no place in market time (remove `align:`)",
            at(4, "{ calendar")
        ),
        format!(
            "{}: steps.e.aggregates.partial: column `partial` clashes with the column count, volume and notional bars add",
            at(4, "{ fn: count }")
        ),
    ];
    for w in &want {
        assert!(stderr.contains(w.as_str()), "missing\n  {w}\nin\n{stderr}");
    }
    assert!(stderr.ends_with("6 error(s) in spec.yaml\n"), "{stderr}");
}

#[test]
fn vwap_over_rows_names_its_price_and_volume_columns() {
    let lines = [
        "  bars: { type: window, input: trades, window: { type: tumbling, size: 1m }, aggregates: { vwap: { fn: vwap }, volume: { fn: sum, field: volume } } }",
        "  a: { type: window, input: bars, window: { type: tumbling, size: 5m }, aggregates: { v: { fn: vwap } } }",
        "  b: { type: window, input: bars, window: { type: tumbling, size: 5m }, aggregates: { v: { fn: vwap, price: vwap, volume: volumes } } }",
        "  c: { type: window, input: trades, window: { type: tumbling, size: 5m }, aggregates: { v: { fn: vwap, price: price, volume: volume } } }",
        "  d: { type: window, input: bars, window: { type: tumbling, size: 5m }, aggregates: { v: { fn: max, field: vwap, price: vwap } } }",
    ];
    let (_, code, stderr) = validate_steps(&lines);
    let at = |i: usize, what: &str| position(&lines, i, what);
    assert_eq!(code, 2);
    let want = [
        format!(
            "{}: steps.a.aggregates.v.fn: `vwap` over rows weighs a price column by a volume column: name both (`{{fn: vwap, price: vwap, volume: volume}}` for bars)",
            at(1, "vwap }")
        ),
        format!(
            "{}: steps.b.aggregates.v.volume: unknown field `volumes`; did you mean `volume`?",
            at(2, "volumes")
        ),
        format!(
            "{}: steps.c.aggregates.v.price: `vwap` of trades weighs their price by their volume (remove `price:` and `volume:`)",
            at(3, "price, volume")
        ),
        format!(
            "{}: steps.d.aggregates.v.price: `price` and `volume` are arguments of `vwap`, not of `max` (remove them)",
            at(4, "vwap }")
        ),
    ];
    for w in &want {
        assert!(stderr.contains(w.as_str()), "missing\n  {w}\nin\n{stderr}");
    }
    assert!(stderr.ends_with("4 error(s) in spec.yaml\n"), "{stderr}");
}

#[test]
fn a_month_needs_a_time_zone_and_cannot_be_a_session() {
    let lines = [
        "  a: { type: window, input: trades, window: { type: tumbling, size: 1mo }, aggregates: { n: { fn: count } } }",
        "  b: { type: window, input: trades, window: { type: tumbling, size: 1mo }, align: { calendar: XNYS }, aggregates: { n: { fn: count } } }",
    ];
    let (_, code, stderr) = validate_steps(&lines);
    let at = |i: usize, what: &str| position(&lines, i, what);
    assert_eq!(code, 2);
    for w in [
        format!(
            "{}: steps.a.window.size: `1mo` windows are calendar months, which start at a local midnight: add `align: {{ timezone: UTC }}` (or the time zone whose months you mean)",
            at(0, "1mo")
        ),
        format!(
            "{}: steps.b.align: a window of 1mo in sessions: windows in sessions last at most a session (`size: 1d`)",
            at(1, "{ calendar")
        ),
    ] {
        assert!(stderr.contains(w.as_str()), "missing\n  {w}\nin\n{stderr}");
    }
}

#[test]
fn columns_and_partitions_that_readers_would_confuse_are_refused() {
    let lines = [
        "  a: { type: window, input: trades, window: { type: tumbling, size: 1m }, aggregates: { close: { fn: last, field: price }, Close: { fn: first, field: price } } }",
        "  b: { type: window, input: trades, window: { type: tumbling, size: 1m }, aggregates: { date: { fn: count } } }",
    ];
    let yaml = format!(
        "name: bad\nsources:\n  trades: {{ type: replay, path: {} }}\nsteps:\n{}\nsinks:\n  out: {{ type: parquet, input: b, path: out/b, partition_by: [date] }}\n  twice: {{ type: parquet, input: trades, path: out/t, partition_by: [symbol, symbol] }}\n",
        sample(),
        lines.join("\n")
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2);
    let sinks = yaml.lines().skip(5 + lines.len()).collect::<Vec<_>>();
    for w in [
        format!(
            "{}: steps.a: columns `close` and `Close` differ only in case: SQL readers (DuckDB, Spark) take them for one column; rename one",
            position(&lines, 0, "{ type")
        ),
        format!(
            "spec.yaml:8:{}: sinks.out.partition_by.0: the rows have a column `date`: readers with Hive partitioning (DuckDB, Spark, pyarrow) would read the `date=` folder's value in its place; rename the column (a `select`) or leave `date` out of `partition_by`",
            sinks[0].find("date]").unwrap() + 1
        ),
        format!(
            "spec.yaml:9:{}: sinks.twice.partition_by.1: `symbol` is listed twice: a folder level per partition",
            sinks[1].rfind("symbol").unwrap() + 1
        ),
    ] {
        assert!(stderr.contains(w.as_str()), "missing\n  {w}\nin\n{stderr}");
    }
}

/// A name with a right-to-left override (or any control character) cannot rearrange the report
/// a terminal shows: it is printed escaped.
#[test]
fn names_with_control_characters_are_shown_escaped() {
    let yaml = format!(
        "name: bad\nsources:\n  trades: {{ type: replay, path: {} }}\nsteps:\n  \"evil\\u202Egpj.exe\": {{ type: window, input: trades, window: {{ type: tumbling, size: 1m }}, aggregates: {{}} }}\nsinks:\n  out: {{ type: parquet, input: trades, path: out/a }}\n",
        sample()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains('\u{202E}'), "{stderr}");
    assert!(
        stderr.contains(
            "steps.evil\\u{202E}gpj.exe.aggregates: a window needs at least one aggregate"
        ),
        "{stderr}"
    );
}

/// Two folders that are one through a symbolic link overlap as much as two equal paths.
#[test]
fn folders_that_are_one_through_a_symbolic_link_overlap() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
    let yaml = format!(
        "name: bad\nsources:\n  trades: {{ type: replay, path: {} }}\nsinks:\n  out: {{ type: parquet, input: trades, path: {}/real/out }}\ndead_letters: {{ path: {}/link/out/dead }}\n",
        sample(),
        dir.path().display(),
        dir.path().display()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("dead_letters.path: `")
            && stderr.contains("/link/out/dead` overlaps the folder of sink `out`"),
        "{stderr}"
    );
}

#[test]
fn top_n_names_what_it_cannot_rank() {
    let lines = [
        "  bars: { type: window, input: trades, key: symbol, window: { type: tumbling, size: 1m }, aggregates: { open: { fn: first, field: price }, close: { fn: last, field: price } } }",
        "  a: { type: top_n, input: trades, n: 3, by: price }",
        "  b: { type: top_n, input: bars, n: 0, by: close }",
        "  c: { type: top_n, input: bars, n: 3, by: close > opn }",
        "  d: { type: top_n, input: bars, n: 3, by: close > open }",
        "  e: { type: top_n, input: bars, n: 3, by: close, per: symbol }",
        "  f: { type: top_n, input: bars, n: 3, by: close, per: window_stat }",
    ];
    let (_, code, stderr) = validate_steps(&lines);
    let at = |i: usize, what: &str| position(&lines, i, what);
    assert_eq!(code, 2);
    let want = [
        format!(
            "{}: steps.a.input: top_n ranks the rows of each window, and `trades` has no window's time column (rank the rows of a window step, or of a step over one)",
            at(1, "trades")
        ),
        format!("{}: steps.b.n: must be 1 to 10000, got 0", at(2, "0,")),
        format!(
            "{}: steps.c.by: unknown column `opn`; did you mean `open`?",
            at(3, "opn")
        ),
        format!(
            "{}: steps.d.by: `close > open` is a boolean; rank by a number, a timestamp or a string",
            at(4, "close > open")
        ),
        format!(
            "{}: steps.e.per: `symbol` is not a window's time column of `bars`; use one of `window_start`, `window_end`",
            at(5, "symbol")
        ),
        format!(
            "{}: steps.f.per: unknown column `window_stat`; did you mean `window_start`?",
            at(6, "window_stat")
        ),
    ];
    for w in &want {
        assert!(stderr.contains(w.as_str()), "missing\n  {w}\nin\n{stderr}");
    }
    assert!(stderr.ends_with("6 error(s) in spec.yaml\n"), "{stderr}");
}

/// Writes `csv` as the table file of a spec with a lookup step, and validates it.
fn validate_table(csv: &str, table: &str, step: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sectors.csv");
    std::fs::write(&file, csv).unwrap();
    let yaml = format!(
        "name: bad\nsources:\n  trades: {{ type: replay, path: {} }}\ntables:\n  sectors: {{ path: {}, {table} }}\nsteps:\n  a: {{ type: lookup, input: trades, table: sectors, {step} }}\nsinks:\n  out: {{ type: parquet, input: a, path: out/a }}\n",
        sample(),
        file.display()
    );
    validate(&yaml, &[])
}

#[test]
fn tables_and_lookups_name_the_line_and_column_that_is_wrong() {
    let cols = "key: symbol, columns: { symbol: string, sector: string, weight: double }";
    let good = "symbol,sector,weight\nAAPL,Tech,1.5\nJPM,Fin,\n";
    // A value that is not of its type: the line and the column.
    let (code, stderr) = validate_table(
        "symbol,sector,weight\nAAPL,Tech,1.5\nJPM,Fin,heavy\n",
        cols,
        "columns: [sector]",
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("spec.yaml:5:20: tables.sectors.path: table `sectors`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 3, column `weight`: `heavy` is not a double"),
        "{stderr}"
    );
    assert!(stderr.ends_with("1 error(s) in spec.yaml\n"), "{stderr}");
    // A key twice, an empty key, a missing column.
    let (_, stderr) = validate_table(
        "symbol,sector,weight\nAAPL,Tech,1\nAAPL,Tech,2\n",
        cols,
        "columns: [sector]",
    );
    assert!(
        stderr.contains("line 3: the key `symbol` = `AAPL` appears again (first at line 2)"),
        "{stderr}"
    );
    let (_, stderr) = validate_table("symbol,sector,weight\n,Tech,1\n", cols, "columns: [sector]");
    assert!(
        stderr.contains("line 2: the key `symbol` is empty"),
        "{stderr}"
    );
    let (_, stderr) = validate_table(
        "symbol,industry,weight\nAAPL,Tech,1\n",
        cols,
        "columns: [sector]",
    );
    assert!(
        stderr
            .contains("the header has no column `sector` (it has `symbol`, `industry`, `weight`)"),
        "{stderr}"
    );
    // What the lookup asks of the table and of its input.
    let (code, stderr) = validate_table(
        good,
        cols,
        "columns: [sectr, weight AS price], on: \"price\"",
    );
    assert_eq!(code, 2);
    for want in [
        "steps.a.columns.0: table `sectors` has no column `sectr`; did you mean `sector`?",
        "steps.a.on: `price` is a double; the key `symbol` of table `sectors` is a string",
        "steps.a.columns.1: `price` is already a column of `trades` (`price`): rename it with `columns: [price AS ...]`",
    ] {
        assert!(stderr.contains(want), "missing\n  {want}\nin\n{stderr}");
    }
    let (code, stderr) = validate_table(
        good,
        "key: sector, columns: { symbol: string, weight: double }",
        "columns: [weight]",
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("tables.sectors.key: `sector` is not among the columns"),
        "{stderr}"
    );
    // A file that is not there.
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: bad\nsources:\n  trades: {{ type: replay, path: {} }}\ntables:\n  sectors: {{ path: {}/nope.csv, {cols} }}\nsteps:\n  a: {{ type: lookup, input: trades, table: sector }}\nsinks:\n  out: {{ type: parquet, input: a, path: out/a }}\n",
        sample(),
        dir.path().display()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("nope.csv): No such file or directory"),
        "{stderr}"
    );
    assert!(
        stderr.contains("steps.a.table: unknown table `sector`"),
        "{stderr}"
    );
}

#[test]
fn asof_joins_name_the_side_that_is_wrong() {
    let lines = [
        "  eur: { type: filter, input: trades, where: \"ends_with(symbol, 'EUR')\" }",
        "  late_bars: { type: window, input: trades, key: symbol, window: { type: tumbling, size: 1m }, allowed_lateness: 10s, aggregates: { close: { fn: last, field: price } } }",
        "  a: { type: asof_join, left: eur, right: rates, columns: { rate: price } }",
        "  b: { type: asof_join, left: eur, right: trades, direction: nearest, tolerance: 0s, columns: { rate: prce } }",
        "  c: { type: asof_join, left: eur, right: late_bars, on: { left: \"'X'\", right: close }, columns: { rate: close } }",
        "  d: { type: asof_join, left: eur, right: eur, columns: { rate: price } }",
    ];
    let (_, code, stderr) = validate_steps(&lines);
    let at = |i: usize, what: &str| position(&lines, i, what);
    assert_eq!(code, 2);
    let want = [
        format!(
            "{}: steps.a.right: unknown input `rates`; did you mean `trades`?",
            at(2, "rates")
        ),
        format!(
            "{}: steps.b.direction: `nearest` is not supported yet: use `backward` (the latest right record at or before)",
            at(3, "nearest")
        ),
        format!(
            "{}: steps.b.tolerance: must be positive, got 0s",
            at(3, "0s")
        ),
        format!(
            "{}: steps.b.columns.rate: `trades` has no column `prce`; did you mean `price`?",
            at(3, "prce")
        ),
        format!(
            "{}: steps.c.on.right: `close` is a double; keys are strings",
            at(4, "close }")
        ),
        format!(
            "{}: steps.c.right: `late_bars` revises rows it has emitted (`allowed_lateness`): a revision would join again; join rows without revisions",
            at(4, "late_bars")
        ),
        format!(
            "{}: steps.d.right: an asof_join of a stream with itself: use a rolling step's `lag` instead",
            at(5, "eur, columns")
        ),
    ];
    for w in &want {
        assert!(stderr.contains(w.as_str()), "missing\n  {w}\nin\n{stderr}");
    }
}

/// A Kafka backfill window: a point in time that is not RFC 3339, and a `stop_at` not after the
/// start, are named at their positions.
#[test]
fn kafka_start_and_stop_points_are_checked() {
    let yaml = "name: bad
sources:
  a: { type: kafka, brokers: 127.0.0.1:9092, topic: t, start: { timestamp: 2026-12-01 } }
  b: { type: kafka, brokers: 127.0.0.1:9092, topic: t, start: { timestamp: 2026-12-01T14:30:00Z }, stop_at: 2026-12-01T09:30:00-05:00 }
sinks:
  out: { type: parquet, input: a, path: out/a }
  out_b: { type: parquet, input: b, path: out/b }
";
    // Both in one round: the broken start does not hide the other source's check.
    let (code, stderr) = validate(yaml, &[]);
    assert_eq!(code, 2, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].starts_with("spec.yaml:3:76: sources.a.start.timestamp: invalid point in time `2026-12-01`: expected RFC 3339 with an offset, e.g. 2026-12-01T14:30:00Z"),
        "{stderr}"
    );
    assert_eq!(
        lines[1..],
        [
            "spec.yaml:4:109: sources.b.stop_at: 2026-12-01T14:30:00.000Z is not after the start (2026-12-01T14:30:00.000Z): the source would read nothing",
            "2 error(s) in spec.yaml"
        ],
        "{stderr}"
    );
}

/// A step named twice is an error at the second name's own line and column, in words (not the
/// YAML parser's options), and a syntax error is not prefixed with its position twice.
#[test]
fn a_name_given_twice_is_named_at_its_second_key() {
    let yaml = format!(
        "name: dup
sources:
  trades: {{ type: replay, path: {} }}
steps:
  bars:
    type: window
    input: trades
    window: {{ type: tumbling, size: 1m }}
    aggregates: {{ n: {{ fn: count }} }}
  bars:
    type: window
    input: trades
    window: {{ type: tumbling, size: 1m }}
    aggregates: {{ n: {{ fn: count }} }}
sinks:
  out: {{ type: parquet, input: bars, path: out/x }}
",
        sample()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:10:3: `bars` appears twice in this mapping: each name may be given once\n1 error(s) in spec.yaml\n"
    );
    let (code, stderr) = validate("name: x\nsources: [\n", &[]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:2:10: unclosed bracket '['\n1 error(s) in spec.yaml\n"
    );
}

/// A component whose own config is broken does not hide the planning errors of the others: one
/// round shows them all, and a reference to the broken component is not called unknown.
#[test]
fn structural_errors_do_not_hide_planning_errors() {
    let yaml = format!(
        "name: two
sources:
  trades: {{ type: replay, path: {} }}
  other: {{ type: replpay, path: x }}
steps:
  bars:
    type: window
    input: trades
    window: {{ type: tumbling, size: 1m }}
    aggregates: {{ o: {{ fn: first, field: prize }} }}
  more:
    type: filter
    input: other
    where: \"price > 0\"
sinks:
  out: {{ type: parquet, input: barz, path: out/x }}
  more_out: {{ type: parquet, input: more, path: out/y }}
",
        sample()
    );
    let (code, stderr) = validate(&yaml, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "spec.yaml:4:18: sources.other.type: unknown type `replpay`; did you mean `replay`?
spec.yaml:10:42: steps.bars.aggregates.o.field: unknown field `prize`; did you mean `price`?
spec.yaml:16:32: sinks.out.input: unknown input `barz`; did you mean `bars`?
3 error(s) in spec.yaml
"
    );
}
