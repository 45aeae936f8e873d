//! The Kafka sink behind the sink contract.

use std::sync::Arc;

use super::config::{Delivery, KafkaSinkConfig};
use super::kafka_sink;
use super::transactions::{self, Exactly};
use crate::base::kafka::{check_brokers, check_topic};
use crate::base::record::{FieldType, Schema};
use crate::sinks::{RecoverCx, SinkBuildCx, SinkConfig, SinkOp, SinkPlanCx};
use crate::base::diagnostic::suggest;
use crate::steps::AnyStream;

impl SinkConfig for KafkaSinkConfig {
    fn input(&self) -> &str {
        &self.input
    }
    fn folder(&self) -> Option<&str> {
        None
    }
    fn plan(&self, cx: &mut SinkPlanCx<'_>) -> Option<Arc<dyn SinkOp>> {
        if let Err(e) = check_brokers(&self.brokers) {
            cx.error("brokers", e);
        }
        if let Err(e) = check_topic(&self.topic) {
            cx.error("topic", e);
        }
        if self.delivery_timeout.as_millis() <= 0 {
            cx.error("delivery_timeout", "must be positive");
        }
        let exactly = self.plan_delivery(cx);
        if let Err((field, e)) = crate::base::avro::check_format(self.format, self.registry.as_ref()) {
            cx.error(field, e);
        }
        let stream = cx.input?;
        let avro = match self.format {
            crate::base::avro::Format::Json => None,
            crate::base::avro::Format::Avro => {
                let json = match stream.kind {
                    crate::steps::StreamKind::Trades => Ok(crate::base::avro::TRADE_SCHEMA.to_string()),
                    crate::steps::StreamKind::Rows => {
                        crate::base::avro::row_schema(cx.name, &stream.schema)
                    }
                };
                match json.and_then(|j| {
                    apache_avro::Schema::parse_str(&j)
                        .map(|s| (j, Arc::new(s)))
                        .map_err(|e| format!("the derived Avro schema does not parse: {e}"))
                }) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        cx.error("format", e);
                        None
                    }
                }
            }
        };
        let key = match &self.key {
            None => stream.key,
            Some(key) => match stream.schema.field(key) {
                Some(f) if f.ty == FieldType::Utf8 => stream.schema.index_of(key),
                Some(f) => {
                    cx.error(
                        "key",
                        format!(
                            "the record key must be a string column; `{key}` is {}",
                            f.ty.name()
                        ),
                    );
                    None
                }
                None => {
                    cx.error(
                        "key",
                        format!(
                            "unknown column `{key}`{}",
                            suggest(key, stream.schema.names())
                        ),
                    );
                    None
                }
            },
        };
        Some(Arc::new(KafkaSink {
            name: cx.name.to_string(),
            config: self.clone(),
            schema: stream.schema.clone(),
            key,
            exactly,
            avro,
        }))
    }
}

impl KafkaSinkConfig {
    /// The delivery guarantee: exactly once (with its transactions' settings) or not.
    fn plan_delivery(&self, cx: &mut SinkPlanCx<'_>) -> Option<Exactly> {
        let delivery = self.delivery.unwrap_or(match cx.checkpoints {
            Some(_) => Delivery::ExactlyOnce,
            None => Delivery::AtLeastOnce,
        });
        if delivery == Delivery::AtLeastOnce {
            for (field, set) in [
                ("transaction_timeout", self.transaction_timeout.is_some()),
                ("transactional_id", self.transactional_id.is_some()),
            ] {
                if set {
                    cx.error(
                        field,
                        "only an exactly-once sink has transactions (`delivery: exactly_once`, with `checkpoints:`)",
                    );
                }
            }
            return None;
        }
        let Some(checkpoints) = cx.checkpoints else {
            cx.error(
                "delivery",
                "exactly_once needs `checkpoints:`: each checkpoint commits the records written since \
                 the last one as one Kafka transaction (or use `delivery: at_least_once`)",
            );
            return None;
        };
        let interval = checkpoints.interval.as_millis().max(1);
        let timeout = self.transaction_timeout.map_or_else(
            || (3 * interval).clamp(60_000, transactions::BROKER_DEFAULT_MAX_MS),
            |t| t.as_millis(),
        );
        if timeout < 2 * interval {
            cx.error(
                "transaction_timeout",
                format!(
                    "{} is shorter than two checkpoint intervals ({} each): a transaction stays open \
                     for a whole interval and its checkpoint, and the broker would abort it",
                    crate::base::units::Duration::millis(timeout),
                    checkpoints.interval
                ),
            );
        }
        if self.delivery_timeout.as_millis() > timeout {
            cx.error(
                "delivery_timeout",
                format!(
                    "{} is longer than the transaction timeout ({}): a record must be delivered \
                     while its transaction is open",
                    self.delivery_timeout,
                    crate::base::units::Duration::millis(timeout)
                ),
            );
        }
        let prefix = match &self.transactional_id {
            Some(p) if p.trim().is_empty() => {
                cx.error("transactional_id", "is empty");
                return None;
            }
            Some(p) => p.clone(),
            None => transactions::default_prefix(cx.pipeline, cx.name, &checkpoints.path),
        };
        Some(Exactly {
            prefix,
            timeout_ms: timeout,
        })
    }
}

/// A planned Kafka sink.
#[derive(Debug)]
pub(super) struct KafkaSink {
    pub name: String,
    pub config: KafkaSinkConfig,
    /// The rows it writes (trades keep their own format).
    pub schema: Schema,
    /// The column whose value is the record key.
    pub key: Option<usize>,
    /// Exactly once: the transactions' settings.
    pub exactly: Option<Exactly>,
    /// Avro: the schema (as registered, and parsed).
    pub avro: Option<(String, Arc<apache_avro::Schema>)>,
}

impl SinkOp for KafkaSink {
    fn describe(&self) -> String {
        let delivery = match self.exactly {
            Some(_) => "exactly once",
            None => "at least once",
        };
        let format = match self.avro {
            Some(_) => "avro",
            None => "json",
        };
        format!(
            "kafka {} / {} ({format}, {delivery})",
            self.config.brokers, self.config.topic
        )
    }
    fn staged_folder(&self) -> Option<&str> {
        None
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &SinkBuildCx<'_>) {
        kafka_sink(input, cx, self);
    }
    fn recover(&self, cx: &RecoverCx<'_>) -> anyhow::Result<()> {
        match &self.exactly {
            Some(exactly) => transactions::recover(self, exactly, cx),
            None => Ok(()),
        }
    }
}
