//! A compacted Kafka topic as a table (`path: kafka://BROKERS/TOPIC`): the latest value of each
//! record key, a record without a value (a tombstone) deleting its key — what the topic holds
//! once Kafka has compacted it. Each read takes every partition from its start up to the end
//! offsets of that moment and renders the surviving values as JSONL in key order, so that the
//! file path's checks, caps, fingerprint and reload apply unchanged: a version of the table is
//! the topic's content when it was read.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::load::MAX_BYTES;

/// How long one read of the topic may take.
const READ_PATIENCE: Duration = Duration::from_secs(30);

/// `(brokers, topic)` of a `kafka://BROKERS/TOPIC` path.
pub fn parse_url(url: &str) -> Option<Result<(String, String), String>> {
    let rest = url.trim().strip_prefix("kafka://")?;
    Some(match rest.split_once('/') {
        Some((brokers, topic))
            if !brokers.is_empty() && !topic.is_empty() && !topic.contains('/') =>
        {
            crate::base::kafka::check_brokers(brokers)
                .and_then(|()| crate::base::kafka::check_topic(topic))
                .map(|()| (brokers.to_string(), topic.to_string()))
        }
        _ => Err(format!(
            "`{url}`: expected kafka://HOST:PORT[,HOST:PORT...]/TOPIC"
        )),
    })
}

/// Where a line of the rendered JSONL came from.
pub struct Origin {
    pub partition: i32,
    pub offset: i64,
}

/// The topic's latest value per key as JSONL (in key order), with where each line came from.
pub fn read(brokers: &str, topic: &str) -> Result<(Vec<u8>, Vec<Origin>), String> {
    let fail = |e: rdkafka::error::KafkaError| format!("Kafka {brokers}, topic `{topic}`: {e}");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tickflow-table")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(fail)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(fail)?;
    let partitions: Vec<i32> = match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            t.partitions().iter().map(|p| p.id()).collect()
        }
        _ => return Err(format!("topic `{topic}` does not exist on {brokers}")),
    };
    let mut tpl = TopicPartitionList::new();
    // partition → the end offset to read up to.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .map_err(fail)?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(fail)?;
            ends.insert(p, high);
        }
    }
    consumer.assign(&tpl).map_err(fail)?;
    // key → (value, partition, offset); None: deleted.
    let mut latest: BTreeMap<Vec<u8>, Option<(Vec<u8>, i32, i64)>> = BTreeMap::new();
    let mut bytes = 0usize;
    let deadline = Instant::now() + READ_PATIENCE;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "reading topic `{topic}` took longer than {}s (partitions {:?} unfinished)",
                READ_PATIENCE.as_secs(),
                ends.keys().collect::<Vec<_>>()
            ));
        }
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            // A partition written by a transactional producer ends with control records that
            // are never delivered: its position, not a record, says it has reached the end.
            if let Ok(at) = consumer.position() {
                for e in at.elements() {
                    if let Offset::Offset(o) = e.offset()
                        && ends.get(&e.partition()).is_some_and(|&end| o >= end)
                    {
                        ends.remove(&e.partition());
                    }
                }
            }
            continue;
        };
        let msg = msg.map_err(fail)?;
        let (p, offset) = (msg.partition(), msg.offset());
        let Some(&end) = ends.get(&p) else { continue };
        if offset >= end {
            ends.remove(&p);
            continue;
        }
        if offset + 1 >= end {
            ends.remove(&p);
        }
        let Some(key) = msg.key() else {
            return Err(format!(
                "partition {p}, offset {offset}: a record without a key (a table's topic is keyed, one key per row)"
            ));
        };
        match msg.payload() {
            Some(value) if !value.is_empty() => {
                bytes += value.len();
                if bytes > MAX_BYTES {
                    return Err(format!(
                        "the topic holds more than {} MiB of values; a table holds at most that (reference data)",
                        MAX_BYTES >> 20
                    ));
                }
                if value.contains(&b'\n') {
                    return Err(format!(
                        "partition {p}, offset {offset}: a value spans lines; each value is one JSON object"
                    ));
                }
                latest.insert(key.to_vec(), Some((value.to_vec(), p, offset)));
            }
            _ => {
                latest.insert(key.to_vec(), None);
            }
        }
    }
    let mut out = Vec::with_capacity(bytes + latest.len());
    let mut origins = Vec::new();
    for (value, partition, offset) in latest.into_values().flatten() {
        out.extend_from_slice(&value);
        out.push(b'\n');
        origins.push(Origin { partition, offset });
    }
    Ok((out, origins))
}

/// `line N` of an error about the rendered JSONL → the record it came from.
pub fn locate(error: &str, origins: &[Origin]) -> String {
    let Some(rest) = error.strip_prefix("line ") else {
        return error.to_string();
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    match digits
        .parse::<usize>()
        .ok()
        .and_then(|n| origins.get(n.wrapping_sub(1)))
    {
        Some(o) => format!(
            "partition {}, offset {}{}",
            o.partition,
            o.offset,
            &rest[digits.len()..]
        ),
        None => error.to_string(),
    }
}
