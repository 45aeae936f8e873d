"""The replay → 1-minute bars job in Bytewax (PyPI), for the peers table in BENCHMARKS.md.

    python bytewax_bars.py TRADES.jsonl OUT.parquet

Event time with Bytewax's EventClock (watermark = newest event time − 2 s, as tickflow's
`max_out_of_orderness: 2s`), tumbling 1-minute windows keyed by symbol, open/close by event time.
Bytewax drops what its clock calls late, which is not tickflow's rule (a trade is late when its
window had ended at the watermark), so the outputs can differ.
"""
import json
import sys
import time
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
import bytewax.operators.windowing as win
import duckdb
from bytewax.connectors.files import FileSource
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

path, out = sys.argv[1], sys.argv[2]
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def trades(line):
    try:
        frame = json.loads(line)
    except ValueError:
        return []
    if not isinstance(frame, dict) or frame.get("type") != "trade":
        return []
    ok = []
    for t in frame.get("data") or []:
        p, v, s, ts = t.get("p"), t.get("v"), t.get("s"), t.get("t")
        if isinstance(s, str) and s and isinstance(ts, int) and isinstance(p, (int, float)) \
                and isinstance(v, (int, float)) and p > 0 and v >= 0:
            ok.append((s, (ts, float(p), float(v))))
    return ok


def new():
    return None


def fold(acc, x):
    ts, p, v = x
    if acc is None:
        return [p, ts, p, p, p, ts, v, p * v, 1]
    o, ot, h, lo, c, ct, vol, pv, n = acc
    if ts < ot:
        o, ot = p, ts
    if ts >= ct:
        c, ct = p, ts
    return [o, ot, max(h, p), min(lo, p), c, ct, vol + v, pv + p * v, n + 1]


def merge(a, b):
    raise AssertionError("tumbling windows do not merge")


started = time.perf_counter()
flow = Dataflow("bars")
lines = op.input("in", flow, FileSource(path))
keyed = op.flat_map("trades", lines, trades)
clock = win.EventClock(lambda x: EPOCH + timedelta(milliseconds=x[0]), wait_for_system_duration=timedelta(seconds=2))
windower = win.TumblingWindower(length=timedelta(minutes=1), align_to=EPOCH)
bars = win.fold_window("bars", keyed, clock, windower, new, fold, merge)
rows = []
op.output("out", bars.down, TestingSink(rows))
run_main(flow)
con = duckdb.connect()
con.execute("create table bars (symbol varchar, window_start bigint, open double, high double, low double, close double, volume double, vwap double, trades bigint)")
con.executemany("insert into bars values (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
    (s, wid * 60000, a[0], a[2], a[3], a[4], a[6], a[7] / a[6] if a[6] > 0 else None, a[8])
    for s, (wid, a) in rows
])
con.execute(f"copy bars to '{out}' (format parquet, compression zstd)")
print(f"bytewax: {len(rows)} bars in {time.perf_counter() - started:.2f} s")
