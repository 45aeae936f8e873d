//! The Kafka sink operator: each worker produces the records it holds (trades, or rows as JSON
//! objects) with an idempotent
//! producer; failed deliveries (after librdkafka's retries) become dead letters; at the end of
//! the input everything is flushed.

pub mod config;
mod kind;

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;

use crate::checkpoint::output::{OutputProtocol, TwoPhase};
use crate::checkpoint::{PendingFile, Role};
use crate::base::record::write_trade_json;
use crate::base::record::{Row, Schema, Trade, Value};
use crate::sinks::SinkBuildCx;
use crate::output::dead_letter::DeadLetter;
use crate::base::reject::RejectReason;
use crate::steps::AnyStream;

/// Delivery reports, filled by librdkafka's callback on the polling (worker) thread.
#[derive(Default)]
struct Reports {
    delivered: AtomicU64,
    failed: Mutex<Vec<(String, String)>>, // (payload, error)
}

struct SinkContext(Arc<Reports>);

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, msg)) => {
                let payload = msg
                    .payload()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default();
                self.0
                    .failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((payload, e.to_string()));
            }
        }
    }
}

/// How records of one shape become Kafka records.
trait Encode: 'static {
    type R: Clone + 'static;
    /// Writes the value into `buf`; returns the record key.
    fn encode<'a>(&self, r: &'a Self::R, buf: &mut Vec<u8>) -> Option<&'a str>;
}

/// Trades as the compact, key-sorted Finnhub trade object; key = symbol.
struct TradeJson;

impl Encode for TradeJson {
    type R = Trade;
    fn encode<'a>(&self, t: &'a Trade, buf: &mut Vec<u8>) -> Option<&'a str> {
        write_trade_json(t, buf);
        Some(t.symbol.as_str())
    }
}

/// Rows as one compact JSON object each (`{"column": value, ...}`, timestamps RFC 3339 UTC);
/// key = the key column (none when the stream has none).
struct RowJson {
    schema: Schema,
    key: Option<usize>,
}

impl Encode for RowJson {
    type R = Row;
    fn encode<'a>(&self, r: &'a Row, buf: &mut Vec<u8>) -> Option<&'a str> {
        crate::output::rolling::write_json_row(&self.schema, r, buf);
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        match self.key.map(|k| &r[k]) {
            Some(Value::Str(s)) => Some(s.as_str()),
            _ => None,
        }
    }
}

/// The producer in the exactly-once protocol of outputs: at-least-once, as a checkpoint's cut
/// (and the end) waits until every record sent before it is delivered; a restart may send some
/// records again, never lose one.
struct Delivered<'a> {
    producer: &'a BaseProducer<SinkContext>,
    limit: Duration,
}

impl TwoPhase for Delivered<'_> {
    fn precommit(&mut self) -> anyhow::Result<Vec<PendingFile>> {
        self.publish()?;
        Ok(Vec::new())
    }
    fn publish(&mut self) -> anyhow::Result<()> {
        self.producer
            .flush(self.limit)
            .map_err(|e| anyhow::anyhow!("flushing to Kafka: {e}"))
    }
}

/// The Kafka sink for a stream of either shape.
fn kafka_sink(stream: AnyStream<'_>, cx: &SinkBuildCx<'_>, node: &kind::KafkaSink) {
    match stream {
        AnyStream::Trades(s) => kafka_sink_with(s, TradeJson, cx, node),
        AnyStream::Rows(s) => {
            let enc = RowJson {
                schema: node.schema.clone(),
                key: node.key,
            };
            kafka_sink_with(s, enc, cx, node)
        }
    }
}

fn kafka_sink_with<'scope, E: Encode>(
    stream: StreamVec<'scope, u64, E::R>,
    enc: E,
    cx: &SinkBuildCx<'_>,
    node: &kind::KafkaSink,
) {
    let (index, worker, dead) = (cx.index, cx.worker, Rc::clone(cx.dead));
    let cfg = &node.config;
    let cfg = cfg.clone();
    let ctx = Arc::clone(cx.ctx);
    let scope = stream.scope();
    let reports = Arc::new(Reports::default());
    let producer: Option<BaseProducer<SinkContext>> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", cfg.compression.librdkafka_name())
        .set("linger.ms", cfg.linger.as_millis().to_string())
        .set(
            "message.timeout.ms",
            cfg.delivery_timeout.as_millis().to_string(),
        )
        .set("queue.buffering.max.messages", "200000")
        .create_with_context(SinkContext(Arc::clone(&reports)))
        .map_err(|e| {
            ctx.fail(format!(
                "sink `{}`: cannot create a Kafka producer for {}: {e}",
                node.name, cfg.brokers
            ))
        })
        .ok();
    let name = node.name.clone();
    let step_stats = ctx.metrics.step(&name, "sink");
    let mut cp = OutputProtocol::new(
        ctx.checkpoint
            .as_ref()
            .map(|c| c.participant(Role::Sink, index, worker, Some(cx.input_node))),
    );
    // Everything sent is delivered within this (after which librdkafka reports the remaining
    // records as failed).
    let limit = Duration::from_millis(cfg.delivery_timeout.as_millis().max(0) as u64 + 5_000);
    let _: StreamVec<'scope, u64, ()> = stream
        .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Pipeline,
            &format!("Kafka({name})"),
            move |_cap, info| {
                let activator = scope.activator_for(info.address);
                let mut done = false;
                let mut sent = 0u64;
                let mut last_delivered = 0u64;
                let mut payload: Vec<u8> = Vec::with_capacity(128);
                move |(input, frontier), _output| {
                    let Some(producer) = producer.as_ref() else {
                        input.for_each(|_, _| {});
                        cp.abandon();
                        return;
                    };
                    input.for_each(|_cap, data| {
                        cp.received(data.len());
                        for t in data.iter() {
                            // One reused buffer; librdkafka copies the payload on send.
                            payload.clear();
                            let key = enc.encode(t, &mut payload);
                            let payload = payload.as_slice();
                            let mut record =
                                BaseRecord::<str, [u8]>::to(&cfg.topic).payload(payload);
                            if let Some(key) = key {
                                record = record.key(key);
                            }
                            loop {
                                match producer.send(record) {
                                    Ok(()) => break,
                                    Err((
                                        rdkafka::error::KafkaError::MessageProduction(
                                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                                        ),
                                        r,
                                    )) => {
                                        // Backpressure: serve delivery reports until there is room.
                                        producer.poll(Duration::from_millis(50));
                                        record = r;
                                    }
                                    Err((e, _)) => {
                                        dead.borrow_mut().push(DeadLetter {
                                            source: &name,
                                            reason: RejectReason::DeliveryFailed,
                                            detail: e.to_string(),
                                            raw: String::from_utf8_lossy(payload).into_owned(),
                                            line: 0,
                                        });
                                        break;
                                    }
                                }
                            }
                            sent += 1;
                        }
                    });
                    producer.poll(Duration::ZERO);
                    let mut delivered = Delivered { producer, limit };
                    if frontier.is_empty() && !done {
                        done = true;
                        if let Err(e) = cp.end(&mut delivered) {
                            ctx.fail(format!("sink `{name}`: {e:#}"));
                            cp.abandon();
                        }
                        producer.poll(Duration::ZERO);
                    } else if !done {
                        match cp.turn(&mut delivered) {
                            Ok(Some(poll)) => activator.activate_after(poll),
                            Ok(None) => {}
                            Err(e) => {
                                ctx.fail(format!("sink `{name}`: {e:#}"));
                                cp.abandon();
                            }
                        }
                    }
                    let failed: Vec<(String, String)> = std::mem::take(
                        &mut *reports.failed.lock().unwrap_or_else(|e| e.into_inner()),
                    );
                    for (payload, error) in failed {
                        dead.borrow_mut().push(DeadLetter {
                            source: &name,
                            reason: RejectReason::DeliveryFailed,
                            detail: error,
                            raw: payload,
                            line: 0,
                        });
                    }
                    let delivered = reports.delivered.load(Ordering::Relaxed);
                    step_stats
                        .records_in
                        .fetch_add(delivered - last_delivered, Ordering::Relaxed);
                    ctx.metrics
                        .rows_written
                        .fetch_add(delivered - last_delivered, Ordering::Relaxed);
                    last_delivered = delivered;
                    if !done && producer.in_flight_count() > 0 {
                        activator.activate_after(Duration::from_millis(100));
                    }
                    let _ = sent;
                }
            },
        );
}
