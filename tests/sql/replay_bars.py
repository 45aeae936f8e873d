"""Independent check of replay bars with DuckDB.

    python replay_bars.py TRADES.jsonl BARS_DIR MAX_OUT_OF_ORDERNESS_MS

Python only splits the file into candidate trades (json + the documented validity rules);
watermarks, lateness and the bars themselves are computed in SQL, then compared with the Parquet
files tickflow wrote (read by DuckDB). Exit status 1 and a report on any difference.
"""
import csv
import json
import math
import sys
import tempfile
import time
import unicodedata

import duckdb

MAX_TS = 253402300799999
# The documented bounds: prices and volumes up to 1e15, symbols up to 64 bytes without control
# characters, event times at most `max_future` (1 h by default) ahead of the wall clock.
MAX_VALUE = 1e15
MAX_SYMBOL_BYTES = 64
MAX_FUTURE_MS = 3_600_000
NOW_MS = int(time.time() * 1000)


def valid(t):
    if not isinstance(t, dict):
        return False
    num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)
    c = t.get("c")
    s = t.get("s")
    return (
        isinstance(s, str) and s != ""
        and len(s.encode("utf-8")) <= MAX_SYMBOL_BYTES
        and not any(unicodedata.category(ch) == "Cc" for ch in s)
        and num(t.get("p")) and math.isfinite(t["p"]) and 0 < t["p"] <= MAX_VALUE
        and num(t.get("v")) and math.isfinite(t["v"]) and 0 <= t["v"] <= MAX_VALUE
        and isinstance(t.get("t"), int) and not isinstance(t.get("t"), bool) and 0 <= t["t"] <= MAX_TS
        and t["t"] <= NOW_MS + MAX_FUTURE_MS
        and (c is None or (isinstance(c, list) and all(isinstance(x, (str, int)) for x in c)))
    )


def load_trades(con, trades_file):
    """The valid trades of a file of frames as table `trades(line, idx, symbol, price, volume, t)`,
    in file order (line, then index within the frame)."""
    tmp = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="")
    out = csv.writer(tmp)
    out.writerow(["line", "idx", "symbol", "price", "volume", "t"])
    with open(trades_file, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                frame = json.loads(line)
            except ValueError:
                continue
            if not isinstance(frame, dict) or frame.get("type") != "trade" or not isinstance(frame.get("data"), list):
                continue
            for idx, t in enumerate(frame["data"]):
                if valid(t):
                    out.writerow([line_no, idx, t["s"], repr(float(t["p"])), repr(float(t["v"])), t["t"]])
    tmp.close()
    con.execute(f"""
        create table trades as select * from read_csv('{tmp.name}', header = true,
            columns = {{'line': 'BIGINT', 'idx': 'BIGINT', 'symbol': 'VARCHAR', 'price': 'DOUBLE', 'volume': 'DOUBLE', 't': 'BIGINT'}})
    """)


def same(a, b):
    if a is None or b is None:
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)
    return a == b


def compare(got, expected, what="bars"):
    """Prints the differences (exit 1) or `N {what} match`."""
    problems = []
    if len(got) != len(expected):
        problems.append(f"{len(got)} {what} written, {len(expected)} expected")
    for g, e in zip(got, expected):
        if len(g) != len(e) or not all(same(x, y) for x, y in zip(g, e)):
            problems.append(f"got {g}\n     want {e}")
            if len(problems) > 10:
                break
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"{len(got)} {what} match")


def main():
    trades_file, bars_dir, ooo = sys.argv[1], sys.argv[2], int(sys.argv[3])
    con = duckdb.connect()
    load_trades(con, trades_file)
    expected = con.execute(f"""
        with marked as (
            select *,
                   max(t) over (order by line, idx rows between unbounded preceding and current row) - {ooo} as watermark,
                   (t // 60000) * 60000 as ws
            from trades
        )
        select symbol, ws, ws + 60000,
               first(price order by t, line, idx), max(price), min(price), last(price order by t, line, idx),
               sum(volume), case when sum(volume) > 0 then sum(price * volume) / sum(volume) end, count(*)
        from marked
        where ws + 60000 > watermark
        group by symbol, ws
        order by symbol, ws
    """).fetchall()
    got = con.execute(f"""
        select symbol, epoch_ms(window_start), epoch_ms(window_end), open, high, low, close, volume, vwap, trades
        from read_parquet('{bars_dir}/**/*.parquet')
        order by symbol, window_start
    """).fetchall()

    compare(got, expected)


if __name__ == "__main__":
    main()
