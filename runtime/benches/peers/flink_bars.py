"""The replay → 1-minute bars job in Flink SQL, streaming mode (PyPI apache-flink, which bundles
the Flink runtime; a local mini-cluster, parallelism 2), for the peers table in BENCHMARKS.md.

    python flink_bars.py TRADES.jsonl OUT.parquet

A filesystem source over the JSONL (`json` format, the frame's `data` as an array of rows),
`CROSS JOIN UNNEST` of `data`, the valid trades only, then an event-time attribute with a
watermark 2 s behind it (`from_data_stream` with a computed column: a watermark can only be
declared on a table, and the trade times are inside the array), and `TUMBLE` 1 minute per symbol.
Flink SQL has no `arg_min`: open and close are the price of the smallest and largest
`t|price` key (`t` padded to 15 digits), i.e. by event time; trades stamped with the same
millisecond are ordered by their price's text, where tickflow takes the first (open) and last
(close) to arrive. The bounded source ends with a final watermark, so every window is written.

Prints `flink VERSION: BARS bars, TOTAL s whole, JOB s job` (job: from submission to the last
result, without the JVM's start). The bars go to a CSV filesystem sink inside the job (committed
by the final checkpoint at the end of the bounded input), then to Parquet for the comparison:
collecting rows into Python through Flink's client is slower than the job itself.
"""
import glob
import importlib.metadata
import sys
import tempfile
import time

started = time.perf_counter()

import pyarrow as pa  # noqa: E402
import pyarrow.csv as pcsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment  # noqa: E402
from pyflink.table import DataTypes, Schema, StreamTableEnvironment  # noqa: E402

path, out = sys.argv[1], sys.argv[2]
env = StreamExecutionEnvironment.get_execution_environment()
env.set_parallelism(2)
env.set_runtime_mode(RuntimeExecutionMode.STREAMING)
env.enable_checkpointing(60_000)  # the final checkpoint commits the sink's files
t_env = StreamTableEnvironment.create(env)
t_env.get_config().set("table.local-time-zone", "UTC")
t_env.execute_sql(f"""
    CREATE TABLE frames (
        data ARRAY<ROW<p DOUBLE, s STRING, t BIGINT, v DOUBLE>>,
        `type` STRING
    ) WITH (
        'connector' = 'filesystem',
        'path' = 'file://{path}',
        'format' = 'json',
        'json.ignore-parse-errors' = 'true'
    )""")
trades = t_env.sql_query("""
    SELECT d.s AS s, d.p AS p, d.v AS v, d.t AS t
    FROM frames CROSS JOIN UNNEST(frames.data) AS d (p, s, t, v)
    WHERE frames.`type` = 'trade' AND d.p > 0 AND d.v >= 0 AND d.s IS NOT NULL AND d.s <> ''
      AND d.t IS NOT NULL""")
timed = t_env.from_data_stream(
    t_env.to_data_stream(trades),
    Schema.new_builder()
    .column("s", DataTypes.STRING())
    .column("p", DataTypes.DOUBLE())
    .column("v", DataTypes.DOUBLE())
    .column("t", DataTypes.BIGINT())
    .column_by_expression("ts", "TO_TIMESTAMP_LTZ(t, 3)")
    .watermark("ts", "ts - INTERVAL '2' SECOND")
    .build(),
)
t_env.create_temporary_view("trades", timed)
t_env.create_temporary_view("keyed", t_env.sql_query(
    "SELECT *, LPAD(CAST(t AS STRING), 15, '0') || '|' || CAST(p AS STRING) AS k FROM trades"))
sink = tempfile.mkdtemp()
t_env.execute_sql(f"""
    CREATE TABLE bars (
        symbol STRING, window_start BIGINT, `open` DOUBLE, high DOUBLE, low DOUBLE,
        `close` DOUBLE, volume DOUBLE, vwap DOUBLE, trades BIGINT
    ) WITH ('connector' = 'filesystem', 'path' = 'file://{sink}', 'format' = 'csv')""")
insert = t_env.sql_query("""
    SELECT s AS symbol, UNIX_TIMESTAMP(CAST(window_start AS STRING)) * 1000 AS window_start,
        CAST(SUBSTRING(MIN(k) FROM 17) AS DOUBLE) AS `open`, MAX(p) AS high, MIN(p) AS low,
        CAST(SUBSTRING(MAX(k) FROM 17) AS DOUBLE) AS `close`, SUM(v) AS volume,
        CASE WHEN SUM(v) > 0 THEN SUM(p * v) / SUM(v) END AS vwap, COUNT(*) AS trades
    FROM TABLE(TUMBLE(TABLE keyed, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    GROUP BY s, window_start, window_end""")
job = time.perf_counter()
insert.execute_insert("bars").wait()
done = time.perf_counter()
cols = ["symbol", "window_start", "open", "high", "low", "close", "volume", "vwap", "trades"]
files = [f for f in glob.glob(f"{sink}/**/*", recursive=True) if not f.split("/")[-1].startswith(".")]
parts = [pcsv.read_csv(f, read_options=pcsv.ReadOptions(column_names=cols)) for f in files]
table = pa.concat_tables(parts)
pq.write_table(table, out)
print(f"flink {importlib.metadata.version('apache-flink')}: {table.num_rows} bars, "
      f"{time.perf_counter() - started:.2f} s whole, {done - job:.2f} s job")
