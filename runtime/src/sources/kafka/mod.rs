//! The Kafka source: each worker reads its share of the topic's partitions with its own consumer,
//! validates every record with the same code as the other sources, and stamps it with its
//! partition's watermark at the moment it is read. Lateness therefore depends only on the order
//! of records within a partition — never on how partitions interleave or how many workers run.

mod batch;
pub mod config;
mod kind;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, DefaultConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};

use self::config::{IdleWatermark, KafkaSourceConfig, StartPosition};
use crate::checkpoint::{PartitionCheckpoint, Role};
use crate::base::time::quantize;
use crate::base::record::Trade;
use crate::output::dead_letter::{DeadLetter, DeadLetters};
use crate::sources::SourceBuildCx;
use crate::sources::finnhub::protocol;

/// Offsets are below 2^40; `seq = partition << 40 | offset`.
pub const OFFSET_BITS: u32 = 40;

struct PartitionState {
    partition: i32,
    /// Next offset to read.
    next: i64,
    /// End offset seen at start (bounded runs).
    end: Option<i64>,
    /// The partition reached its first record at or after `stop_at` (`next` is that record).
    stopped: bool,
    /// Fetching of the stopped partition is paused.
    paused: bool,
    max_ts: i64,
    wm: i64,
    last_record: Instant,
    /// Records arrived in the current activation (or the partition was held back by alignment:
    /// either way it is not idle).
    touched: bool,
    /// The partition's own queue (records fetched before it was split arrive on the consumer's):
    /// kept for its split, read through `batch`.
    queue: Option<PartitionQueue<DefaultConsumerContext>>,
    batch: Option<batch::BatchQueue>,
}

/// What [`PartitionState::take`] reads of a record, from the consumer's queue or a partition's.
struct Incoming<'a> {
    offset: i64,
    payload: &'a [u8],
    timestamp_ms: Option<i64>,
}

impl<'a> Incoming<'a> {
    fn of_message(msg: &'a BorrowedMessage<'_>) -> Incoming<'a> {
        Incoming {
            offset: msg.offset(),
            payload: msg.payload().unwrap_or_default(),
            timestamp_ms: msg.timestamp().to_millis(),
        }
    }

    fn of_record(r: &'a batch::Record) -> Incoming<'a> {
        Incoming {
            offset: r.offset(),
            payload: r.payload(),
            timestamp_ms: r.timestamp_ms(),
        }
    }
}

/// What one activation reads at most, in all and per partition.
const POLL_BUDGET: usize = 20_000;
const PARTITION_BUDGET: usize = 5_000;

impl PartitionState {
    /// Nothing more is read from this partition: it reached `stop_at`, or its end offset under
    /// `--bounded`.
    fn done(&self) -> bool {
        self.stopped || self.end.is_some_and(|end| self.next >= end)
    }

    /// Takes one record of this partition: a trade (into `batch`, at its watermark's time) or a
    /// dead letter. Returns whether it was a trade.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        msg: &Incoming<'_>,
        ooo: i64,
        quantum: u64,
        floor: u64,
        batch: &mut BTreeMap<u64, Vec<Trade>>,
        dead: &RefCell<DeadLetters>,
        source: &str,
        future_limit: i64,
        stop_at: Option<i64>,
        registry: Option<&crate::base::avro::Registry>,
    ) -> bool {
        let offset = msg.offset;
        if self.stopped {
            return false; // fetched before the stop was seen
        }
        if let Some(stop) = stop_at
            && msg.timestamp_ms.is_some_and(|t| t >= stop)
        {
            // The first record at or after `stop_at`: not read, and the position stays on it,
            // so that a restored run stops at the same record.
            self.stopped = true;
            self.next = offset;
            return false;
        }
        self.next = offset + 1;
        self.touched = true;
        if self.end.is_some_and(|end| offset >= end) {
            return false; // past the bounded end
        }
        let seq = ((self.partition as u64) << OFFSET_BITS) | offset as u64;
        let payload = msg.payload;
        let parsed = match registry {
            None => protocol::parse_trade(payload),
            Some(r) => crate::base::avro::decode_trade(r, payload),
        }
        .and_then(|t| {
            if t.ts > future_limit {
                let detail = protocol::future_detail(t.ts, future_limit);
                Err((crate::base::reject::RejectReason::FutureTimestamp, detail))
            } else {
                Ok(t)
            }
        });
        match parsed {
            Ok(t) => {
                self.max_ts = self.max_ts.max(t.ts);
                self.wm = self.wm.max(self.max_ts - ooo);
                let time = quantize(self.wm, quantum).max(floor);
                batch.entry(time).or_default().push(Trade {
                    symbol: t.symbol,
                    price: t.price,
                    volume: t.volume,
                    ts: t.ts,
                    seq,
                    wm: self.wm,
                    conditions: t.conditions,
                });
                true
            }
            Err((reason, detail)) => {
                let raw = match registry {
                    None => String::from_utf8_lossy(payload).into_owned(),
                    // Binary: hex, so that the dead letter shows every byte.
                    Some(_) => payload.iter().map(|b| format!("{b:02x}")).collect(),
                };
                dead.borrow_mut().push(DeadLetter {
                    source,
                    reason,
                    detail,
                    raw,
                    line: offset as u64,
                });
                false
            }
        }
    }
}

pub(super) fn kafka_stream<'scope>(
    scope: Scope<'scope, u64>,
    cx: &SourceBuildCx<'_>,
    cfg: &KafkaSourceConfig,
    registry: Option<crate::base::avro::Registry>,
) -> StreamVec<'scope, u64, Trade> {
    let (ctx, source_index) = (cx.ctx, cx.index);
    let dead = Rc::clone(cx.dead);
    let node = &ctx.sources[source_index];
    let name = node.name.clone();
    let quantum = node.time_quantum_ms;
    let cfg: KafkaSourceConfig = cfg.clone();
    let (worker, peers) = (scope.index(), scope.peers());
    let bounded = ctx.bounded;
    let ctx = Arc::clone(ctx);

    source(
        scope,
        &format!("Kafka({name})"),
        move |capability: Capability<u64>, info| {
            let activator = scope.activator_for(info.address);
            let ooo = cfg.max_out_of_orderness.as_millis();
            let max_future = cfg.max_future.as_millis();
            let idle = Duration::from_millis(cfg.idle_timeout.as_millis().max(1) as u64);
            let max_drift = cfg.max_drift.as_millis();
            let stop_at = cfg.stop_at.map(|t| t.as_millis());
            let setup = || -> anyhow::Result<(Arc<BaseConsumer>, Vec<PartitionState>)> {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &cfg.brokers)
                    .set("group.id", &cfg.group_id)
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("enable.partition.eof", "false")
                    .set("fetch.max.bytes", "104857600")
                    .set("max.partition.fetch.bytes", "8388608")
                    .set("queued.max.messages.kbytes", "262144")
                    // NB: a fetch can bring a partition's queue over `queued.min.messages` at
                    // once (a few hundred thousand records); librdkafka then waits this long
                    // before fetching that partition again. Its default (1 s) is longer than the
                    // workers take to empty the queue, which halved the source's rate in
                    // backfills (10 M records: 12.4 s against 6.0–7.0 s at 100 ms).
                    .set("fetch.queue.backoff.ms", "100")
                    .set(
                        "auto.offset.reset",
                        match cfg.start {
                            StartPosition::Latest => "latest",
                            StartPosition::Earliest | StartPosition::Timestamp(_) => "earliest",
                        },
                    )
                    .create()?;
                let metadata =
                    consumer.fetch_metadata(Some(&cfg.topic), Duration::from_secs(10))?;
                let topic = metadata.topics().iter().find(|t| t.name() == cfg.topic);
                let partitions: Vec<i32> = match topic {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                        t.partitions().iter().map(|p| p.id()).collect()
                    }
                    _ => anyhow::bail!("topic `{}` does not exist on {}", cfg.topic, cfg.brokers),
                };
                let mine: Vec<i32> = partitions
                    .into_iter()
                    .filter(|p| *p as usize % peers == worker)
                    .collect();
                let mut tpl = TopicPartitionList::new();
                let mut states = Vec::new();
                let restored = ctx
                    .checkpoint
                    .as_ref()
                    .map(|cp| cp.restored_partitions(&name))
                    .unwrap_or_default();
                // `start: { timestamp }`: each partition's first offset at or after it.
                let by_time = match cfg.start {
                    StartPosition::Timestamp(at) if !mine.is_empty() => {
                        let mut query = TopicPartitionList::new();
                        for &p in &mine {
                            query.add_partition_offset(&cfg.topic, p, Offset::Offset(at.as_millis()))?;
                        }
                        Some(consumer.offsets_for_times(query, Duration::from_secs(10))?)
                    }
                    _ => None,
                };
                for p in mine {
                    let (low, high) =
                        consumer.fetch_watermarks(&cfg.topic, p, Duration::from_secs(10))?;
                    let from_checkpoint = restored.get(&p).copied();
                    let start = match (from_checkpoint, cfg.start) {
                        (Some(c), _) => c.next,
                        (None, StartPosition::Earliest) => low,
                        (None, StartPosition::Latest) => high,
                        (None, StartPosition::Timestamp(at)) => {
                            let found = by_time.as_ref().and_then(|l| l.find_partition(&cfg.topic, p));
                            match found.as_ref().map(|e| (e.offset(), e.error())) {
                                Some((Offset::Offset(o), Ok(()))) => o,
                                // No record at or after it yet: from the partition's end.
                                Some((Offset::End, Ok(()))) => high,
                                Some((_, Err(e))) => anyhow::bail!("partition {p}: the offset for {at} could not be found: {e}"),
                                other => anyhow::bail!("partition {p}: the broker gave no offset for {at} ({other:?})"),
                            }
                        }
                    };
                    tpl.add_partition_offset(&cfg.topic, p, Offset::Offset(start))?;
                    states.push(PartitionState {
                        partition: p,
                        next: start,
                        end: bounded.then_some(high),
                        stopped: false,
                        paused: false,
                        max_ts: from_checkpoint.map(|c| c.max_ts).unwrap_or(i64::MIN),
                        wm: from_checkpoint.map(|c| c.wm).unwrap_or(i64::MIN),
                        last_record: Instant::now(),
                        touched: false,
                        queue: None,
                        batch: None,
                    });
                }
                consumer.assign(&tpl)?;
                // One queue per partition, so that the slowest partitions can be read first.
                let consumer = Arc::new(consumer);
                for s in states.iter_mut() {
                    s.queue = consumer.split_partition_queue(&cfg.topic, s.partition);
                    // A split queue is only read through its batch handle: without one, its
                    // records would never be read.
                    if s.queue.is_some() {
                        s.batch = Some(
                            batch::BatchQueue::of(&consumer, &cfg.topic, s.partition).ok_or_else(
                                || anyhow::anyhow!("partition {} of `{}`: librdkafka gave no queue to read", s.partition, cfg.topic),
                            )?,
                        );
                    }
                }
                Ok((consumer, states))
            };
            // A broker that is slow to answer at start (busy, restarting) is waited for, up to a
            // minute; a topic that does not exist is not.
            let started = Instant::now();
            let setup = || loop {
                match setup() {
                    Err(e)
                        if e.downcast_ref::<rdkafka::error::KafkaError>().is_some()
                            && started.elapsed() < SETUP_PATIENCE
                            && !ctx.stop.load(Ordering::Relaxed) =>
                    {
                        tracing::warn!(source = %name, error = %format!("{e:#}"), "Kafka not ready at start (retrying)");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    other => return other,
                }
            };
            let (consumer, mut parts) = match setup() {
                Ok(x) => (Some(x.0), x.1),
                Err(e) => {
                    ctx.fail(format!("source `{name}`: {e:#}"));
                    (None, Vec::new())
                }
            };
            let mut cap = consumer.as_ref().map(|_| capability);
            let source_stats = ctx.metrics.source(&name);
            let lag = ctx.metrics.part::<LagMetrics>().of(&name);
            let step_stats = ctx.metrics.step(&name, "source");
            // Consumer lag from the start, then with every commit.
            if let Some(consumer) = consumer.as_ref() {
                report_lag(consumer, &cfg.topic, &parts, &lag);
            }
            let mut cp = ctx
                .checkpoint
                .as_ref()
                .map(|c| c.participant(Role::Source, source_index, worker, None));
            if consumer.is_none() || parts.is_empty() {
                // Setup failed (reported) or more workers than partitions: nothing to read here.
                if let Some(cp) = cp.as_mut() {
                    cp.finish();
                }
                cap = None;
            }
            // Restored watermarks: start the capability where the checkpoint left off.
            if let (Some(c), Some(wm)) = (cap.as_mut(), parts.iter().map(|s| s.wm).min())
                && wm > i64::MIN
            {
                c.downgrade(&quantize(wm, quantum));
            }
            let mut last_commit = Instant::now();
            let mut batch: BTreeMap<u64, Vec<Trade>> = BTreeMap::new();
            let mut paused = false;

            move |output| {
                let (Some(consumer), Some(capability)) = (consumer.as_ref(), cap.as_mut()) else {
                    cap = None;
                    return;
                };
                if let Some(cp) = cp.as_mut() {
                    // A checkpoint: record the positions once, then read nothing until it is
                    // complete.
                    if let Some(epoch) = cp.in_progress() {
                        if cp.due(epoch) {
                            cp.record_source(&name, positions(&parts));
                            cp.ack(epoch);
                        }
                        paused = true;
                        activator.activate_after(crate::checkpoint::FROZEN_POLL);
                        return;
                    }
                    if std::mem::take(&mut paused) {
                        // A pause is not idleness: partitions get their idle time back.
                        let now = Instant::now();
                        parts.iter_mut().for_each(|s| s.last_record = now);
                    }
                    if ctx.stop.load(Ordering::Relaxed) {
                        // A stop takes a last checkpoint: end once it is complete.
                        if cp.coordinator().stop_checkpointed() {
                            cap = None;
                        } else {
                            activator.activate_after(crate::checkpoint::FROZEN_POLL);
                        }
                        return;
                    }
                } else if ctx.stop.load(Ordering::Relaxed) {
                    cap = None;
                    return;
                }
                let (mut n, mut polled) = (0u64, 0);
                let floor = *capability.time();
                let future = protocol::future_limit(max_future);
                // Callbacks, and records fetched before the partition queues were split.
                while polled < POLL_BUDGET {
                    let Some(result) = consumer.poll(Duration::ZERO) else {
                        break;
                    };
                    polled += 1;
                    match result {
                        Ok(msg) => {
                            if let Some(state) =
                                parts.iter_mut().find(|s| s.partition == msg.partition())
                            {
                                n += state.take(
                                    &Incoming::of_message(&msg), ooo, quantum, floor, &mut batch,
                                    &dead, &name, future, stop_at, registry.as_ref(),
                                ) as u64;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(source = %name, error = %e, "Kafka consumer error (retrying)");
                            break;
                        }
                    }
                }
                // Watermark alignment: the slowest partitions first; those too far ahead of the
                // slowest live partition of any worker wait.
                let limit = aligned_limit(&ctx.source_watermarks[source_index], max_drift);
                let mut order: Vec<usize> = (0..parts.len()).collect();
                order.sort_by_key(|&i| parts[i].wm);
                for i in order {
                    let state = &mut parts[i];
                    if limit.is_some_and(|l| state.wm > l) {
                        state.touched = true; // held back, not idle
                        continue;
                    }
                    if state.stopped {
                        continue;
                    }
                    let Some(mut queue) = state.batch.take() else {
                        continue;
                    };
                    // Every record taken is handled (an error among them is only reported).
                    let records = queue.take(PARTITION_BUDGET.min(POLL_BUDGET - polled));
                    polled += records.len();
                    for record in &records {
                        match record.error() {
                            None => {
                                n += state.take(
                                    &Incoming::of_record(record), ooo, quantum, floor, &mut batch,
                                    &dead, &name, future, stop_at, registry.as_ref(),
                                ) as u64;
                            }
                            Some(e) => {
                                tracing::warn!(source = %name, partition = state.partition, error = %e, "Kafka consumer error (retrying)");
                            }
                        }
                    }
                    drop(records);
                    state.batch = Some(queue);
                    if polled >= POLL_BUDGET {
                        break;
                    }
                }
                // A partition that reached `stop_at` is paused: librdkafka stops fetching it.
                for s in parts.iter_mut().filter(|s| s.stopped && !s.paused) {
                    let mut tpl = TopicPartitionList::new();
                    if tpl
                        .add_partition_offset(&cfg.topic, s.partition, Offset::Offset(s.next))
                        .is_ok()
                        && consumer.pause(&tpl).is_ok()
                    {
                        s.paused = true;
                    }
                }
                ctx.metrics.trades.fetch_add(n, Ordering::Relaxed);
                step_stats.records_out.fetch_add(n, Ordering::Relaxed);
                if let Some(cp) = cp.as_ref() {
                    cp.emitted(n as usize);
                }
                let now = Instant::now();
                for s in parts.iter_mut().filter(|s| s.touched) {
                    s.last_record = now;
                    s.touched = false;
                }
                for (time, mut trades) in std::mem::take(&mut batch) {
                    output
                        .session(&capability.delayed(&time))
                        .give_container(&mut trades);
                }
                // The worker's watermark: the slowest partition that is neither finished nor idle.
                let live: Vec<&PartitionState> = parts
                    .iter()
                    .filter(|s| !s.done() && s.last_record.elapsed() < idle)
                    .collect();
                let finished = (bounded || cfg.stop_at.is_some()) && parts.iter().all(|s| s.done());
                // This worker's slowest live partition, for the alignment of every worker.
                let slowest = live
                    .iter()
                    .map(|s| s.wm)
                    .filter(|wm| *wm > i64::MIN)
                    .min()
                    .unwrap_or(i64::MAX);
                ctx.publish_watermark(
                    source_index,
                    worker,
                    if finished { i64::MAX } else { slowest },
                );
                if let Some(wm) = live.iter().map(|s| s.wm).min() {
                    if wm > i64::MIN {
                        ctx.metrics.watermark.fetch_max(wm, Ordering::Relaxed);
                        source_stats.watermark.fetch_max(wm, Ordering::Relaxed);
                    }
                    let t = quantize(wm, quantum);
                    if t > *capability.time() {
                        capability.downgrade(&t);
                    }
                } else if let Some(wm) = parts.iter().map(|s| s.wm).max()
                    && !finished
                {
                    // Every partition idle: follow the most advanced one (or the clock).
                    let wm = match cfg.idle_watermark {
                        IdleWatermark::Hold => wm,
                        IdleWatermark::Clock => wm.max(
                            crate::base::time::now_ms() - cfg.idle_timeout.as_millis() - ooo,
                        ),
                    };
                    let t = quantize(wm, quantum);
                    if t > *capability.time() {
                        capability.downgrade(&t);
                    }
                }
                if last_commit.elapsed() > Duration::from_secs(5) || finished {
                    commit(consumer, &cfg.topic, &parts);
                    report_lag(consumer, &cfg.topic, &parts, &lag);
                    last_commit = Instant::now();
                }
                if finished {
                    if let Some(cp) = cp.as_mut() {
                        cp.record_source(&name, positions(&parts));
                        cp.finish();
                    }
                    cap = None;
                } else if polled > 0 {
                    activator.activate();
                } else {
                    // Nothing queued right now: librdkafka's fetcher refills its queue within
                    // milliseconds, so look again soon (a long sleep here starves the pipeline).
                    activator.activate_after(Duration::from_millis(1));
                }
            }
        },
    )
}

/// How long a source waits at start for a broker that does not answer.
const SETUP_PATIENCE: Duration = Duration::from_secs(60);

/// Records each partition of this worker is behind its end (for `tickflow_kafka_consumer_lag`).
/// Asks the broker (one round trip per partition), so it runs every few seconds only.
fn report_lag(
    consumer: &BaseConsumer,
    topic: &str,
    parts: &[PartitionState],
    lag: &std::sync::Mutex<BTreeMap<i32, i64>>,
) {
    for s in parts {
        if let Ok((_, high)) = consumer.fetch_watermarks(topic, s.partition, Duration::from_secs(1))
        {
            lag.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(s.partition, (high - s.next).max(0));
        }
    }
}

/// Kafka sources' own metric family: each partition's lag behind its end, by source.
#[derive(Debug, Default)]
pub struct LagMetrics {
    sources: std::sync::Mutex<BTreeMap<String, Arc<std::sync::Mutex<BTreeMap<i32, i64>>>>>,
}

impl LagMetrics {
    /// Source `name`'s lag by partition (every worker of the process shares it).
    fn of(&self, name: &str) -> Arc<std::sync::Mutex<BTreeMap<i32, i64>>> {
        Arc::clone(
            self.sources
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(name.to_string())
                .or_default(),
        )
    }
}

impl crate::metrics::Part for LagMetrics {
    fn expose(&self, f: &mut crate::metrics::prometheus::Exposition<'_>, _now_ms: i64) {
        let sources = crate::metrics::prometheus::snapshot(&self.sources);
        f.head(
            "tickflow_kafka_consumer_lag",
            "gauge",
            "Records between a partition's read position and its end.",
        );
        for (name, lag) in &sources {
            for (p, lag) in lag.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                f.sample(
                    "tickflow_kafka_consumer_lag",
                    &[("source", name), ("partition", &p.to_string())],
                    *lag as f64,
                );
            }
        }
    }
}

/// The highest watermark a partition may have and still be read, when alignment is on and some
/// worker has a live partition with a watermark.
fn aligned_limit(workers: &[AtomicI64], max_drift: i64) -> Option<i64> {
    let slowest = workers.iter().map(|w| w.load(Ordering::Relaxed)).min()?;
    (max_drift > 0 && slowest < i64::MAX).then(|| slowest.saturating_add(max_drift))
}

/// The partitions' positions, for a checkpoint.
fn positions(parts: &[PartitionState]) -> Vec<(i32, PartitionCheckpoint)> {
    parts
        .iter()
        .map(|s| {
            (
                s.partition,
                PartitionCheckpoint {
                    next: s.next,
                    max_ts: s.max_ts,
                    wm: s.wm,
                },
            )
        })
        .collect()
}

/// Publishes progress to the consumer group (for lag tools only).
fn commit(consumer: &BaseConsumer, topic: &str, parts: &[PartitionState]) {
    let mut tpl = TopicPartitionList::new();
    for s in parts {
        let _ = tpl.add_partition_offset(topic, s.partition, Offset::Offset(s.next));
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(error = %e, "committing consumer offsets");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_follows_the_slowest_worker_and_can_be_off() {
        let slots = |v: &[i64]| v.iter().map(|x| AtomicI64::new(*x)).collect::<Vec<_>>();
        assert_eq!(aligned_limit(&slots(&[5_000, 1_000]), 30_000), Some(31_000));
        // A worker with no live partition does not hold anyone back.
        assert_eq!(
            aligned_limit(&slots(&[i64::MAX, 1_000]), 30_000),
            Some(31_000)
        );
        assert_eq!(aligned_limit(&slots(&[i64::MAX, i64::MAX]), 30_000), None);
        assert_eq!(aligned_limit(&slots(&[5_000, 1_000]), 0), None);
    }
}
