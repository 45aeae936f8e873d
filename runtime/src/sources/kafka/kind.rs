//! The Kafka source behind the source contract.

use std::sync::Arc;

use timely::dataflow::{Scope, StreamVec};

use super::config::KafkaSourceConfig;
use super::{OFFSET_BITS, kafka_stream};
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
    fn open(&self, _name: &str, _cx: &OpenCx<'_>) -> anyhow::Result<Arc<dyn SourceOp>> {
        Ok(Arc::new(Kafka {
            config: self.clone(),
        }))
    }
}

/// A Kafka source: each worker opens its own consumer when its operator is built.
struct Kafka {
    config: KafkaSourceConfig,
}

impl SourceOp for Kafka {
    fn build<'s>(&self, scope: Scope<'s, u64>, cx: &SourceBuildCx<'_>) -> StreamVec<'s, u64, Trade> {
        kafka_stream(scope, cx, &self.config)
    }
}

impl crate::worker::context::OnControl for Kafka {}
