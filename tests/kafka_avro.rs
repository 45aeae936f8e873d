use std::process::Command;

use crate::kafka::{self, brokers, create_topic};
use crate::kafka_exactly_once::assert_topic_bars_exactly_once;
use crate::support::{bin, read_dead_letters, read_parquet_dir, repo};

/// The registry `scripts/test` starts (`deploy/local/apicurio start`), or None outside CI.
pub fn registry() -> Option<String> {
    let url = std::env::var("REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into());
    let up = Command::new("curl")
        .args(["-sf", &format!("{url}/subjects")])
        .output()
        .is_ok_and(|o| o.status.success());
    if up {
        return Some(url);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no schema registry at {url}: scripts/test starts one (deploy/local/apicurio start)"
    );
    eprintln!("skipping: no schema registry at {url} (run deploy/local/apicurio start)");
    None
}

/// Runs tests/sql/avro_kafka.py (confluent-kafka's Avro serializer and deserializer).
fn avro_kafka(args: &[&str]) -> String {
    let python = crate::sql::python().expect("Python with confluent-kafka (scripts/test)");
    crate::sql::run_script(&python, "avro_kafka.py", args)
}

fn dump(brokers: &str, registry: &str, topic: &str) -> Vec<serde_json::Value> {
    avro_kafka(&["dump", brokers, registry, topic, "read_committed"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Confluent's own Avro serializer writes trades (with disorder, NULL condition codes, and
/// records that are not Avro, name an unknown schema id, or hold a negative price); tickflow
/// reads them into bars equal to the oracle, dead-letters the broken ones, and writes the bars
/// as Avro, exactly once, which Confluent's deserializer decodes. Then a schema the registry
/// refuses as incompatible stops a run with the registry's words.
#[test]
fn avro_trades_from_confluents_serializer_become_avro_bars_its_deserializer_reads() {
    let Some(brokers) = brokers() else { return };
    let Some(registry) = registry() else { return };
    let trades = create_topic(&brokers, 3);
    avro_kafka(&["produce", &brokers, &registry, &trades, "30000", "5"]);
    // The oracle over the records as the independent client decodes them.
    let records: Vec<(i32, i64, Vec<u8>)> = dump(&brokers, &registry, &trades)
        .iter()
        .map(|r| {
            let value = r["value"]
                .as_str()
                .unwrap_or("not avro")
                .as_bytes()
                .to_vec();
            (
                r["partition"].as_i64().unwrap() as i32,
                r["offset"].as_i64().unwrap(),
                value,
            )
        })
        .collect();
    assert_eq!(records.len(), 30_000);
    let (expected, _, rejected) = kafka::kafka_oracle(&records, 2_000);
    assert!(expected.len() > 50, "{}", expected.len());
    assert!(rejected > 0);

    for workers in ["1", "2"] {
        let bars = create_topic(&brokers, 2);
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(bin())
            .args([
                "run",
                "specs/examples/market-bars-avro.yaml",
                "--bounded",
                "--workers",
                workers,
            ])
            .current_dir(repo())
            .env("KAFKA_BROKERS", &brokers)
            .env("REGISTRY_URL", &registry)
            .env("TRADES_TOPIC", &trades)
            .env("BARS_TOPIC", &bars)
            .env("OUT_URL", dir.path())
            .env("CHECKPOINT_INTERVAL", "500ms")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let (_, rows) = read_parquet_dir(&dir.path().join("bars"));
        kafka::assert_bars_equal(&rows, &expected, &format!("{workers} worker(s): Parquet"));
        assert_topic_bars_exactly_once(
            &dump(&brokers, &registry, &bars),
            &expected,
            &format!("{workers} worker(s): Avro bars"),
        );
        // The broken records, each dead-lettered with its reason.
        let (_, dead) = read_dead_letters(&dir.path().join("dead_letters"));
        let details: Vec<String> = dead.iter().map(|d| d.to_string()).collect();
        for want in [
            "not the magic byte 0",
            "schema id 999999 is unknown to the registry",
            "`p` (price) must be a positive finite number",
        ] {
            assert!(
                details.iter().any(|d| d.contains(want)),
                "{workers} worker(s): no dead letter with {want:?} in {details:?}"
            );
        }
    }

    // A subject whose compatibility rule refuses the bars' schema: the run stops, saying so.
    let bars = create_topic(&brokers, 1);
    let subject = format!("{bars}-value");
    for (method, path, body) in [
        ("PUT", format!("/config/{subject}"), r#"{"compatibility":"BACKWARD"}"#.to_string()),
        (
            "POST",
            format!("/subjects/{subject}/versions"),
            serde_json::json!({"schema": r#"{"type":"record","name":"X","fields":[{"name":"q","type":"string"}]}"#}).to_string(),
        ),
    ] {
        let out = Command::new("curl")
            .args(["-sf", "-X", method, "-H", "Content-Type: application/vnd.schemaregistry.v1+json"])
            .arg(format!("{registry}{path}"))
            .args(["-d", &body])
            .output()
            .unwrap();
        assert!(out.status.success(), "{path}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["run", "specs/examples/market-bars-avro.yaml", "--bounded"])
        .current_dir(repo())
        .env("KAFKA_BROKERS", &brokers)
        .env("REGISTRY_URL", &registry)
        .env("TRADES_TOPIC", &trades)
        .env("BARS_TOPIC", &bars)
        .env("OUT_URL", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "sink `bars_topic`: the schema registry refused the schema for subject `{subject}` as incompatible"
        )),
        "{stderr}"
    );
}

/// A topic whose writers' schema cannot give trades is refused before anything is read, naming
/// the field; `format: avro` without a registry is refused by `validate`.
#[test]
fn a_writer_schema_without_trade_fields_is_refused_at_start() {
    let Some(brokers) = brokers() else { return };
    let Some(registry) = registry() else { return };
    let topic = create_topic(&brokers, 1);
    let body = serde_json::json!({"schema": r#"{"type":"record","name":"Quote","fields":[{"name":"s","type":"string"},{"name":"p","type":"string"},{"name":"t","type":"long"},{"name":"v","type":"double"}]}"#}).to_string();
    let out = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/vnd.schemaregistry.v1+json",
        ])
        .arg(format!("{registry}/subjects/{topic}-value/versions"))
        .args(["-d", &body])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = Command::new(bin());
        cmd.args(["run", "specs/examples/market-bars-avro.yaml", "--bounded"])
            .current_dir(repo())
            .env("KAFKA_BROKERS", &brokers)
            .env("REGISTRY_URL", &registry)
            .env("TRADES_TOPIC", &topic)
            .env("BARS_TOPIC", format!("{topic}-bars"))
            .env("OUT_URL", dir.path());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "field `p` of the writer's schema `Quote` is a string, but must be a number (the price)"
        ),
        "{stderr}"
    );
    let spec = dir.path().join("no-registry.yaml");
    std::fs::write(
        &spec,
        format!("name: t\nsources:\n  trades: {{ type: kafka, brokers: \"{brokers}\", topic: {topic}, format: avro }}\nsinks:\n  out: {{ type: parquet, input: trades, path: {} }}\n", dir.path().join("o").display()),
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("validate")
        .arg(&spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("`format: avro` needs a schema registry"),
        "{stderr}"
    );
}
