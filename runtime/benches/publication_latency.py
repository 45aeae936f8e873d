"""Publication latency of a live run's bars: for every bar, the time from the moment it could
first be known (its window's end plus the source's out-of-orderness, when the watermark passes
the end) to the moment its file became visible to a reader.

    python runtime/benches/publication_latency.py --watch SECONDS SEEN.tsv DIR
        polls DIR every 20 ms for SECONDS and writes when each Parquet file first appeared
    python runtime/benches/publication_latency.py [--seen SEEN.tsv ...] DIR [DIR...] OOO_MS
        p50, p99 and max over every bar in DIR(s)

Without --seen a file's modification time stands for its visibility. That holds without
checkpoints (files are written under _pending/ and renamed into place at once) but not with
them: a file waits under _pending/ until its checkpoint completes and the rename keeps its
modification time, so runtime/benches/latency/run watches the folders instead. `rolling.max_age`
of the sink, and with checkpoints their `interval`, is what decides the latency.
"""
import os
import sys
import time


def parquet_files(folder):
    for root, _, names in os.walk(folder):
        if "_pending" in root:
            continue
        for n in names:
            if n.endswith(".parquet"):
                yield os.path.join(root, n)


def watch(seconds, tsv, folder):
    seen = {}
    end = time.time() + seconds
    while time.time() < end:
        now = int(time.time() * 1000)
        for p in parquet_files(folder):
            seen.setdefault(p, now)
        time.sleep(0.02)
    with open(tsv, "w") as f:
        for p, ms in seen.items():
            f.write(f"{p}\t{ms}\n")


def report(args):
    seen = {}
    while args[0] == "--seen":
        with open(args[1]) as f:
            for line in f:
                p, ms = line.rstrip("\n").split("\t")
                seen[p] = int(ms)
        args = args[2:]
    folders, ooo_ms = args[:-1], int(args[-1])
    files = []
    for folder in folders:
        for p in parquet_files(folder):
            if seen and p not in seen:
                continue  # appeared after the watch ended
            files.append((p, seen[p] if seen else int(os.stat(p).st_mtime * 1000)))
    import duckdb

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


if __name__ == "__main__":
    if sys.argv[1] == "--watch":
        watch(float(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        report(sys.argv[1:])
