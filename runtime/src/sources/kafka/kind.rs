//! The Kafka source behind the source contract.

use std::sync::Arc;

use anyhow::Context;

use timely::dataflow::{Scope, StreamVec};

use super::config::KafkaSourceConfig;
use super::{OFFSET_BITS, kafka_stream};
use crate::base::avro::{Registry, check_trade_schema, value_subject};
use crate::base::kafka::{check_brokers, check_topic};
use crate::base::record::Trade;
use crate::sources::{OpenCx, SourceBuildCx, SourceConfig, SourceOp};
use crate::base::kinds::Checks;

impl SourceConfig for KafkaSourceConfig {
    fn check(&self, cx: &mut Checks<'_>) {
        if let Err(e) = check_brokers(&self.brokers) {
            cx.error("brokers", e);
        }
        if let Err(e) = check_topic(&self.topic) {
            cx.error("topic", e);
        }
        if self.group_id.trim().is_empty() {
            cx.error("group_id", "must not be empty");
        }
        if self.max_out_of_orderness.as_millis() < 0 {
            cx.error("max_out_of_orderness", "must not be negative");
        }
        if self.idle_timeout.as_millis() <= 0 {
            cx.error("idle_timeout", "must be positive");
        }
        if let Err((field, e)) = crate::base::avro::check_format(self.format, self.registry.as_ref()) {
            cx.error(field, e);
        }
        if let (super::config::StartPosition::Timestamp(from), Some(to)) = (self.start, self.stop_at)
            && to <= from
        {
            cx.error(
                "stop_at",
                format!("{to} is not after the start ({from}): the source would read nothing"),
            );
        }
    }
    fn describe(&self) -> String {
        let mut text = format!(
            "kafka {} / {}, out-of-orderness {}",
            self.brokers, self.topic, self.max_out_of_orderness
        );
        if let super::config::StartPosition::Timestamp(from) = self.start {
            text.push_str(&format!(", from {from}"));
        }
        if let Some(to) = self.stop_at {
            text.push_str(&format!(", until {to}"));
        }
        text
    }
    fn live(&self) -> bool {
        false
    }
    fn max_out_of_orderness_ms(&self) -> i64 {
        self.max_out_of_orderness.as_millis()
    }
    fn max_future_ms(&self) -> i64 {
        self.max_future.as_millis()
    }
    fn position_of(&self, seq: u64) -> u64 {
        seq & ((1 << OFFSET_BITS) - 1)
    }
    fn rewinds(&self) -> Option<String> {
        Some(format!("topic {}", self.topic))
    }
    fn open(&self, name: &str, cx: &OpenCx<'_>) -> anyhow::Result<Arc<dyn SourceOp>> {
        let registry = match (&self.registry, self.format) {
            (Some(r), crate::base::avro::Format::Avro) => {
                let registry = Registry::new(r, cx.rt.clone())?;
                // The writer's schema as it is now must give a trade: checked before reading
                // (a later incompatible one dead-letters its records).
                let subject = value_subject(&self.topic);
                if let Some((id, schema)) = registry
                    .latest(&subject)
                    .with_context(|| format!("source `{name}`"))?
                {
                    check_trade_schema(&schema).map_err(|e| {
                        anyhow::anyhow!(
                            "source `{name}`: schema {id} of subject `{subject}` (the topic's latest) cannot be read as trades: {e}"
                        )
                    })?;
                }
                Some(registry)
            }
            _ => None,
        };
        Ok(Arc::new(Kafka {
            config: self.clone(),
            registry,
        }))
    }
}

/// A Kafka source: each worker opens its own consumer when its operator is built.
struct Kafka {
    config: KafkaSourceConfig,
    /// `format: avro`: where writers' schemas come from.
    registry: Option<Registry>,
}

impl SourceOp for Kafka {
    fn build<'s>(&self, scope: Scope<'s, u64>, cx: &SourceBuildCx<'_>) -> StreamVec<'s, u64, Trade> {
        kafka_stream(scope, cx, &self.config, self.registry.clone())
    }
}

impl crate::worker::context::OnControl for Kafka {}
