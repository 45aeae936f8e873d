//! Exactly-once delivery to Kafka: each worker writes the records of one checkpoint interval in
//! one Kafka transaction, flushes it at the checkpoint's cut and commits it once the checkpoint
//! is complete (the manifest is the commit point, as for Parquet files).
//!
//! The failure modes, and what handles each:
//! - **A crash between the manifest and the commit.** librdkafka cannot resume another
//!   producer's transaction, so the records are found again instead: every record carries the
//!   transaction's tag (header `tickflow-txn`), and the manifest lists each transaction not yet
//!   known to be committed with the offsets it wrote. Before the restored run starts, its leader
//!   fences the transaction's `transactional.id` (which aborts it if it was still open), looks
//!   with a `read_committed` consumer whether records with the tag are visible, and if none are,
//!   reads them back (`read_uncommitted`, from the listed offsets) and writes them again in a new
//!   transaction with the same tag. The records are still in the log after an abort (only
//!   marked aborted), so nothing is kept twice while running.
//! - **Zombies.** A `transactional.id` per (pipeline, sink, worker slot): a restarted worker's
//!   `init_transactions` fences its predecessor. The ids of the last generation are recorded in
//!   the checkpoint folder (`kafka-writers-SINK.json`); after a rescale to fewer workers, the
//!   leader fences the ids nobody uses any more, so no transaction of theirs lingers and holds
//!   `read_committed` consumers back (FLINK-23854).
//! - **Transaction timeouts.** A transaction spans a checkpoint interval: `transaction_timeout`
//!   must be at least two intervals (checked when the spec is planned) and at most the broker's
//!   `transaction.max.timeout.ms` (asked at start).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::config::KafkaSinkConfig;
use super::kind::KafkaSink;
use crate::checkpoint::PendingTransaction;
use crate::checkpoint::output::Precommit;
use crate::sinks::RecoverCx;

/// The broker's default `transaction.max.timeout.ms`.
pub const BROKER_DEFAULT_MAX_MS: i64 = 900_000;
/// The header every record of a transaction carries: the transaction's tag.
pub const TAG_HEADER: &str = "tickflow-txn";
/// How long recovery waits for the broker (a consumer to reach an offset, a commit).
const RECOVERY_WAIT: Duration = Duration::from_secs(120);

/// A planned exactly-once sink's transactions.
#[derive(Debug, Clone)]
pub struct Exactly {
    /// `transactional.id` = `PREFIX-SLOT`.
    pub prefix: String,
    pub timeout_ms: i64,
}

impl Exactly {
    pub fn id(&self, slot: usize) -> String {
        format!("{}-{slot}", self.prefix)
    }
}

/// `tickflow-PIPELINE-SINK-HASH`, the hash of the checkpoint folder's path: stable for a
/// deployment, distinct between deployments of one spec.
pub fn default_prefix(pipeline: &str, sink: &str, checkpoints: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in checkpoints.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    format!("tickflow-{pipeline}-{sink}-{h:08x}")
}

/// A transactional producer's settings.
pub(super) fn producer_config(cfg: &KafkaSinkConfig, exactly: &Exactly, id: &str) -> ClientConfig {
    let mut c = super::producer_config(cfg);
    c.set("transactional.id", id)
        .set("transaction.timeout.ms", exactly.timeout_ms.to_string());
    c
}

/// Retries a transactional call while librdkafka calls its error retriable, up to `limit`.
fn retrying(limit: Duration, mut call: impl FnMut() -> Result<(), KafkaError>) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        match call() {
            Ok(()) => return Ok(()),
            Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < deadline => {
                tracing::debug!(error = %e, "Kafka transaction call: retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One worker's transactions.
pub(super) struct Transactions {
    sink: String,
    topic: String,
    pub id: String,
    /// Unique per producer instance: with `seq`, the tag of each transaction.
    nonce: String,
    seq: u64,
    /// The open transaction's tag and headers (`None`: none begun).
    open: Option<(String, OwnedHeaders)>,
    /// Precommitted, not yet told its checkpoint.
    staged: Option<String>,
    /// Precommitted under checkpoint `.0`: committed once that completes.
    precommitted: Option<(u64, String)>,
    limit: Duration,
}

/// What a worker's transactions wait for.
pub(super) enum Settled {
    /// Nothing open to commit: the sink may write.
    Ready,
    /// A precommitted transaction waits for its checkpoint: write nothing yet.
    Waiting,
}

impl Transactions {
    pub fn new(sink: &str, topic: &str, id: String, limit: Duration) -> Self {
        Transactions {
            sink: sink.to_string(),
            topic: topic.to_string(),
            id,
            nonce: format!("{:016x}", rand::random::<u64>()),
            seq: 0,
            open: None,
            staged: None,
            precommitted: None,
            limit,
        }
    }

    /// The headers of the open transaction's records (one is begun if none is open).
    pub fn headers<C: rdkafka::producer::ProducerContext>(
        &mut self,
        producer: &BaseProducer<C>,
    ) -> Result<&OwnedHeaders> {
        if self.open.is_none() {
            producer
                .begin_transaction()
                .context("beginning a Kafka transaction")?;
            self.seq += 1;
            let tag = format!("{}.{}", self.nonce, self.seq);
            let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
                key: TAG_HEADER,
                value: Some(tag.as_bytes()),
            });
            self.open = Some((tag, headers));
        }
        Ok(&self.open.as_ref().expect("just begun").1)
    }

    /// At a checkpoint's cut: the open transaction's records are delivered (not yet visible),
    /// and described for the manifest. `ranges`: the offsets delivery reported, by partition.
    pub fn precommit(&mut self, ranges: BTreeMap<i32, (i64, i64)>) -> Result<Precommit> {
        let Some((tag, _)) = self.open.take() else {
            return Ok(Precommit::default());
        };
        self.staged = Some(tag.clone());
        Ok(Precommit {
            files: Vec::new(),
            transactions: vec![PendingTransaction {
                sink: self.sink.clone(),
                id: self.id.clone(),
                tag,
                topic: self.topic.clone(),
                partitions: ranges,
            }],
        })
    }

    pub fn precommitted(&mut self, epoch: u64) {
        if let Some(tag) = self.staged.take() {
            self.precommitted = Some((epoch, tag));
        }
    }

    /// Commits the precommitted transaction once its checkpoint is complete.
    pub fn settle<C: rdkafka::producer::ProducerContext>(
        &mut self,
        producer: &BaseProducer<C>,
        cp: &crate::checkpoint::Participant,
    ) -> Result<Settled> {
        let Some((epoch, _)) = &self.precommitted else {
            return Ok(Settled::Ready);
        };
        let coordinator = cp.coordinator();
        if coordinator.completed_epoch() < *epoch {
            if coordinator.failed() {
                bail!("checkpoint {epoch} failed: its transaction stays uncommitted");
            }
            if coordinator.stop_checkpointed() {
                // The run stopped at the checkpoint before: no later one completes, and the
                // run restored from it computes these records again.
                retrying(self.limit, || {
                    producer.abort_transaction(Duration::from_secs(10))
                })
                .context("aborting a transaction after the final checkpoint")?;
                self.precommitted = None;
                return Ok(Settled::Ready);
            }
            return Ok(Settled::Waiting);
        }
        retrying(self.limit, || {
            producer.commit_transaction(Duration::from_secs(10))
        })
        .with_context(|| {
            format!(
                "committing the transaction of checkpoint {epoch} ({}); the restarted run writes it again",
                self.id
            )
        })?;
        let (_, tag) = self.precommitted.take().expect("checked");
        cp.record_committed(tag);
        Ok(Settled::Ready)
    }

    /// Whether a precommitted transaction still waits for its checkpoint.
    pub fn waiting(&self) -> bool {
        self.precommitted.is_some() || self.staged.is_some()
    }
}

/// The writers of a sink's last generation, kept in the checkpoint folder.
#[derive(Debug, Serialize, Deserialize)]
struct Writers {
    prefix: String,
    slots: usize,
}

/// Before the run: the restored checkpoint's transactions of `sink` are committed (or written
/// again), and the writers of the last generation that this one does not reuse are fenced.
pub(super) fn recover(sink: &KafkaSink, exactly: &Exactly, cx: &RecoverCx<'_>) -> Result<()> {
    let cfg = &sink.config;
    let name = &sink.name;
    check_broker_timeout(cfg, exactly).with_context(|| format!("sink `{name}`"))?;
    let file = format!("kafka-writers-{name}.json");
    let last: Option<Writers> = if cx.storage.list()?.contains(&file) {
        Some(
            serde_json::from_slice(&cx.storage.get(&file)?)
                .with_context(|| format!("reading `{}/{file}`", cx.storage.display))?,
        )
    } else {
        None
    };
    let mut fenced = BTreeSet::new();
    for t in &cx.transactions {
        let producer = fence(cfg, exactly, &t.id).with_context(|| format!("sink `{name}`"))?;
        fenced.insert(t.id.clone());
        if is_committed(cfg, t).with_context(|| format!("sink `{name}`"))? {
            tracing::info!(sink = %name, id = %t.id, "the checkpoint's transaction was committed");
            continue;
        }
        let records = read_back(cfg, t).with_context(|| format!("sink `{name}`"))?;
        write_again(&producer, t, &records).with_context(|| format!("sink `{name}`"))?;
        tracing::info!(
            sink = %name,
            id = %t.id,
            records = records.len(),
            "the checkpoint's transaction was never committed: its records are written again"
        );
    }
    if let Some(last) = &last {
        for slot in 0..last.slots {
            let id = format!("{}-{slot}", last.prefix);
            // This generation's workers fence their own ids.
            let reused = last.prefix == exactly.prefix && slot < cx.workers;
            if !reused && fenced.insert(id.clone()) {
                fence(cfg, exactly, &id).with_context(|| format!("sink `{name}`"))?;
                tracing::info!(sink = %name, %id, "fenced a writer of the last generation");
            }
        }
    }
    let writers = Writers {
        prefix: exactly.prefix.clone(),
        slots: cx.workers,
    };
    cx.storage.put(&file, serde_json::to_vec(&writers)?)?;
    Ok(())
}

/// A producer with `id` that has fenced every earlier one (aborting an open transaction).
fn fence(cfg: &KafkaSinkConfig, exactly: &Exactly, id: &str) -> Result<BaseProducer> {
    let producer: BaseProducer = producer_config(cfg, exactly, id)
        .create()
        .with_context(|| format!("creating a Kafka producer for {}", cfg.brokers))?;
    producer
        .init_transactions(RECOVERY_WAIT)
        .with_context(|| format!("initializing transactional id `{id}`"))?;
    Ok(producer)
}

fn consumer(cfg: &KafkaSinkConfig, isolation: &str) -> Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", "tickflow-recovery")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .with_context(|| format!("creating a Kafka consumer for {}", cfg.brokers))
}

fn tag_of<M: Message>(m: &M) -> Option<&[u8]> {
    let h = m.headers()?;
    (0..h.count())
        .filter_map(|i| h.try_get(i))
        .find(|h| h.key == TAG_HEADER)
        .and_then(|h| h.value)
}

/// Whether records of transaction `t` are visible to a `read_committed` consumer: after the
/// fence, every record up to the partition's end is decided.
fn is_committed(cfg: &KafkaSinkConfig, t: &PendingTransaction) -> Result<bool> {
    let Some((&p, &(first, _))) = t.partitions.iter().next() else {
        return Ok(true); // it wrote nothing
    };
    let consumer = consumer(cfg, "read_committed")?;
    let (_, high) = consumer
        .fetch_watermarks(&t.topic, p, Duration::from_secs(30))
        .with_context(|| format!("reading the end of `{}` partition {p}", t.topic))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t.topic, p, Offset::Offset(first))?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + RECOVERY_WAIT;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if tag_of(&m) == Some(t.tag.as_bytes()) {
                    return Ok(true);
                }
                if m.offset() + 1 >= high {
                    return Ok(false);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                let at = consumer
                    .position()?
                    .find_partition(&t.topic, p)
                    .and_then(|e| e.offset().to_raw());
                if at.is_some_and(|at| at >= high) {
                    return Ok(false);
                }
            }
            Some(Err(e)) => return Err(e).context("reading back a transaction"),
            None => {}
        }
    }
    bail!(
        "`{}` partition {p}: the last stable offset stayed below {high} for {}s (a transaction of \
         another producer is open there); cannot tell whether checkpoint's transaction `{}` was \
         committed",
        t.topic,
        RECOVERY_WAIT.as_secs(),
        t.id
    )
}

/// (partition, key, value) of every record of transaction `t`, in offset order per partition.
type Record = (i32, Option<Vec<u8>>, Option<Vec<u8>>);

fn read_back(cfg: &KafkaSinkConfig, t: &PendingTransaction) -> Result<Vec<Record>> {
    let consumer = consumer(cfg, "read_uncommitted")?;
    let mut tpl = TopicPartitionList::new();
    for (&p, &(first, _)) in &t.partitions {
        tpl.add_partition_offset(&t.topic, p, Offset::Offset(first))?;
    }
    consumer.assign(&tpl)?;
    let mut left: BTreeSet<i32> = t.partitions.keys().copied().collect();
    let mut out: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    let deadline = Instant::now() + RECOVERY_WAIT;
    while !left.is_empty() {
        if Instant::now() > deadline {
            bail!(
                "reading back the records of transaction `{}` from `{}`: partitions {left:?} did not reach their last offset within {}s",
                t.id,
                t.topic,
                RECOVERY_WAIT.as_secs()
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let p = m.partition();
                let Some(&(_, last)) = t.partitions.get(&p) else {
                    continue;
                };
                if m.offset() > last || !left.contains(&p) {
                    left.remove(&p);
                    continue;
                }
                if tag_of(&m) == Some(t.tag.as_bytes()) {
                    out.entry(p).or_default().push((
                        p,
                        m.key().map(<[u8]>::to_vec),
                        m.payload().map(<[u8]>::to_vec),
                    ));
                }
                if m.offset() >= last {
                    left.remove(&p);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                // The log ends before the transaction's last offset: retention or a deleted
                // topic took records of it.
                let at = consumer
                    .position()?
                    .find_partition(&t.topic, p)
                    .and_then(|e| e.offset().to_raw());
                if let (Some(at), Some(&(_, last))) = (at, t.partitions.get(&p))
                    && at <= last
                {
                    bail!(
                        "`{}` partition {p} ends at offset {at}, before the last record ({last}) of transaction `{}`: were records deleted (retention, a compacted or recreated topic)?",
                        t.topic,
                        t.id
                    );
                }
            }
            Some(Err(e)) => return Err(e).context("reading back a transaction"),
            None => {}
        }
    }
    Ok(out.into_values().flatten().collect())
}

/// Writes `records` again, with `t`'s tag, to their partitions, in one transaction.
fn write_again(producer: &BaseProducer, t: &PendingTransaction, records: &[Record]) -> Result<()> {
    producer.begin_transaction()?;
    let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
        key: TAG_HEADER,
        value: Some(t.tag.as_bytes()),
    });
    for (p, key, value) in records {
        let mut record = BaseRecord::<[u8], [u8]>::to(&t.topic)
            .partition(*p)
            .headers(headers.clone());
        if let Some(k) = key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = value {
            record = record.payload(v.as_slice());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    producer.poll(Duration::from_millis(50));
                    record = r;
                }
                Err((e, _)) => return Err(e).context("writing a transaction again"),
            }
        }
    }
    retrying(RECOVERY_WAIT, || {
        producer.commit_transaction(Duration::from_secs(30))
    })
    .context("committing a transaction written again")
}

/// The transaction timeout must not exceed the broker's `transaction.max.timeout.ms`.
fn check_broker_timeout(cfg: &KafkaSinkConfig, exactly: &Exactly) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .create()
        .with_context(|| format!("connecting to Kafka at {}", cfg.brokers))?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(30))
        .with_context(|| format!("asking the Kafka brokers at {} for their metadata", cfg.brokers))?;
    let Some(broker) = metadata.brokers().first().map(|b| b.id()) else {
        bail!("the Kafka cluster at {} lists no broker", cfg.brokers);
    };
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let resources = futures::executor::block_on(
        admin.describe_configs(&[ResourceSpecifier::Broker(broker)], &opts),
    )
    .context("asking the broker for its configuration")?;
    let max = resources
        .into_iter()
        .flatten()
        .find_map(|r| {
            r.get("transaction.max.timeout.ms")?
                .value
                .as_deref()?
                .parse::<i64>()
                .ok()
        })
        .unwrap_or(BROKER_DEFAULT_MAX_MS);
    if exactly.timeout_ms > max {
        bail!(
            "transaction_timeout {} is longer than the broker's transaction.max.timeout.ms ({}): \
             lower transaction_timeout (and checkpoints.interval), or raise the broker's setting",
            crate::base::units::Duration::millis(exactly.timeout_ms),
            crate::base::units::Duration::millis(max)
        );
    }
    Ok(())
}
