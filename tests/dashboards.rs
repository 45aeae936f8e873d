use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kafka::{brokers, create_topic, produce_trades};
use crate::sql::python;
use crate::support::{bin, plugins, repo, run_with_input};

fn read_json(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join(rel)).unwrap()).unwrap()
}

/// Every query of a dashboard: (panel title / variable name, query text).
fn dashboard_queries(dashboard: &Value, field: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(q) = v["query"].as_str() {
            out.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let q = t[field]
                .as_str()
                .unwrap_or_else(|| panic!("panel {} has no {field}", p["title"]));
            out.push((
                format!("{} ({})", p["title"].as_str().unwrap(), t["refId"]),
                q.to_string(),
            ));
        }
    }
    assert!(!out.is_empty());
    out
}

/// The dashboard checker built from `tests/grafana` (Grafana's own Go code: the Foundation
/// SDK's decoder and validation, the plugin SDK's SQL macros): `scripts/test` builds it once
/// (`TICKFLOW_GRAFANA_CHECK`); otherwise it is built here. None without Go (outside CI).
fn grafana_check() -> Option<std::path::PathBuf> {
    static BUILT: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("TICKFLOW_GRAFANA_CHECK") {
                return Some(p.into());
            }
            let out =
                std::env::temp_dir().join(format!("tickflow-grafana-check-{}", std::process::id()));
            match Command::new("go")
                .args(["build", "-o"])
                .arg(&out)
                .arg(".")
                .current_dir(repo().join("tests/grafana"))
                .output()
            {
                Ok(o) if o.status.success() => Some(out),
                Ok(o) => panic!(
                    "building tests/grafana: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => {
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "Go is needed for the dashboard checks: {e}"
                    );
                    eprintln!("skipping: no Go to build tests/grafana ({e})");
                    None
                }
            }
        })
        .clone()
}

/// Grafana's variables (as its frontend substitutes them), then the SQL macros of every query
/// as the DuckDB datasource's backend expands them (`sqlutil.Interpolate`), for a time range
/// covering the data.
fn expand_all(
    check: &Path,
    queries: Vec<(String, String)>,
    symbol: &str,
) -> serde_json::Map<String, Value> {
    let queries: serde_json::Map<String, Value> = queries
        .into_iter()
        .map(|(name, sql)| {
            (
                name,
                Value::from(sql.replace("${symbol}", symbol).replace("$symbol", symbol)),
            )
        })
        .collect();
    let job = serde_json::json!({ "from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z", "queries": queries });
    let out = run_with_input(
        Command::new(check).arg("expand"),
        job.to_string().as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expanded: serde_json::Map<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    expanded
        .into_iter()
        .map(|(name, r)| {
            let sql = r["sql"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: {}", r["error"]))
                .to_string();
            assert!(
                !sql.contains("$__"),
                "{name}: a macro Grafana does not know: {sql}"
            );
            (name, Value::from(sql))
        })
        .collect()
}

/// Both dashboards decode strictly (no unknown or mistyped field) and validate with the
/// Grafana Foundation SDK; a dashboard with a mistyped field is refused (the check can fail).
#[test]
fn dashboards_are_valid_for_grafanas_own_decoder() {
    let Some(check) = grafana_check() else { return };
    let out = Command::new(&check)
        .arg("validate")
        .args([
            "deploy/grafana/dashboards/market.json",
            "deploy/grafana/dashboards/pipeline-health.json",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report.matches(": valid (").count(), 2, "{report}");
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    let mut d = read_json("deploy/grafana/dashboards/market.json");
    d["refresh"] = Value::from(30);
    std::fs::write(&broken, d.to_string()).unwrap();
    let out = Command::new(&check)
        .arg("validate")
        .arg(&broken)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("refresh"), "{report}");
}

/// Trades for `symbols` over 40 minutes, one per 2 s each, steady volumes, and one minute of
/// `SPIKE` with 50× the volume: the anomaly model must flag it.
fn write_trades(path: &Path) -> i64 {
    let start: i64 = 1_764_000_000_000 / 60_000 * 60_000;
    let spike_minute = start + 30 * 60_000;
    let mut out = String::new();
    let mut state = 17u64;
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64 // in [0, 1)
    };
    for i in 0..1200i64 {
        let ts = start + i * 2000;
        for (k, sym) in ["SPIKE", "CALM", "OTHER"].iter().enumerate() {
            let price = 100.0 + k as f64 * 10.0 + noise() * 0.2;
            let mut volume = (5.0 + noise() * 10.0).round();
            if *sym == "SPIKE" && ts / 60_000 * 60_000 == spike_minute {
                volume *= 50.0;
            }
            out.push_str(&format!(
                "{{\"data\":[{{\"p\":{price},\"s\":\"{sym}\",\"t\":{ts},\"v\":{volume}}}],\"type\":\"trade\"}}\n"
            ));
        }
    }
    std::fs::write(path, out).unwrap();
    spike_minute
}

/// The market dashboard as Grafana runs it: the pipeline writes to a bucket (the GCS
/// emulator), the datasource's own init SQL (its GCS secret, pointed at the emulator, and its
/// views) runs in DuckDB with the httpfs extension reading `gs://`, and every panel's query,
/// expanded by Grafana's own macro code, returns the rows the test put into the data.
#[test]
fn every_market_dashboard_query_returns_rows_from_real_sink_output() {
    let Some(python) = python() else { return };
    let Some(check) = grafana_check() else { return };
    let dir = tempfile::tempdir().unwrap();
    let trades = dir.path().join("trades.jsonl");
    let spike_minute = write_trades(&trades);
    let emulator = crate::gcs::Emulator::start();
    emulator.bucket("market");
    let out = "gs://market/tickflow";
    let run = Command::new(bin())
        .args(["run", "specs/forecast.yaml", "--workers", "2"])
        .current_dir(repo())
        .env("TRADES_FILE", &trades)
        .env("OUT_URL", out)
        .env("GCS_EMULATOR_URL", emulator.url())
        .env("PLUGINS", plugins())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // The datasource's own init SQL (provisioning): its GCS secret with the emulator's endpoint
    // added, then its view definitions, pointed at the bucket.
    let provisioning: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(
            repo().join("deploy/grafana/provisioning/datasources/tickflow.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let duckdb = provisioning["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "motherduck-duckdb-datasource")
        .expect("a DuckDB datasource");
    let init_sql = duckdb["jsonData"]["initSql"].as_str().unwrap();
    let init: Vec<String> = init_sql
        .split(';')
        .map(|s| {
            let s = s
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            let s = s
                .trim()
                .replace("${TICKFLOW_OUT_URL}", out)
                .replace("${GCS_HMAC_KEY_ID}", "test-key")
                .replace("${GCS_HMAC_SECRET}", "test-secret");
            match s.strip_suffix(')') {
                Some(secret) if s.starts_with("CREATE SECRET") => format!(
                    "{secret}, ENDPOINT '127.0.0.1:{}', URL_STYLE 'path', USE_SSL false)",
                    emulator.port
                ),
                _ => s,
            }
        })
        .filter(|s| !s.is_empty())
        .collect();
    assert!(
        init.iter().any(|s| s.starts_with("CREATE SECRET")),
        "{init:?}"
    );
    assert!(init.iter().any(|s| s.contains("VIEW scored")), "{init:?}");

    let dashboard = read_json("deploy/grafana/dashboards/market.json");
    let queries = expand_all(&check, dashboard_queries(&dashboard, "rawSql"), "SPIKE");
    let job = serde_json::json!({ "httpfs": true, "init": init, "queries": queries });
    let result = run_with_input(
        Command::new(&python).arg(repo().join("tests/sql/run_queries.py")),
        job.to_string().as_bytes(),
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let report: Value = serde_json::from_slice(&result.stdout).unwrap();
    for (name, r) in report.as_object().unwrap() {
        assert!(r.get("error").is_none(), "{name}: {}", r["error"]);
        assert!(r["rows"].as_u64().unwrap() > 0, "{name} returned no rows");
    }
    // What the panels show, checked against what the test put into the data.
    let symbols = &report["variable \"symbol\""]["all"];
    assert_eq!(
        symbols,
        &serde_json::json!([["CALM"], ["OTHER"], ["SPIKE"]])
    );
    let anomalies = &report["Anomalies (all symbols) (\"A\")"]["all"];
    let minute = chrono_like(spike_minute);
    let spike = anomalies
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[1] == "SPIKE" && r[0].as_str().unwrap().starts_with(&minute));
    let spike =
        spike.unwrap_or_else(|| panic!("the volume spike at {minute} is flagged: {anomalies}"));
    let volume_z: f64 = spike[4].as_str().unwrap().parse().unwrap();
    assert!(volume_z > 3.0, "{spike}");
    assert!(
        anomalies
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r[1] != "CALM" || r[4] != spike[4]),
        "the spike is SPIKE's alone"
    );
    let candles = &report["${symbol} — 1-minute bars (\"A\")"];
    assert_eq!(candles["rows"], 40, "one bar per minute of SPIKE");
    assert_eq!(
        candles["columns"],
        serde_json::json!(["time", "open", "high", "low", "close", "volume"])
    );
}

/// `YYYY-MM-DD HH:MM` of a UTC timestamp in ms (DuckDB prints timestamps so).
fn chrono_like(ms: i64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` on 127.0.0.1:`port`: (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1;
    // Prometheus answers with chunked encoding: the JSON is the longest line.
    let body = body
        .lines()
        .max_by_key(|l| l.len())
        .unwrap_or("")
        .to_string();
    Some((status, body))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The Debian `prometheus` binary that scripts/test installs, or None (skipped outside CI).
fn prometheus_binary() -> Option<String> {
    let found = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(String::from);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Prometheus is needed under CI: run the tests with scripts/test"
        );
        eprintln!("skipping: no prometheus (scripts/test installs Debian's package)");
    }
    found
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_running_pipelines_and_every_health_dashboard_query_returns_rows() {
    let Some(prometheus) = prometheus_binary() else {
        return;
    };
    let Some(brokers) = brokers() else { return };
    // Built first: waiting for the build while the 40 s pipelines run would miss them.
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let (quickstart_port, forecast_port, prom_port) = (free_port(), free_port(), free_port());

    // A websocket pipeline (the quickstart on the built-in simulator) and a Kafka pipeline with
    // checkpoints and model plugins: between them every metric the dashboard charts exists.
    let quickstart = Killed(
        Command::new(bin())
            .args([
                "run",
                "specs/quickstart.yaml",
                "--for",
                "40s",
                "--metrics-addr",
            ])
            .arg(format!("127.0.0.1:{quickstart_port}"))
            .current_dir(repo())
            .env("OUT_URL", dir.path().join("quickstart"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let topic = create_topic(&brokers, 2);
    produce_trades(&brokers, &topic, 20_000);
    let forecast = Killed(
        Command::new(bin())
            .args(["run", "specs/market-forecast.yaml", "--for", "40s"])
            .current_dir(repo())
            .env("KAFKA_BROKERS", &brokers)
            .env("TRADES_TOPIC", &topic)
            .env("OUT_URL", dir.path().join("forecast"))
            .env("CHECKPOINT_INTERVAL", "1s")
            .env("PLUGINS", &plugins)
            // The environment variable behind --metrics-addr.
            .env(
                "TICKFLOW_METRICS_ADDR",
                format!("127.0.0.1:{forecast_port}"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tickflow\n    static_configs:\n      - targets: ['127.0.0.1:{quickstart_port}', '127.0.0.1:{forecast_port}']\n"
        ),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Our endpoint speaks the exposition format Prometheus expects: both targets up.
    let (status, text) = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match http_get(quickstart_port, "/metrics") {
                Some(r) => break r,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                None => panic!("the quickstart serves no /metrics"),
            }
        }
    };
    assert_eq!(status, 200);
    assert!(
        text.starts_with("tickflow_") || text.contains("tickflow_"),
        "{text}"
    );

    let query = |q: &str| -> Vec<Value> {
        let (status, body) = http_get(prom_port, &format!("/api/v1/query?query={}", url_encode(q)))
            .unwrap_or((0, String::new()));
        if status != 200 {
            return Vec::new();
        }
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    // Wait until both targets have been scraped several times (rates need two samples) and
    // the Kafka job has checkpointed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = query("sum(up{job=\"tickflow\"})");
        let ready = up.first().and_then(|r| r["value"][1].as_str()) == Some("2")
            && !query("tickflow_checkpoint_age_seconds").is_empty()
            && !query("rate(tickflow_trades_total[1m]) > 0").is_empty()
            && query("count_over_time(tickflow_trades_total[1m])")
                .iter()
                .all(|r| {
                    r["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.)
                        >= 4.
                });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not get samples of both pipelines"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let dashboard = read_json("deploy/grafana/dashboards/pipeline-health.json");
    let mut empty = Vec::new();
    for (name, expr) in dashboard_queries(&dashboard, "expr") {
        if query(&expr).is_empty() {
            empty.push(format!("{name}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "queries without rows:\n{}",
        empty.join("\n")
    );
    // Values, not only series: the Kafka job read trades, its plugins were called.
    let calls = query("sum(tickflow_plugin_calls_total)");
    assert!(
        calls[0]["value"][1]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.
    );
    let stale = query("tickflow_stale_symbols");
    assert_eq!(stale.len(), 1, "one websocket source");
    drop(quickstart);
    drop(forecast);
}
