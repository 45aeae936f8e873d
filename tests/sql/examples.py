"""Independent DuckDB computations of the pipelines in specs/examples/, compared with what
tickflow wrote.

    python examples.py NAME TRADES.jsonl OUT_DIR

Python only reads the frames into a table of valid trades (tests/sql/replay_bars.py); the
pipeline itself (watermarks, lateness, windows, expressions) is computed in SQL.
"""
import sys

import duckdb

from replay_bars import compare, load_trades

# The source's watermark (over every trade read, before any filter) and 1-minute windows.
MARKED = """
    marked as (
        select *,
               max(t) over (order by line, idx rows between unbounded preceding and current row) - 2000 as watermark,
               (t // 60000) * 60000 as ws
        from trades
    )"""


def crypto_returns(con, out):
    expected = con.execute(f"""
        with {MARKED},
        bars as (
            select symbol, ws,
                   first(price order by t, line, idx) as open, max(price) as high, min(price) as low,
                   last(price order by t, line, idx) as close, sum(volume) as volume,
                   case when sum(volume) > 0 then sum(price * volume) / sum(volume) end as vwap
            from marked
            where ws + 60000 > watermark and starts_with(symbol, 'BINANCE:') and volume > 0
            group by symbol, ws
        )
        select symbol, ws, close, close / open - 1, high - low, vwap * volume, close > open
        from bars order by symbol, ws
    """).fetchall()
    got = con.execute(f"""
        select symbol, epoch_ms(window_start), close, ret, range, notional, up
        from read_parquet('{out}/bars/**/*.parquet') order by symbol, window_start
    """).fetchall()
    compare(got, expected)


def overflowing_derive(con, out):
    """`CAST(volume AS BIGINT) * 2^62` overflows unless the volume cast to a bigint is -1, 0 or 1:
    those trades are written, every other one is a dead letter (expression_error)."""
    expected = con.execute("""
        with cast_ as (select *, cast(volume as bigint) as v from trades)
        select symbol, t, v * 4611686018427387904 from cast_ where abs(v) <= 1 order by line, idx
    """).fetchall()
    got = con.execute(f"""
        select symbol, epoch_ms(timestamp), big from read_parquet('{out}/rows/**/*.parquet')
        order by symbol, timestamp, big
    """).fetchall()
    compare(sorted(got), sorted(expected), "rows")
    dead = con.execute(f"""
        select count(*) from read_json_auto('{out}/dead/**/*.jsonl') where reason = 'expression_error'
    """).fetchone()[0]
    want = con.execute("select count(*) from trades where abs(cast(volume as bigint)) > 1").fetchone()[0]
    if dead != want:
        print(f"{dead} expression_error dead letters, {want} expected")
        sys.exit(1)
    print(f"{dead} dead letters match")


def bars_5m(con, out):
    """5-minute bars from the 1-minute bars (themselves from the trades the 1-minute windows
    accepted): first/last by the 1-minute start, VWAP from the summed notionals."""
    expected = con.execute(f"""
        with {MARKED},
        bars as (
            select symbol, ws,
                   first(price order by t, line, idx) as open, max(price) as high, min(price) as low,
                   last(price order by t, line, idx) as close, sum(volume) as volume,
                   case when sum(volume) > 0 then sum(price * volume) / sum(volume) end as vwap,
                   count(*) as trades
            from marked
            where ws + 60000 > watermark
            group by symbol, ws
        )
        select symbol, (ws // 300000) * 300000 as w5, w5 + 300000,
               first(open order by ws), max(high), min(low), last(close order by ws),
               sum(volume), sum(vwap * volume), sum(trades), count(*),
               sum(vwap * volume) / nullif(sum(volume), 0)
        from bars group by symbol, w5 order by symbol, w5
    """).fetchall()
    got = con.execute(f"""
        select symbol, epoch_ms(window_start), epoch_ms(window_end), open, high, low, close,
               volume, notional, trades, minutes, vwap
        from read_parquet('{out}/bars_5m/**/*.parquet') order by symbol, window_start
    """).fetchall()
    compare(got, expected)


def notional_rows(con, out):
    """A window over rows made from trades (a derive): the rows keep the trades' lateness,
    NULLs are skipped by the aggregates."""
    expected = con.execute(f"""
        with {MARKED}
        select symbol, ws, sum(price * volume), count(*), max(case when volume >= 50 then volume end),
               avg(case when volume >= 50 then price end), min(price)
        from marked where ws + 60000 > watermark
        group by symbol, ws order by symbol, ws
    """).fetchall()
    got = con.execute(f"""
        select symbol, epoch_ms(window_start), notional, n, big, big_price, low
        from read_parquet('{out}/rows/**/*.parquet') order by symbol, window_start
    """).fetchall()
    compare(got, expected, "windows")


def main():
    name, trades_file, out = sys.argv[1], sys.argv[2], sys.argv[3]
    con = duckdb.connect()
    load_trades(con, trades_file)
    {
        "crypto-returns": crypto_returns,
        "overflowing-derive": overflowing_derive,
        "bars-5m": bars_5m,
        "notional-rows": notional_rows,
    }[name](con, out)


if __name__ == "__main__":
    main()
