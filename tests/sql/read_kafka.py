"""Reads every record of a Kafka topic with confluent-kafka (librdkafka's Python client, an
independent consumer), printing one JSON object per record: partition, offset, key, value and
the tickflow-txn header.

    read_kafka.py BROKERS TOPIC ISOLATION    (ISOLATION: read_committed | read_uncommitted)

It stops once every partition reached the end it had when the read began (for read_committed,
the last stable offset: every transaction before it is decided).
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition


def read_all(brokers, topic, isolation, decode):
    """Every record of `topic` as a dict, its value as `decode(message)` gives it."""
    c = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"tickflow-test-reader-{time.time_ns()}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": isolation,
    })
    meta = c.list_topics(topic, timeout=30)
    partitions = sorted(meta.topics[topic].partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    done = {p for p in partitions if ends[p] == 0}
    deadline = time.time() + 120
    out = []
    while len(done) < len(partitions):
        if time.time() > deadline:
            sys.exit(f"read_kafka: partitions {sorted(set(partitions) - done)} did not reach their end")
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                pos = c.position([TopicPartition(topic, m.partition())])[0].offset
                if pos >= ends[m.partition()]:
                    done.add(m.partition())
                continue
            sys.exit(f"read_kafka: {m.error()}")
        tag = dict(m.headers() or []).get("tickflow-txn")
        out.append({
            "partition": m.partition(),
            "offset": m.offset(),
            "key": m.key().decode() if m.key() is not None else None,
            "value": decode(m),
            "txn": tag.decode() if tag is not None else None,
        })
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
    c.close()
    return out


if __name__ == "__main__":
    brokers, topic, isolation = sys.argv[1:4]
    for r in read_all(brokers, topic, isolation, lambda m: m.value().decode()):
        print(json.dumps(r))
