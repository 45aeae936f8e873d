//! The Kafka sink operator: each worker produces the records it holds (trades, or rows as JSON
//! objects). At least once: an idempotent producer; failed deliveries (after librdkafka's
//! retries) become dead letters; at the end of the input everything is flushed. Exactly once
//! (with checkpoints): a transactional producer, one transaction per checkpoint
//! ([`transactions`]).

pub mod config;
mod kind;
mod transactions;

use std::collections::BTreeMap;
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

use crate::checkpoint::Role;
use crate::checkpoint::output::{OutputProtocol, Precommit, TwoPhase};
use crate::base::avro;
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
    /// Exactly once: failed deliveries (the transaction cannot commit), and the offsets
    /// delivered since the last checkpoint, by partition (first, last).
    failures: AtomicU64,
    ranges: Option<Mutex<BTreeMap<i32, (i64, i64)>>>,
}

struct SinkContext(Arc<Reports>);

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(msg) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(ranges) = &self.0.ranges {
                    let (p, o) = (msg.partition(), msg.offset());
                    ranges
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(p)
                        .and_modify(|(first, last)| {
                            *first = (*first).min(o);
                            *last = (*last).max(o);
                        })
                        .or_insert((o, o));
                }
            }
            Err((e, msg)) => {
                self.0.failures.fetch_add(1, Ordering::Relaxed);
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
    fn encode<'a>(&self, r: &'a Self::R, buf: &mut Vec<u8>) -> Result<Option<&'a str>, String>;
}

/// Trades as the compact, key-sorted Finnhub trade object; key = symbol.
struct TradeJson;

impl Encode for TradeJson {
    type R = Trade;
    fn encode<'a>(&self, t: &'a Trade, buf: &mut Vec<u8>) -> Result<Option<&'a str>, String> {
        write_trade_json(t, buf);
        Ok(Some(t.symbol.as_str()))
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
    fn encode<'a>(&self, r: &'a Row, buf: &mut Vec<u8>) -> Result<Option<&'a str>, String> {
        crate::output::rolling::write_json_row(&self.schema, r, buf);
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        Ok(row_key(self.key, r))
    }
}

fn row_key(key: Option<usize>, r: &Row) -> Option<&str> {
    match key.map(|k| &r[k]) {
        Some(Value::Str(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// Avro in the Confluent wire format, with the schema registered for the topic (`None`: its
/// registration failed, and the run is stopping).
struct AvroOut {
    schema: Arc<apache_avro::Schema>,
    id: Option<u32>,
}

impl AvroOut {
    fn write(&self, value: &apache_avro::types::Value, buf: &mut Vec<u8>) -> Result<(), String> {
        let id = self.id.ok_or("the schema is not registered")?;
        avro::encode(&self.schema, id, value, buf).map_err(|e| format!("encoding as Avro: {e:#}"))
    }
}

/// Trades as Avro records of [`avro::TRADE_SCHEMA`]; key = symbol.
struct TradeAvro(AvroOut);

impl Encode for TradeAvro {
    type R = Trade;
    fn encode<'a>(&self, t: &'a Trade, buf: &mut Vec<u8>) -> Result<Option<&'a str>, String> {
        self.0.write(&avro::trade_value(t), buf)?;
        Ok(Some(t.symbol.as_str()))
    }
}

/// Rows as Avro records of the stream's schema ([`avro::row_schema`]); key = the key column.
struct RowAvro {
    out: AvroOut,
    schema: Schema,
    key: Option<usize>,
}

impl Encode for RowAvro {
    type R = Row;
    fn encode<'a>(&self, r: &'a Row, buf: &mut Vec<u8>) -> Result<Option<&'a str>, String> {
        self.out.write(&avro::row_value(&self.schema, r), buf)?;
        Ok(row_key(self.key, r))
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
    fn precommit(&mut self) -> anyhow::Result<Precommit> {
        self.publish()?;
        Ok(Precommit::default())
    }
    fn publish(&mut self) -> anyhow::Result<()> {
        self.producer
            .flush(self.limit)
            .map_err(|e| anyhow::anyhow!("flushing to Kafka: {e}"))
    }
}

/// The exactly-once producer in the protocol: at a checkpoint's cut the open transaction's
/// records are delivered (not visible yet); it is committed once the checkpoint completes.
struct Transactional<'a> {
    txns: &'a mut transactions::Transactions,
    producer: &'a BaseProducer<SinkContext>,
    reports: &'a Reports,
    limit: Duration,
}

impl TwoPhase for Transactional<'_> {
    fn precommit(&mut self) -> anyhow::Result<Precommit> {
        self.producer
            .flush(self.limit)
            .map_err(|e| anyhow::anyhow!("flushing a Kafka transaction: {e}"))?;
        let failures = self.reports.failures.load(Ordering::Acquire);
        if failures > 0 {
            anyhow::bail!(
                "{failures} record(s) could not be delivered within their transaction; the restarted run writes the last checkpoint's records again"
            );
        }
        let ranges = self
            .reports
            .ranges
            .as_ref()
            .map(|r| std::mem::take(&mut *r.lock().unwrap_or_else(|e| e.into_inner())))
            .unwrap_or_default();
        self.txns.precommit(ranges)
    }
    fn precommitted(&mut self, epoch: u64) {
        self.txns.precommitted(epoch);
    }
    fn publish(&mut self) -> anyhow::Result<()> {
        unreachable!("an exactly-once sink runs with checkpoints")
    }
}

/// The idempotent producer's settings (the transactional one adds its own).
fn producer_config(cfg: &config::KafkaSinkConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", cfg.compression.librdkafka_name())
        .set("linger.ms", cfg.linger.as_millis().to_string())
        .set(
            "message.timeout.ms",
            cfg.delivery_timeout.as_millis().to_string(),
        )
        .set("queue.buffering.max.messages", "200000");
    c
}

/// The Kafka sink for a stream of either shape.
fn kafka_sink(stream: AnyStream<'_>, cx: &SinkBuildCx<'_>, node: &kind::KafkaSink) {
    // Avro: the schema is registered for the topic (idempotent: the same schema keeps its id).
    let avro = node.avro.as_ref().map(|(json, schema)| {
        let subject = avro::value_subject(&node.config.topic);
        let id = node
            .config
            .registry
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no registry"))
            .and_then(|r| avro::Registry::new(r, cx.ctx.rt.clone()))
            .and_then(|r| r.register(&subject, json))
            .map_err(|e| cx.ctx.fail(format!("sink `{}`: {e:#}", node.name)))
            .ok();
        AvroOut {
            schema: Arc::clone(schema),
            id,
        }
    });
    match (stream, avro) {
        (AnyStream::Trades(s), None) => kafka_sink_with(s, TradeJson, cx, node),
        (AnyStream::Trades(s), Some(out)) => kafka_sink_with(s, TradeAvro(out), cx, node),
        (AnyStream::Rows(s), None) => {
            let enc = RowJson {
                schema: node.schema.clone(),
                key: node.key,
            };
            kafka_sink_with(s, enc, cx, node)
        }
        (AnyStream::Rows(s), Some(out)) => {
            let enc = RowAvro {
                out,
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
    let reports = Arc::new(Reports {
        ranges: node.exactly.as_ref().map(|_| Mutex::default()),
        ..Reports::default()
    });
    let exactly = node.exactly.clone().filter(|_| ctx.checkpoint.is_some());
    let config = match &exactly {
        Some(x) => transactions::producer_config(&cfg, x, &x.id(worker)),
        None => producer_config(&cfg),
    };
    let producer: Option<BaseProducer<SinkContext>> = config
        .create_with_context(SinkContext(Arc::clone(&reports)))
        .map_err(|e| {
            ctx.fail(format!(
                "sink `{}`: cannot create a Kafka producer for {}: {e}",
                node.name, cfg.brokers
            ))
        })
        .ok()
        .filter(|p: &BaseProducer<SinkContext>| {
            let Some(x) = &exactly else { return true };
            // Fences every earlier producer of this worker's id (aborting its open transaction).
            let id = x.id(worker);
            p.init_transactions(Duration::from_secs(60))
                .map_err(|e| {
                    ctx.fail(format!(
                        "sink `{}`: initializing Kafka transactions (transactional id `{id}`): {e}",
                        node.name
                    ))
                })
                .is_ok()
        });
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
    let mut txns = exactly
        .as_ref()
        .map(|x| transactions::Transactions::new(&name, &cfg.topic, x.id(worker), limit));
    let _: StreamVec<'scope, u64, ()> = stream
        .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Pipeline,
            &format!("Kafka({name})"),
            move |cap, info| {
                let activator = scope.activator_for(info.address);
                // Held while a transaction waits for its checkpoint after the input ended: the
                // dataflow (and the checkpoint that commits it) goes on until it is committed.
                let mut hold = Some(cap);
                let mut done = false;
                let mut sent = 0u64;
                let mut last_delivered = 0u64;
                let mut payload: Vec<u8> = Vec::with_capacity(128);
                move |(input, frontier), _output| {
                    let Some(producer) = producer.as_ref() else {
                        input.for_each(|_, _| {});
                        cp.abandon();
                        drop(hold.take());
                        return;
                    };
                    // Exactly once: the transaction of a completed checkpoint is committed
                    // before anything else is written; until then nothing is.
                    if let (Some(t), Some(part)) = (txns.as_mut(), cp.participant()) {
                        match t.settle(producer, part) {
                            Ok(transactions::Settled::Ready) => {}
                            Ok(transactions::Settled::Waiting) => {
                                activator.activate_after(crate::checkpoint::FROZEN_POLL);
                                return;
                            }
                            Err(e) => {
                                ctx.fail(format!("sink `{name}`: {e:#}"));
                                cp.abandon();
                                txns = None;
                                drop(hold.take());
                                input.for_each(|_, _| {});
                                return;
                            }
                        }
                    }
                    if done {
                        drop(hold.take());
                        return;
                    }
                    let mut broken = None;
                    input.for_each(|_cap, data| {
                        cp.received(data.len());
                        for t in data.iter() {
                            // One reused buffer; librdkafka copies the payload on send.
                            payload.clear();
                            let key = match enc.encode(t, &mut payload) {
                                Ok(key) => key,
                                Err(e) => {
                                    dead.borrow_mut().push(DeadLetter {
                                        source: &name,
                                        reason: RejectReason::DeliveryFailed,
                                        detail: e,
                                        raw: String::new(),
                                        line: 0,
                                    });
                                    continue;
                                }
                            };
                            let payload = payload.as_slice();
                            let mut record =
                                BaseRecord::<str, [u8]>::to(&cfg.topic).payload(payload);
                            if let Some(key) = key {
                                record = record.key(key);
                            }
                            if let Some(t) = txns.as_mut() {
                                match t.headers(producer) {
                                    Ok(h) => record = record.headers(h.clone()),
                                    Err(e) => {
                                        broken.get_or_insert(e);
                                        continue;
                                    }
                                }
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
                    if let Some(e) = broken {
                        ctx.fail(format!("sink `{name}`: {e:#}"));
                        cp.abandon();
                        txns = None;
                        drop(hold.take());
                        return;
                    }
                    producer.poll(Duration::ZERO);
                    let result = match txns.as_mut() {
                        Some(txns) => {
                            let mut out = Transactional {
                                txns,
                                producer,
                                reports: &reports,
                                limit,
                            };
                            step(&mut cp, &mut out, frontier.is_empty())
                        }
                        None => step(
                            &mut cp,
                            &mut Delivered { producer, limit },
                            frontier.is_empty(),
                        ),
                    };
                    match result {
                        Ok(Some(poll)) => activator.activate_after(poll),
                        Ok(None) => {}
                        Err(e) => {
                            ctx.fail(format!("sink `{name}`: {e:#}"));
                            cp.abandon();
                        }
                    }
                    if frontier.is_empty() {
                        done = true;
                        producer.poll(Duration::ZERO);
                        if txns.as_ref().is_some_and(|t| t.waiting()) {
                            activator.activate_after(crate::checkpoint::FROZEN_POLL);
                        } else {
                            drop(hold.take());
                        }
                    }
                    let failed: Vec<(String, String)> = std::mem::take(
                        &mut *reports.failed.lock().unwrap_or_else(|e| e.into_inner()),
                    );
                    if let (true, Some((_, error))) = (txns.is_some(), failed.first()) {
                        // A transaction with a lost record must not commit: the run stops, and
                        // the restart writes the last checkpoint's records again.
                        ctx.fail(format!(
                            "sink `{name}`: {} record(s) could not be delivered within their transaction ({error})",
                            failed.len()
                        ));
                        cp.abandon();
                        txns = None;
                        drop(hold.take());
                        return;
                    }
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

/// One turn of the output protocol: the checkpoint's part while input may come, the last part
/// at its end.
fn step(
    cp: &mut OutputProtocol,
    out: &mut impl TwoPhase,
    ended: bool,
) -> anyhow::Result<Option<Duration>> {
    if ended {
        cp.end(out).map(|()| None)
    } else {
        cp.turn(out)
    }
}
