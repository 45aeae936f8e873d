"""The as-of join of `cargo bench --bench pipeline -- --asof` in DuckDB: every valid trade with
the latest trade of its symbol with volume >= 475 (the "quotes", about 5%) at or before it,
written to one zstd Parquet file. Engine time: from reading the JSON to the written file,
best of N runs, 2 threads.

    python runtime/benches/duckdb_asof.py TRADES.jsonl [RUNS]

Prints `VERSION SECONDS ROWS`.
"""
import sys
import tempfile
import time

import duckdb

path = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
# The trades are loaded into a table first: as one query with common table expressions, DuckDB
# 2.0's planner re-evaluates the JSON scan under the ASOF join (185 s instead of about 1 s).
load = f"""
create table valid as
select * from (
  select unnest(data, recursive := true)
  from read_json('{path}', format = 'newline_delimited',
                 columns = {{'data': 'STRUCT(p DOUBLE, s VARCHAR, t BIGINT, v DOUBLE)[]', 'type': 'VARCHAR'}})
  where type = 'trade'
) where p > 0 and v >= 0
"""
query = """
copy (
  with quotes as (select s, t, p from valid where v >= 475)
  select l.s as symbol, l.p as price, l.v as volume, l.t as timestamp, q.p as q_price, q.t as q_time
  from valid l asof left join quotes q on l.s = q.s and l.t >= q.t
) to '{out}' (format parquet, compression zstd)
"""
best, rows = None, 0
for _ in range(runs):
    con = duckdb.connect()
    con.execute("set threads = 2")
    out = tempfile.mktemp(suffix=".parquet")
    started = time.perf_counter()
    con.execute(load)
    con.execute(query.replace("{out}", out))
    elapsed = time.perf_counter() - started
    best = elapsed if best is None else min(best, elapsed)
    rows = con.execute(f"select count(*) from read_parquet('{out}')").fetchone()[0]
print(duckdb.__version__, best, rows)
