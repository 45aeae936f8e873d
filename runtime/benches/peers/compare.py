"""Compares another engine's 1-minute bars with tickflow's, in DuckDB.

    python compare.py TICKFLOW_BARS_DIR OTHER_PARQUET_GLOB

Prints how many bars each has, and how many are the same (symbol, window, every value within
1e-9 relative).
"""
import sys

import duckdb

ours, theirs = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(f"create view a as select symbol, epoch_ms(window_start) as ws, open, high, low, close, volume, vwap, trades from read_parquet('{ours}/**/*.parquet')")
con.execute(f"create view b as select symbol, window_start as ws, open, high, low, close, volume, vwap, trades from read_parquet('{theirs}')")
na = con.execute("select count(*) from a").fetchone()[0]
nb = con.execute("select count(*) from b").fetchone()[0]
close = lambda c: f"(a.{c} is not distinct from b.{c} or abs(a.{c} - b.{c}) <= 1e-9 * greatest(abs(a.{c}), 1))"
same = con.execute(f"""select count(*) from a join b using (symbol, ws)
    where a.trades = b.trades and {' and '.join(close(c) for c in ['open', 'high', 'low', 'close', 'volume', 'vwap'])}""").fetchone()[0]
opens = con.execute("select count(*) from a join b using (symbol, ws) where a.open != b.open").fetchone()[0]
print(f"tickflow {na} bars, other {nb} bars, identical {same} (open differs in {opens})")
