"""The replay → 1-minute bars → Parquet job in DuckDB, for comparison with `cargo bench --bench
pipeline` on the same file (an established analytical engine as a reference point).

    python runtime/benches/duckdb_bars.py /tmp/tickflow-bench-2000000-500/trades.jsonl [threads...]

DuckDB reads the JSONL with a declared schema, unnests the trades, drops invalid ones and computes
open/high/low/close/volume/vwap/count per symbol and minute, writing one zstd Parquet file. It does
not track a watermark (no lateness), so it does a little less work than tickflow.
"""
import sys
import tempfile
import time

# `--once N`: one run with N threads and nothing else (`cargo bench --bench pipeline -- --peers`),
# printing the engine time: from `import duckdb` to the written Parquet file, i.e. without the
# Python interpreter's own start and exit, as DuckDB's CLI would run.
started = time.perf_counter()
import duckdb  # noqa: E402

path = sys.argv[1]
if len(sys.argv) > 2 and sys.argv[2] == "--once":
    con = duckdb.connect()
    con.execute(f"set threads = {int(sys.argv[3])}")
    out = tempfile.mktemp(suffix=".parquet")
    QUERY_ONCE = True
else:
    QUERY_ONCE = False
threads = [] if QUERY_ONCE else ([int(t) for t in sys.argv[2:]] or [1, 2])
query = f"""
copy (
  with trades as (
    select unnest(data, recursive := true), row_number() over () as line
    from read_json('{path}', format = 'newline_delimited',
                   columns = {{'data': 'STRUCT(p DOUBLE, s VARCHAR, t BIGINT, v DOUBLE)[]', 'type': 'VARCHAR'}})
    where type = 'trade'
  )
  select s as symbol, (t // 60000) * 60000 as window_start,
         arg_min(p, t) as open, max(p) as high, min(p) as low, arg_max(p, t) as close,
         sum(v) as volume, sum(p * v) / nullif(sum(v), 0) as vwap, count(*) as trades
  from trades where p > 0 and v >= 0
  group by all
) to '{{out}}' (format parquet, compression zstd)
"""
if QUERY_ONCE:
    con.execute(query.replace("{out}", out))
    elapsed = time.perf_counter() - started
    rows = con.execute(f"select count(*) from read_parquet('{out}')").fetchone()[0]
    assert rows > 0, "no bars"
    print(duckdb.__version__, rows, f"{elapsed:.4f}")
    sys.exit(0)
n = duckdb.sql(f"""select sum(len(data)) from read_json('{path}', format = 'newline_delimited',
    columns = {{'data': 'STRUCT(p DOUBLE, s VARCHAR, t BIGINT, v DOUBLE)[]', 'type': 'VARCHAR'}}) where type = 'trade'""").fetchall()[0][0]
for th in threads:
    best = None
    for _ in range(3):
        con = duckdb.connect()
        con.execute(f"set threads = {th}")
        out = tempfile.mktemp(suffix=".parquet")
        started = time.perf_counter()
        con.execute(query.replace("{out}", out))
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    print(f"duckdb {duckdb.__version__}, {th} thread(s): {n / best:12.0f} trades/s   {best:.3f} s")
