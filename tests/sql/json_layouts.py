"""Trades in JSON as common writers lay them out, not as Finnhub's feed does: Python's
`json.dumps` defaults (a space after `,` and `:`, non-ASCII escaped as `\\uXXXX`), pretty-printed,
keys in another order, and extra keys of any value. An independent writer of what tickflow reads.

    json_layouts.py rewrite IN OUT
        rewrites a JSONL file of Finnhub frames, each frame in the next layout in turn; symbols
        ending in 1 gain an `é` (written as `\\u00e9`) and those ending in 2 a `/` (as `\\/`).
    json_layouts.py produce BROKERS TOPIC N SEED
        N trade objects to TOPIC with confluent-kafka's producer, keyed and partitioned by
        symbol, some out of order, each in the next layout in turn (pretty-printed among them);
        every 397th record has a negative price, and every 397th another a `p` given twice
        (the last counts, as in serde_json and Python's json).
    json_layouts.py produce-file BROKERS TOPIC FILE LAYOUT
        every trade of a JSONL file of Finnhub frames to TOPIC, keyed by symbol, in one layout:
        canonical (compact, sorted keys), dumps, reversed, extra or pretty (the benchmark's input).
"""
import json
import random
import sys

from confluent_kafka import Producer


def extra(obj, n):
    """`obj` (and a frame's trades) with extra keys of every JSON kind, before and after its own."""
    if isinstance(obj.get("data"), list):
        obj = dict(obj, data=[extra(t, n) if isinstance(t, dict) else t for t in obj["data"]])
    return {"seq": n, **obj, "x": "XNAS", "meta": {"src": ["py", None, True, 1.5e3]}}


def rename(sym):
    return sym + "\u00e9" if sym.endswith("1") else sym + "/" if sym.endswith("2") else sym


def layout(obj, n, pretty=True):
    """`obj` written in layout `n` (modulo the number of layouts)."""
    kinds = 5 if pretty else 4
    k = n % kinds
    if k == 0:
        return json.dumps(obj)  # Python's defaults
    if k == 1:
        return json.dumps(reverse(obj), separators=(",", ":"))
    if k == 2:
        return json.dumps(extra(obj, n)).replace("/", "\\/")
    if k == 3:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")
    return json.dumps(extra(obj, n), indent=2)


def reverse(obj):
    if isinstance(obj, dict):
        return {k: reverse(obj[k]) for k in reversed(list(obj))}
    if isinstance(obj, list):
        return [reverse(x) for x in obj]
    return obj


def rewrite(src, dst):
    with open(src) as f, open(dst, "w") as out:
        for n, line in enumerate(f):
            try:
                frame = json.loads(line)
            except ValueError:
                out.write(line)  # a malformed line stays as it is
                continue
            data = frame.get("data") if isinstance(frame, dict) else None
            for t in data if isinstance(data, list) else []:
                if isinstance(t, dict) and isinstance(t.get("s"), str):
                    t["s"] = rename(t["s"])
            out.write(layout(frame, n, pretty=False) + "\n")


def produce(brokers, topic, n, seed):
    rng = random.Random(seed)
    p = Producer({"bootstrap.servers": brokers, "linger.ms": 20, "enable.idempotence": True})
    parts = sorted(p.list_topics(topic, timeout=30).topics[topic].partitions)
    clock = 1_764_000_000_000
    for i in range(n):
        clock += rng.randrange(40)
        k = rng.randrange(6)
        sym = rename(f"S{k}")
        t = clock - (rng.randrange(4000) if rng.randrange(20) == 0 else 0)
        trade = {"c": ["1", "12"] if i % 3 else None, "p": 10 + rng.randrange(90) + 0.25,
                 "s": sym, "t": t, "v": rng.randrange(9)}
        value = layout(trade, i)
        if i % 397 == 100:
            value = json.dumps(dict(trade, p=-1.0))
        elif i % 397 == 300:
            value = value.replace('"p"', '"p": 1, "p"', 1)
        p.produce(topic, key=sym.encode(), value=value.encode(), partition=parts[k % len(parts)])
        p.poll(0)
    p.flush(60)


LAYOUTS = {
    "canonical": lambda t: json.dumps(t, separators=(",", ":"), sort_keys=True),
    "dumps": json.dumps,
    "reversed": lambda t: json.dumps(reverse(t), separators=(",", ":")),
    "extra": lambda t: json.dumps(extra(t, 0)),
    "pretty": lambda t: json.dumps(t, indent=2),
}


def produce_file(brokers, topic, path, layout):
    write = LAYOUTS[layout]
    p = Producer({"bootstrap.servers": brokers, "linger.ms": 50, "batch.size": 1 << 20,
                  "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})
    n = 0
    with open(path) as f:
        for line in f:
            frame = json.loads(line)
            for t in frame.get("data") or []:
                while True:
                    try:
                        p.produce(topic, key=t["s"].encode(), value=write(t).encode())
                        break
                    except BufferError:
                        p.poll(0.05)
                n += 1
                if n % 10_000 == 0:
                    p.poll(0)
    assert p.flush(120) == 0, "undelivered records"
    print(n)


if __name__ == "__main__":
    if sys.argv[1] == "rewrite":
        rewrite(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "produce-file":
        produce_file(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
