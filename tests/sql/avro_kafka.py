"""Avro on Kafka with Confluent's own client (confluent-kafka and its AvroSerializer /
AvroDeserializer against the schema registry): an independent writer and reader of what
tickflow reads and writes.

    avro_kafka.py produce BROKERS REGISTRY TOPIC N SEED
        N trades (Avro, subject TOPIC-value, schema with a nullable `c`) over the topic's
        partitions, keyed by symbol, some out of order, with every 499th record broken: raw
        JSON (no magic byte), an unknown schema id, or a negative price.
    avro_kafka.py dump BROKERS REGISTRY TOPIC ISOLATION
        every record as a JSON line: partition, offset, key, txn header, and value (the
        decoded record as a JSON string, timestamps as RFC 3339 UTC with milliseconds), or
        null when it does not decode.
"""
import json
import random
import struct
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from read_kafka import read_all

TRADE = {
    "type": "record",
    "name": "Trade",
    "namespace": "finnhub",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "p", "type": "double"},
        {"name": "t", "type": "long"},
        {"name": "v", "type": "double"},
        {"name": "c", "type": ["null", {"type": "array", "items": "string"}], "default": None},
    ],
}


def produce(brokers, registry, topic, n, seed):
    rng = random.Random(seed)
    client = SchemaRegistryClient({"url": registry})
    ser = AvroSerializer(client, json.dumps(TRADE))
    p = Producer({"bootstrap.servers": brokers, "linger.ms": 20, "enable.idempotence": True})
    meta = p.list_topics(topic, timeout=30)
    parts = sorted(meta.topics[topic].partitions)
    ctx = SerializationContext(topic, MessageField.VALUE)
    clock = 1_764_000_000_000
    for i in range(n):
        clock += rng.randrange(40)
        sym = f"S{rng.randrange(6)}"
        t = clock - (rng.randrange(4000) if rng.randrange(20) == 0 else 0)
        trade = {"s": sym, "p": 10 + rng.randrange(90) + 0.5, "t": t, "v": 1.0 + rng.randrange(9),
                 "c": None if i % 3 else ["1", "12"]}
        part = parts[int(sym[1:]) % len(parts)]
        if i % 499 == 250:
            value = [
                json.dumps(trade).encode(),
                b"\x00" + struct.pack(">I", 999_999) + b"\x02",
                ser(dict(trade, p=-1.0), ctx),
            ][(i // 499) % 3]
        else:
            value = ser(trade, ctx)
        p.produce(topic, key=sym.encode(), value=value, partition=part)
        p.poll(0)
    p.flush(60)


def iso(ms):
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms % 1000:03d}Z"


def plain(v):
    if hasattr(v, "timestamp"):
        return iso(round(v.timestamp() * 1000))
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def dump(brokers, registry, topic, isolation):
    de = AvroDeserializer(SchemaRegistryClient({"url": registry}))

    def decode(m):
        try:
            return json.dumps(plain(de(m.value(), SerializationContext(topic, MessageField.VALUE))))
        except Exception:
            return None

    for r in read_all(brokers, topic, isolation, decode):
        print(json.dumps(r))


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    else:
        dump(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
