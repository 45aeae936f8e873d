//! The Kafka sink behind the sink contract.

use std::sync::Arc;

use super::config::KafkaSinkConfig;
use super::kafka_sink;
use crate::base::kafka::{check_brokers, check_topic};
use crate::base::record::{FieldType, Schema};
use crate::sinks::{SinkBuildCx, SinkConfig, SinkOp, SinkPlanCx};
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
        let stream = cx.input?;
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
        }))
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
}

impl SinkOp for KafkaSink {
    fn describe(&self) -> String {
        format!("kafka {} / {}", self.config.brokers, self.config.topic)
    }
    fn staged_folder(&self) -> Option<&str> {
        None
    }
    fn build<'s>(&self, input: AnyStream<'s>, cx: &SinkBuildCx<'_>) {
        kafka_sink(input, cx, self);
    }
}
