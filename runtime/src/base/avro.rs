//! Avro records in the Confluent wire format (a zero byte, the schema's registry id as 4 bytes
//! big-endian, then the Avro binary datum), and a client of a Confluent-compatible schema
//! registry (Confluent's, Apicurio's `/apis/ccompat/v7`, Redpanda's, Karapace).
//!
//! Subjects follow Confluent's default naming (`TopicNameStrategy`): the value schema of topic
//! `T` is registered under `T-value`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use apache_avro::Schema as AvroSchema;
use apache_avro::types::Value as Avro;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::base::record::{FieldType, Row, Schema, Trade, Value};
use crate::base::reject::RejectReason;

/// How a Kafka record's value is written.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per record.
    #[default]
    Json,
    /// Avro in the Confluent wire format, its schema in a registry (`registry:`).
    Avro,
}

/// A Confluent-compatible schema registry.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Its base URL, e.g. `http://127.0.0.1:8081` (Confluent) or
    /// `http://127.0.0.1:8081/apis/ccompat/v7` (Apicurio).
    pub url: String,
}

/// `format` and `registry` agree: Avro needs a registry, and a registry is only for Avro.
/// Otherwise the field to blame and why.
pub fn check_format(
    format: Format,
    registry: Option<&RegistryConfig>,
) -> std::result::Result<(), (&'static str, String)> {
    match (format, registry) {
        (Format::Avro, None) => Err((
            "registry",
            "`format: avro` needs a schema registry: `registry: { url: http://127.0.0.1:8081 }`"
                .into(),
        )),
        (Format::Json, Some(_)) => Err((
            "registry",
            "a registry is only used with `format: avro`".into(),
        )),
        (_, Some(r)) if !(r.url.starts_with("http://") || r.url.starts_with("https://")) => Err((
            "registry",
            format!("`{}` is not an http:// or https:// URL", r.url),
        )),
        _ => Ok(()),
    }
}

/// Decodes a trade record in the Confluent wire format with its writer's schema, then
/// validates it like any trade object. Anything wrong is a `malformed_record` in words.
pub fn decode_trade(
    registry: &Registry,
    bytes: &[u8],
) -> std::result::Result<crate::sources::finnhub::protocol::ValidTrade, (RejectReason, String)> {
    let malformed = |d: String| (RejectReason::MalformedRecord, d);
    let (id, mut datum) = split(bytes).map_err(malformed)?;
    let schema = registry.trade_schema(id).map_err(malformed)?;
    let value = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .and_then(|r| r.read_value(&mut datum))
        .map_err(|e| malformed(format!("does not decode with schema {id}: {e}")))?;
    if !datum.is_empty() {
        return Err(malformed(format!(
            "{} bytes after the record that schema {id} describes",
            datum.len()
        )));
    }
    let Avro::Record(fields) = value else {
        return Err(malformed(format!("schema {id} does not describe a record")));
    };
    use crate::sources::finnhub::protocol::{TypedField, validate_typed};
    fn typed(v: &Avro) -> TypedField<'_> {
        match v {
            Avro::Union(_, inner) => typed(inner),
            Avro::Null => TypedField::Null,
            Avro::String(s) => TypedField::Str(s),
            Avro::Double(x) => TypedField::Float(*x),
            Avro::Float(x) => TypedField::Float(*x as f64),
            Avro::Long(i) | Avro::TimestampMillis(i) => TypedField::Int(*i),
            Avro::Int(i) => TypedField::Int(*i as i64),
            Avro::Array(_) => TypedField::Other("a list"),
            Avro::Record(_) | Avro::Map(_) => TypedField::Other("an object"),
            Avro::Boolean(_) => TypedField::Other("a boolean"),
            _ => TypedField::Other("another Avro type"),
        }
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map_or(TypedField::Absent, |(_, v)| typed(v))
    };
    let codes: Option<Vec<TypedField<'_>>> =
        fields
            .iter()
            .find(|(n, _)| n == "c")
            .and_then(|(_, v)| match v {
                Avro::Union(_, inner) => match inner.as_ref() {
                    Avro::Array(items) => Some(items.iter().map(typed).collect()),
                    _ => None,
                },
                Avro::Array(items) => Some(items.iter().map(typed).collect()),
                _ => None,
            });
    validate_typed(
        field("s"),
        field("p"),
        field("t"),
        field("v"),
        codes.as_deref(),
    )
}

/// The subject of a topic's value schema.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// The Avro schema trades are written with (the Finnhub trade object's fields; `c`, the
/// condition codes, a list of strings).
pub const TRADE_SCHEMA: &str = r#"{"type":"record","name":"Trade","namespace":"tickflow","fields":[{"name":"s","type":"string"},{"name":"p","type":"double"},{"name":"t","type":"long"},{"name":"v","type":"double"},{"name":"c","type":{"type":"array","items":"string"},"default":[]}]}"#;

/// The Avro schema of rows of `schema`: a record named `name`, one field per column (NULL-able
/// columns as a union with `null`; timestamps as `long` with logical type `timestamp-millis`).
pub fn row_schema(name: &str, schema: &Schema) -> std::result::Result<String, String> {
    let valid = |n: &str| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let record: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let record = if valid(&record) {
        record
    } else {
        format!("_{record}")
    };
    let mut fields = Vec::new();
    for f in &schema.fields {
        if !valid(&f.name) {
            return Err(format!(
                "column `{}` is not a valid Avro field name (letters, digits and `_`, not starting with a digit): rename it with a `select` step",
                f.name
            ));
        }
        let ty = match f.ty {
            FieldType::Utf8 => serde_json::json!("string"),
            FieldType::Float64 => serde_json::json!("double"),
            FieldType::Int64 => serde_json::json!("long"),
            FieldType::Timestamp => {
                serde_json::json!({"type": "long", "logicalType": "timestamp-millis"})
            }
            FieldType::Utf8List => serde_json::json!({"type": "array", "items": "string"}),
            FieldType::Boolean => serde_json::json!("boolean"),
        };
        fields.push(if f.nullable {
            serde_json::json!({"name": f.name, "type": ["null", ty], "default": null})
        } else {
            serde_json::json!({"name": f.name, "type": ty})
        });
    }
    Ok(serde_json::json!({
        "type": "record",
        "name": record,
        "namespace": "tickflow",
        "fields": fields,
    })
    .to_string())
}

/// A trade as an Avro value of [`TRADE_SCHEMA`].
pub fn trade_value(t: &Trade) -> Avro {
    let codes = if t.conditions.is_empty() {
        Vec::new()
    } else {
        t.conditions
            .split(',')
            .map(|c| Avro::String(c.to_string()))
            .collect()
    };
    Avro::Record(vec![
        ("s".into(), Avro::String(t.symbol.to_string())),
        ("p".into(), Avro::Double(t.price)),
        ("t".into(), Avro::Long(t.ts)),
        ("v".into(), Avro::Double(t.volume)),
        ("c".into(), Avro::Array(codes)),
    ])
}

/// A row as an Avro value of [`row_schema`].
pub fn row_value(schema: &Schema, row: &Row) -> Avro {
    let fields = schema
        .fields
        .iter()
        .zip(row.iter())
        .map(|(f, v)| {
            let value = match v {
                Value::Null => Avro::Null,
                Value::Str(s) => Avro::String(s.to_string()),
                Value::F64(x) => Avro::Double(*x),
                Value::I64(x) => Avro::Long(*x),
                Value::Ts(x) => Avro::TimestampMillis(*x),
                Value::Bool(b) => Avro::Boolean(*b),
                Value::StrList(l) => {
                    Avro::Array(l.iter().map(|s| Avro::String(s.to_string())).collect())
                }
            };
            let value = match (f.nullable, value) {
                (true, Avro::Null) => Avro::Union(0, Box::new(Avro::Null)),
                (true, v) => Avro::Union(1, Box::new(v)),
                (false, v) => v,
            };
            (f.name.clone(), value)
        })
        .collect();
    Avro::Record(fields)
}

/// Appends `value` in the Confluent wire format with schema `id`.
pub fn encode(schema: &AvroSchema, id: u32, value: &Avro, out: &mut Vec<u8>) -> Result<()> {
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()?
        .write_value_ref(out, value)?;
    Ok(())
}

/// The schema id and the datum of a record in the Confluent wire format.
pub fn split(bytes: &[u8]) -> std::result::Result<(u32, &[u8]), String> {
    match bytes {
        [0, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [] => Err("an empty record, not Avro in the Confluent wire format".into()),
        [m, ..] if *m != 0 => Err(format!(
            "not Avro in the Confluent wire format (its first byte is {m}, not the magic byte 0)"
        )),
        _ => Err("too short for Avro in the Confluent wire format".into()),
    }
}

/// Whether a writer's schema gives what a trade needs: a record with `s` (string), `p` and `v`
/// (numbers), `t` (long or int, ms since the epoch); `c` (strings, or NULL) optional. Named in
/// words otherwise.
pub fn check_trade_schema(schema: &AvroSchema) -> std::result::Result<(), String> {
    let AvroSchema::Record(record) = schema else {
        return Err(format!(
            "a trade must be an Avro record, the writer's schema is {}",
            kind(schema)
        ));
    };
    let field = |name: &str| {
        record
            .fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| strip_null(&f.schema))
    };
    let number = |s: &AvroSchema| {
        matches!(
            s,
            AvroSchema::Double | AvroSchema::Float | AvroSchema::Long | AvroSchema::Int
        )
    };
    let checks: [(&str, &str, fn(&AvroSchema) -> bool); 4] = [
        ("s", "a string (the symbol)", |s| {
            matches!(s, AvroSchema::String)
        }),
        ("p", "a number (the price)", |_| true),
        ("t", "a long (ms since the epoch)", |s| {
            matches!(
                s,
                AvroSchema::Long | AvroSchema::Int | AvroSchema::TimestampMillis
            )
        }),
        ("v", "a number (the volume)", |_| true),
    ];
    for (name, what, ok) in checks {
        let Some(s) = field(name) else {
            return Err(format!(
                "the writer's schema `{}` has no field `{name}` ({what})",
                record.name.fullname(None)
            ));
        };
        let ok = if matches!(name, "p" | "v") {
            number(s)
        } else {
            ok(s)
        };
        if !ok {
            return Err(format!(
                "field `{name}` of the writer's schema `{}` is {}, but must be {what}",
                record.name.fullname(None),
                kind(s)
            ));
        }
    }
    if let Some(c) = field("c")
        && !matches!(c, AvroSchema::Array(a) if matches!(strip_null(&a.items), AvroSchema::String))
    {
        return Err(format!(
            "field `c` of the writer's schema `{}` is {}, but must be a list of strings (the condition codes)",
            record.name.fullname(None),
            kind(c)
        ));
    }
    Ok(())
}

/// `T` of a union `["null", T]`.
fn strip_null(s: &AvroSchema) -> &AvroSchema {
    match s {
        AvroSchema::Union(u) => u
            .variants()
            .iter()
            .find(|v| !matches!(v, AvroSchema::Null))
            .unwrap_or(s),
        _ => s,
    }
}

fn kind(s: &AvroSchema) -> String {
    let k = match s {
        AvroSchema::Null => "null",
        AvroSchema::Boolean => "a boolean",
        AvroSchema::Int => "an int",
        AvroSchema::Long => "a long",
        AvroSchema::Float => "a float",
        AvroSchema::Double => "a double",
        AvroSchema::Bytes => "bytes",
        AvroSchema::String => "a string",
        AvroSchema::Array(_) => "an array",
        AvroSchema::Map(_) => "a map",
        AvroSchema::Union(_) => "a union",
        AvroSchema::Record(_) => "a record",
        AvroSchema::Enum(_) => "an enum",
        AvroSchema::Fixed(_) => "fixed bytes",
        _ => "a logical type",
    };
    k.to_string()
}

/// A decoded Avro datum as a JSON value (so that it is validated like any trade object).
pub fn to_json(value: Avro) -> std::result::Result<serde_json::Value, String> {
    // NB: unions are unwrapped by the conversion; timestamps become numbers.
    serde_json::Value::try_from(value).map_err(|e| e.to_string())
}

/// `url` without credentials (`https://user:secret@host` → `https://***@host`): what messages
/// show.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme && !url[scheme + 3..at].contains('/') => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// A schema registry client: schemas are fetched once per id and kept.
#[derive(Clone)]
pub struct Registry {
    url: String,
    client: reqwest::Client,
    rt: tokio::runtime::Handle,
    schemas: Arc<Mutex<HashMap<u32, Arc<AvroSchema>>>>,
    /// Trade sources: each id's schema as checked (or why it cannot give trades).
    checked: Arc<Mutex<HashMap<u32, std::result::Result<Arc<AvroSchema>, String>>>>,
}

const ACCEPT: &str = "application/vnd.schemaregistry.v1+json";

impl Registry {
    pub fn new(config: &RegistryConfig, rt: tokio::runtime::Handle) -> Result<Self> {
        // https:// registries: the TLS provider every HTTP client of ours uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("creating the schema registry's HTTP client")?;
        Ok(Registry {
            url: config.url.trim_end_matches('/').to_string(),
            client,
            rt,
            schemas: Arc::default(),
            checked: Arc::default(),
        })
    }

    /// GET or POST `path`: the status and the JSON body.
    fn call(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value)> {
        let url = format!("{}{path}", self.url);
        let shown = format!("{}{path}", redact(&self.url));
        let request = match &body {
            Some(b) => self
                .client
                .post(&url)
                .header("Content-Type", ACCEPT)
                .body(b.to_string()),
            None => self.client.get(&url),
        }
        .header("Accept", ACCEPT);
        let (status, bytes) = self
            .rt
            .block_on(async {
                let r = request.send().await?;
                let status = r.status().as_u16();
                Ok::<_, reqwest::Error>((status, r.bytes().await?))
            })
            .map_err(|e| anyhow::anyhow!("{}", redact(&e.without_url().to_string())))
            .with_context(|| format!("asking the schema registry at {shown}"))?;
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        Ok((status, json))
    }

    fn message(json: &serde_json::Value) -> String {
        json.get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| json.to_string())
    }

    /// Registers `schema` (Avro, as JSON) under `subject`; returns its id. A schema the
    /// subject's compatibility rule refuses is an error in the registry's words.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" });
        let (status, json) = self.call(&format!("/subjects/{subject}/versions"), Some(body))?;
        match (status, json.get("id").and_then(|i| i.as_u64())) {
            (200..=299, Some(id)) => Ok(id as u32),
            (409, _) => bail!(
                "the schema registry refused the schema for subject `{subject}` as incompatible with the versions before it: {}",
                Self::message(&json)
            ),
            _ => bail!(
                "the schema registry refused the schema for subject `{subject}` (HTTP {status}): {}",
                Self::message(&json)
            ),
        }
    }

    /// The schema with `id`, parsed (`None`: the registry has no such id).
    pub fn schema(&self, id: u32) -> Result<Option<Arc<AvroSchema>>> {
        if let Some(s) = self
            .schemas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(Some(Arc::clone(s)));
        }
        let (status, json) = self.call(&format!("/schemas/ids/{id}"), None)?;
        if status == 404 {
            return Ok(None);
        }
        let Some(text) = json.get("schema").and_then(|s| s.as_str()) else {
            bail!(
                "the schema registry answered HTTP {status} for schema {id}: {}",
                Self::message(&json)
            );
        };
        let schema = Arc::new(
            AvroSchema::parse_str(text).with_context(|| format!("schema {id} of the registry"))?,
        );
        self.schemas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::clone(&schema));
        Ok(Some(schema))
    }

    /// The writer's schema `id` of trade records, checked against a trade's fields once per
    /// id (not per record); an unknown or unfit schema is the reason, in words.
    pub fn trade_schema(&self, id: u32) -> std::result::Result<Arc<AvroSchema>, String> {
        if let Some(checked) = self
            .checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return checked.clone();
        }
        let checked = match self.schema(id) {
            Ok(Some(s)) => check_trade_schema(&s)
                .map(|()| s)
                .map_err(|e| format!("schema {id}: {e}")),
            Ok(None) => Err(format!("schema id {id} is unknown to the registry")),
            // Not kept: the registry may answer next time.
            Err(e) => return Err(format!("schema id {id}: {e:#}")),
        };
        self.checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, checked.clone());
        checked
    }

    /// The latest schema registered under `subject` and its id (`None`: no version yet).
    pub fn latest(&self, subject: &str) -> Result<Option<(u32, Arc<AvroSchema>)>> {
        let (status, json) = self.call(&format!("/subjects/{subject}/versions/latest"), None)?;
        if status == 404 {
            return Ok(None);
        }
        let id = json.get("id").and_then(|i| i.as_u64());
        let Some(id) = id else {
            bail!(
                "the schema registry answered HTTP {status} for subject `{subject}`: {}",
                Self::message(&json)
            );
        };
        Ok(self.schema(id as u32)?.map(|s| (id as u32, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_credentials_never_show() {
        assert_eq!(
            redact("https://u:secret@reg:8081/x"),
            "https://***@reg:8081/x"
        );
        assert_eq!(
            redact("http://127.0.0.1:8081/apis/ccompat/v7"),
            "http://127.0.0.1:8081/apis/ccompat/v7"
        );
        assert_eq!(redact("http://host/path@x"), "http://host/path@x");
    }

    /// Rows become Avro records that decode back to the same values with the derived schema.
    #[test]
    fn rows_round_trip_through_the_derived_schema() {
        use crate::base::record::Field;
        let schema = Schema {
            fields: vec![
                Field::new("symbol", FieldType::Utf8, false),
                Field::new("window_start", FieldType::Timestamp, false),
                Field::new("close", FieldType::Float64, true),
                Field::new("trades", FieldType::Int64, false),
                Field::new("up", FieldType::Boolean, true),
            ],
        };
        let json = row_schema("bars out", &schema).unwrap();
        let avro = AvroSchema::parse_str(&json).unwrap();
        let row: Row = vec![
            Value::Str("AAPL".into()),
            Value::Ts(1_764_000_000_000),
            Value::Null,
            Value::I64(7),
            Value::Bool(true),
        ];
        let mut out = Vec::new();
        encode(&avro, 42, &row_value(&schema, &row), &mut out).unwrap();
        let (id, mut datum) = split(&out).unwrap();
        assert_eq!(id, 42);
        let back = apache_avro::reader::datum::GenericDatumReader::builder(&avro)
            .build()
            .unwrap()
            .read_value(&mut datum)
            .unwrap();
        let json = to_json(back).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"symbol": "AAPL", "window_start": 1_764_000_000_000i64, "close": null, "trades": 7, "up": true})
        );
        assert!(
            row_schema(
                "x",
                &Schema {
                    fields: vec![Field::new("9lives", FieldType::Int64, false)]
                }
            )
            .is_err()
        );
    }
}
