"""The replay → 1-minute bars job in Spark Structured Streaming (PyPI pyspark, local[2]), for the
peers table in BENCHMARKS.md.

    python spark_bars.py TRADES.jsonl OUT_DIR

A file source over the JSONL, `withWatermark("ts", "2 seconds")`, a 1-minute `window` per symbol,
open/close with `min_by`/`max_by` on `t` (Spark's `first`/`last` are by arrival), append mode,
`trigger(availableNow=True)`. In append mode a window is written only once the watermark has
passed it, and the end of the input moves no watermark: the last windows are never written.
"""
import os
import shutil
import sys
import tempfile
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

path, out = sys.argv[1], sys.argv[2]
started = time.perf_counter()
spark = (SparkSession.builder.master("local[2]").appName("bars")
         .config("spark.sql.shuffle.partitions", "2")
         .config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
src = tempfile.mkdtemp()
os.symlink(os.path.abspath(path), os.path.join(src, "trades.jsonl"))
schema = "data ARRAY<STRUCT<p: DOUBLE, s: STRING, t: BIGINT, v: DOUBLE>>, type STRING"
frames = spark.readStream.schema(schema).json(src)
trades = (frames.where("type = 'trade'").select(F.explode("data").alias("d")).select("d.*")
          .where("p > 0 and v >= 0 and s is not null and s != '' and t is not null")
          .withColumn("ts", F.timestamp_millis("t")))
bars = (trades.withWatermark("ts", "2 seconds")
        .groupBy(F.window("ts", "1 minute"), F.col("s"))
        .agg(F.min_by("p", "t").alias("open"), F.max("p").alias("high"), F.min("p").alias("low"),
             F.max_by("p", "t").alias("close"), F.sum("v").alias("volume"),
             F.try_divide(F.sum(F.col("p") * F.col("v")), F.sum("v")).alias("vwap"), F.count("*").alias("trades"))
        .select(F.col("s").alias("symbol"), F.unix_millis(F.col("window.start")).alias("window_start"),
                "open", "high", "low", "close", "volume", "vwap", "trades"))
checkpoint = tempfile.mkdtemp()
query = (bars.writeStream.format("parquet").option("path", out).option("checkpointLocation", checkpoint)
         .outputMode("append").trigger(availableNow=True).start())
query.awaitTermination()
n = spark.read.parquet(out).count()
print(f"spark: {n} bars in {time.perf_counter() - started:.2f} s")
spark.stop()
shutil.rmtree(checkpoint, ignore_errors=True)
