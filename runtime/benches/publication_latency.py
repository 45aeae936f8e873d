"""Publication latency of a live run's bars: for every bar, the time from the moment it could
first be known (its window's end plus the source's out-of-orderness, when the watermark passes
the end) to the moment its file became visible to a reader (the file's modification time: files
are renamed into place when published).

    python runtime/benches/publication_latency.py OUT_DIR/bars_10s 2000

Prints p50, p99 and max in seconds. Run it on the output of a live run (the quickstart, or the
soak run in BENCHMARKS.md); `rolling.max_age` of the sink (and with checkpoints, their
`interval`) is what decides it.
"""
import os
import sys

import duckdb

folder, ooo_ms = sys.argv[1], int(sys.argv[2])
files = []
for root, _, names in os.walk(folder):
    if "_pending" in root:
        continue
    for n in names:
        if n.endswith(".parquet"):
            p = os.path.join(root, n)
            files.append((p, int(os.stat(p).st_mtime * 1000)))
con = duckdb.connect()
con.execute("create table files (path varchar, visible_ms bigint)")
con.executemany("insert into files values (?, ?)", files)
row = con.execute(f"""
    with bars as (
        select filename as path, epoch_ms(window_end) as end_ms
        from read_parquet({[f for f, _ in files]!r}, filename = true)
    ), lat as (
        select (visible_ms - (end_ms + {ooo_ms})) / 1000.0 as s from bars join files using (path)
    )
    select count(*), quantile_cont(s, 0.5), quantile_cont(s, 0.99), max(s) from lat
""").fetchone()
print(f"{row[0]} bars in {len(files)} files: publication latency p50 {row[1]:.2f} s, p99 {row[2]:.2f} s, max {row[3]:.2f} s")
