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
               sum(vwap * volume) / nullif(sum(volume), 0),
               sum(vwap * volume) / nullif(sum(volume), 0)
        from bars group by symbol, w5 order by symbol, w5
    """).fetchall()
    got = con.execute(f"""
        select symbol, epoch_ms(window_start), epoch_ms(window_end), open, high, low, close,
               volume, notional, trades, minutes, vwap, vwap_w
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


def ema(xs, span):
    alpha, out, e = 2.0 / (span + 1), [], None
    for x in xs:
        e = x if e is None else alpha * x + (1 - alpha) * e
        out.append(e)
    return out


def wilder_rsi(xs, period):
    """Wilder's RSI, the textbook way: the first averages are means of `period` changes."""
    out, gains, losses, ag, al = [None], [], [], None, None
    for prev, x in zip(xs, xs[1:]):
        d = x - prev
        g, l = max(d, 0.0), max(-d, 0.0)
        if ag is None:
            gains.append(g)
            losses.append(l)
            if len(gains) == period:
                ag, al = sum(gains) / period, sum(losses) / period
        else:
            ag, al = (ag * (period - 1) + g) / period, (al * (period - 1) + l) / period
        if ag is None:
            out.append(None)
        elif al == 0:
            out.append(50.0 if ag == 0 else 100.0)
        else:
            out.append(100 - 100 / (1 + ag / al))
    return out


def rolling_features(con, out):
    """SQL window functions over the 1-minute bars (ROWS 19 PRECEDING, RANGE 5 minutes), EMA and
    RSI computed in Python over each symbol's closes."""
    rows = con.execute(f"""
        with {MARKED},
        bars as (
            select symbol, ws,
                   max(price) as high, min(price) as low,
                   last(price order by t, line, idx) as close, sum(volume) as volume
            from marked where ws + 60000 > watermark group by symbol, ws
        )
        select symbol, ws, close,
               avg(close) over w, stddev_samp(close) over w, max(high) over w, min(low) over w,
               first_value(close) over w, count(*) over w,
               lag(close, 1) over (partition by symbol order by ws),
               lag(close, 3) over (partition by symbol order by ws),
               sum(volume) over (partition by symbol order by ws range between 299999 preceding and current row),
               count(*) over (partition by symbol order by ws range between 299999 preceding and current row)
        from bars
        window w as (partition by symbol order by ws rows between 19 preceding and current row)
        order by symbol, ws
    """).fetchall()
    expected, by_symbol = [], {}
    for r in rows:
        by_symbol.setdefault(r[0], []).append(r)
    for symbol, rs in sorted(by_symbol.items()):
        closes = [r[2] for r in rs]
        for r, e, rsi in zip(rs, ema(closes, 20), wilder_rsi(closes, 14)):
            expected.append(tuple(r[:2]) + tuple(r[3:11]) + (e, rsi) + tuple(r[11:]))
    got = con.execute(f"""
        select symbol, epoch_ms(window_start), sma20, sd20, high20, low20, first20, n20, prev, prev3,
               ema20, rsi14, vol5m, bars5m
        from read_parquet('{out}/features/**/*.parquet') order by symbol, window_start
    """).fetchall()
    if not any(r[11] is not None for r in got) or not any(r[9] is not None for r in got):
        print("no row has an RSI or a 3-row lag: the input is too short to check them")
        sys.exit(1)
    compare(got, expected, "feature rows")


def session_bars(con, out):
    """Bars of NYSE sessions (from the `exchange-calendars` package), of the extended session
    (04:00 New York time to 4 hours after the close) in 30 minutes from 04:00, and of New York
    days (local midnights from Python's zoneinfo): a trade counts when its window had not
    closed (window end > watermark) when it was read."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    import exchange_calendars as xc

    ny = ZoneInfo("America/New_York")
    lo, hi = con.execute("select min(t), max(t) from trades").fetchone()
    day = lambda ms: dt.datetime.fromtimestamp(ms / 1000, ny).date()
    cal = xc.get_calendar("XNYS", start=str(day(lo) - dt.timedelta(days=3)),
                          end=str(day(hi) + dt.timedelta(days=3)))
    ms = lambda ts: int(ts.timestamp() * 1000)
    sessions = []
    for s, o, c in zip(cal.sessions, cal.schedule.open, cal.schedule.close):
        ext_open = dt.datetime.combine(s.date(), dt.time(4, 0), ny)
        sessions.append((str(s.date()), ms(o), ms(c), ms(ext_open), ms(c) + 4 * 3_600_000))
    con.execute("create table sessions(d varchar, open bigint, close bigint, ext_open bigint, ext_close bigint)")
    con.executemany("insert into sessions values (?, ?, ?, ?, ?)", sessions)
    days, fx_days, months = [], [], []
    for (t,) in con.execute("select distinct t from trades").fetchall():
        d = day(t)
        start = dt.datetime.combine(d, dt.time(0), ny)
        end = dt.datetime.combine(d + dt.timedelta(days=1), dt.time(0), ny)
        days.append((t, str(d), ms(start), ms(end)))
        first = d.replace(day=1)
        following = (first + dt.timedelta(days=32)).replace(day=1)
        months.append((t, str(first), ms(dt.datetime.combine(first, dt.time(0), ny)),
                       ms(dt.datetime.combine(following, dt.time(0), ny))))
        # An FX trading day runs from 17:00 New York time the day before to 17:00, Monday to
        # Friday: a trade after 17:00 belongs to the next day's session.
        fx = d + dt.timedelta(days=1) if dt.datetime.fromtimestamp(t / 1000, ny).hour >= 17 else d
        if fx.weekday() < 5:
            fx_start = dt.datetime.combine(fx - dt.timedelta(days=1), dt.time(17, 0), ny)
            fx_end = dt.datetime.combine(fx, dt.time(17, 0), ny)
            fx_days.append((t, str(fx), ms(fx_start), ms(fx_end)))
    con.execute("create table local_days(t bigint, d varchar, ws bigint, we bigint)")
    con.executemany("insert into local_days values (?, ?, ?, ?)", days)
    con.execute("create table local_months(t bigint, d varchar, ws bigint, we bigint)")
    con.executemany("insert into local_months values (?, ?, ?, ?)", months)
    con.execute("create table fx_days(t bigint, d varchar, ws bigint, we bigint)")
    con.executemany("insert into fx_days values (?, ?, ?, ?)", fx_days)
    watermark = """max(t) over (order by line, idx rows between unbounded preceding and current row) - 2000"""
    # Each bar's `date=` partition is its session's (or its local) date, not window_start's UTC
    # date: an FX day opens on the UTC day before.
    bar = """symbol, ws, we, d,
             first(price order by t, line, idx), max(price), min(price),
             last(price order by t, line, idx), sum(volume), count(*)"""
    windows = {
        "daily": "select tr.*, s.d, s.open as ws, s.close as we from marked tr join sessions s on s.open <= t and t < s.close",
        "bars_30m": """select *, least(ws + 1800000, ext_close) as we from (
                         select tr.*, s.d, s.ext_close, s.ext_open + ((tr.t - s.ext_open) // 1800000) * 1800000 as ws
                         from marked tr join sessions s on s.ext_open <= tr.t and tr.t < s.ext_close)""",
        "new_york_days": "select tr.*, d.d, d.ws, d.we from marked tr join local_days d using (t)",
        "fx_days": "select tr.*, d.d, d.ws, d.we from marked tr join fx_days d using (t)",
        "new_york_months": "select tr.*, d.d, d.ws, d.we from marked tr join local_months d using (t)",
    }
    covered = {}
    for name, assign in windows.items():
        expected = con.execute(f"""
            with marked as (select *, {watermark} as watermark from trades),
            assigned as ({assign})
            select {bar} from assigned where we > watermark group by symbol, ws, we, d order by symbol, ws
        """).fetchall()
        got = con.execute(f"""
            select symbol, epoch_ms(window_start), epoch_ms(window_end), cast(date as varchar),
                   open, high, low, close, volume, trades
            from read_parquet('{out}/{name}/**/*.parquet', hive_partitioning = true) order by symbol, window_start
        """).fetchall()
        compare(got, expected, f"{name} bars")
        lengths = {(we - ws) // 60000 for (_, ws, we, *_) in expected}
        covered[name] = lengths
    # The input must exercise what the windows are about: 23- and 25-hour days, an early close
    # (a 3.5-hour session), 30-minute windows cut by a close, trades outside every session, and
    # trades too late for their window.
    outside, late = con.execute(f"""
        with marked as (select *, {watermark} as watermark from trades)
        select count(*) filter (where not exists (select 1 from sessions s where s.open <= t and t < s.close)),
               count(*) filter (where exists (select 1 from sessions s where s.open <= t and t < s.close and s.close <= watermark))
        from marked
    """).fetchone()
    needs = [
        ("a 23-hour New York day", 23 * 60 in covered["new_york_days"]),
        ("a 25-hour New York day", 25 * 60 in covered["new_york_days"]),
        ("an early close", 210 in covered["daily"]),
        ("a full session", 390 in covered["daily"]),
        ("trades outside the sessions", outside > 0),
        ("late trades", late > 0),
        ("an FX day dated after its UTC start", any(
            d != str(dt.datetime.fromtimestamp(ws / 1000, dt.timezone.utc).date())
            for (ws, d) in con.execute("select ws, d from fx_days").fetchall())),
    ]
    missing = [what for what, ok in needs if not ok]
    if missing:
        print("the input lacks " + ", ".join(missing))
        sys.exit(1)
    print(f"{outside} trades outside the regular sessions, {late} late: covered")


def gap_filled(con, out):
    """Gap filling: every window of a symbol's grid (1 minute; 15 minutes of NYSE sessions from
    `exchange-calendars`) from its first bar on, while the window starts less than `fill_for`
    after the end of the symbol's latest bar with trades; an empty window is a flat bar at the
    last close with volume 0 (`previous`) or NULLs (`null`), and count 0."""
    import exchange_calendars as xc
    import datetime as dt

    lo, hi = con.execute("select min(t), max(t) from trades").fetchone()
    day = lambda ms: dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).date()
    cal = xc.get_calendar("XNYS", start=str(day(lo) - dt.timedelta(days=3)),
                          end=str(day(hi) + dt.timedelta(days=5)))
    ms = lambda ts: int(ts.timestamp() * 1000)
    size = 15 * 60000
    windows = []
    for o, c in zip(cal.schedule.open, cal.schedule.close):
        for ws in range(ms(o), ms(c), size):
            windows.append((ws, min(ws + size, ms(c))))
    con.execute("create table session_windows(ws bigint, we bigint)")
    con.executemany("insert into session_windows values (?, ?)", windows)
    minute = 60000
    minutes = f"""select distinct s.symbol, unnest(generate_series(
                      (select min(t) // {minute} * {minute} from trades), ({hi} // {minute} + 20) * {minute}, {minute})) as ws
                  from (select distinct symbol from trades) s"""
    cases = {
        # name: (window of a trade, the grid of windows, fill_for, mode)
        "bars_1m": (f"(t // {minute}) * {minute}", f"{minute}", f"select symbol, ws, ws + {minute} as we from ({minutes})", 10 * minute, "previous"),
        "quiet_1m": (f"(t // {minute}) * {minute}", f"{minute}", f"select symbol, ws, ws + {minute} as we from ({minutes})", 3 * minute, "null"),
        "session_15m": (None, None, "select symbol, ws, we from session_windows, (select distinct symbol from trades)", 86_400_000, "previous"),
    }
    watermark = "max(t) over (order by line, idx rows between unbounded preceding and current row) - 2000"
    filled_total = 0
    for name, (assign, size_sql, grid, fill_for, mode) in cases.items():
        if assign is None:
            assigned = f"""select m.*, w.ws, w.we from marked m join session_windows w on w.ws <= m.t and m.t < w.we"""
        else:
            assigned = f"select *, {assign} as ws, {assign} + {size_sql} as we from marked"
        rows = con.execute(f"""
            with marked as (select *, {watermark} as watermark from trades),
            assigned as ({assigned}),
            real as (
                select symbol, ws, we, first(price order by t, line, idx) as open, max(price) as high,
                       min(price) as low, last(price order by t, line, idx) as close,
                       sum(volume) as volume, count(*) as trades
                from assigned where we > watermark group by symbol, ws, we
            ),
            grid as (
                select g.* from ({grid}) g join (select symbol, min(ws) as first from real group by symbol) f
                  on g.symbol = f.symbol and g.ws >= f.first
            ),
            joined as (
                select g.symbol, g.ws, g.we, r.open, r.high, r.low, r.close, r.volume, r.trades,
                       r.ws is not null as is_real,
                       max(r.we) over (partition by g.symbol order by g.ws rows between unbounded preceding and current row) as last_end,
                       last_value(r.close ignore nulls) over (partition by g.symbol order by g.ws rows between unbounded preceding and current row) as carry
                from grid g left join real r on r.symbol = g.symbol and r.ws = g.ws
            )
            select symbol, ws, we, open, high, low, close, volume, trades, is_real, carry
            from joined where is_real or ws < last_end + {fill_for}
            order by symbol, ws
        """).fetchall()
        expected = []
        for (sym, ws, we, o, h, l, c, v, n, is_real, carry) in rows:
            if is_real:
                row = (sym, ws, we, o, h, l, c, v, n, False)
            elif mode == "previous":
                row = (sym, ws, we, carry, carry, carry, carry, 0.0, 0, True)
                filled_total += 1
            else:
                row = (sym, ws, we, None, None, None, None, None, 0, True)
                filled_total += 1
            if name == "quiet_1m":
                row = row[:3] + (row[6], row[7], row[8], row[9])
            expected.append(row)
        cols = "close, volume, trades, filled" if name == "quiet_1m" else "open, high, low, close, volume, trades, filled"
        got = con.execute(f"""
            select symbol, epoch_ms(window_start), epoch_ms(window_end), {cols}
            from read_parquet('{out}/{name}/**/*.parquet') order by symbol, window_start
        """).fetchall()
        compare(got, expected, f"{name} bars")
    if filled_total == 0:
        print("the input has no gaps to fill")
        sys.exit(1)


def sample_bars(rows, amount, size):
    """Bars over (symbol, t, price, volume) in event-time order: a bar takes trades until its
    amount reaches `size`; the trade that reaches it closes the bar; the last open bar of each
    symbol is partial. A plain loop, independent of tickflow's operator."""
    bars, cur = [], None

    def close(b, partial):
        vwap = b["pv"] / b["vol"] if b["vol"] > 0 else None
        return (b["sym"], b["start"], b["end"], b["o"], b["h"], b["l"], b["c"], b["vol"], vwap, b["n"], partial)

    for sym, t, p, v in rows:
        if cur is not None and cur["sym"] != sym:
            bars.append(close(cur, True))
            cur = None
        if cur is None:
            cur = dict(sym=sym, start=t, end=t, o=p, h=p, l=p, c=p, vol=0.0, pv=0.0, n=0, held=0.0)
        cur["end"], cur["h"], cur["l"], cur["c"] = t, max(cur["h"], p), min(cur["l"], p), p
        cur["vol"] += v
        cur["pv"] += p * v
        cur["n"] += 1
        cur["held"] += amount(p, v)
        if cur["held"] >= size:
            bars.append(close(cur, False))
            cur = None
    if cur is not None:
        bars.append(close(cur, True))
    return bars


def volume_bars(con, out):
    """Tick, volume and dollar bars per symbol over the trades that were not late — a trade is
    late when its time is behind the dataflow time it was read at: the watermark, quantized to
    the minute (the spec's 1-minute window sets the quantum) — in event-time order, ties in file
    order. Volume bars of 1-minute bars (the bars as in the other examples) in window_start order."""
    q = 60000
    trades = con.execute(f"""
        with marked as (
            select *, max(t) over (order by line, idx rows between unbounded preceding and current row) - 2000 as wm
            from trades
        )
        select symbol, t, price, volume from marked
        where t >= case when wm <= 0 then 0 else (wm // {q}) * {q} end
        order by symbol, t, line, idx
    """).fetchall()
    cols = "symbol, epoch_ms(window_start), epoch_ms(window_end), open, high, low, close, volume, vwap, trades, partial"
    cases = {
        "ticks": (lambda p, v: 1.0, 50),
        "volume": (lambda p, v: v, 5000),
        "dollars": (lambda p, v: p * v, 500000),
    }
    for name, (amount, size) in cases.items():
        expected = sample_bars(trades, amount, size)
        got = con.execute(f"select {cols} from read_parquet('{out}/{name}/**/*.parquet')").fetchall()
        compare(sorted(got, key=repr), sorted(expected, key=repr), f"{name} bars")
        if not any(b[-1] for b in expected) or not any(not b[-1] for b in expected):
            print(f"{name}: the input gives no complete or no partial bar")
            sys.exit(1)
    bars = con.execute(f"""
        with {MARKED}
        select symbol, ws, first(price order by t, line, idx), last(price order by t, line, idx), sum(volume)
        from marked where ws + 60000 > watermark group by symbol, ws order by symbol, ws
    """).fetchall()
    expected, cur = [], None
    for sym, ws, o, c, v in bars:
        if cur is not None and cur[0] != sym:
            expected.append(tuple(cur) + (True,))
            cur = None
        if cur is None:
            cur = [sym, ws, ws, o, c, 0.0, 0]
        cur[2], cur[4] = ws, c
        cur[5] += v
        cur[6] += 1
        if cur[5] >= 20000:
            expected.append(tuple(cur) + (False,))
            cur = None
    if cur is not None:
        expected.append(tuple(cur) + (True,))
    got = con.execute(f"""
        select symbol, epoch_ms(window_start), epoch_ms(window_end), open, close, volume, bars, partial
        from read_parquet('{out}/volume_of_bars/**/*.parquet')
    """).fetchall()
    compare(sorted(got, key=repr), sorted(expected, key=repr), "volume bars of 1-minute bars")


def revised_bars(con, out):
    """1-minute bars accept a trade while its minute ended less than 30 s before the watermark
    it was read at; their highest revisions are the bars of the accepted trades. The highest
    revision of each 5-minute bar equals the 5-minute bar of those final 1-minute bars."""
    final_1m = con.execute(f"""
        with {MARKED}
        select symbol, ws, first(price order by t, line, idx), max(price), min(price),
               last(price order by t, line, idx), sum(volume), count(*)
        from marked where ws + 60000 + 30000 > watermark group by symbol, ws order by symbol, ws
    """).fetchall()
    latest = lambda name, cols: con.execute(f"""
        select {cols} from (
            select *, row_number() over (partition by symbol, window_start order by revision desc) as rk
            from read_parquet('{out}/{name}/**/*.parquet'))
        where rk = 1 order by symbol, window_start
    """).fetchall()
    got_1m = latest("bars_1m", "symbol, epoch_ms(window_start), open, high, low, close, volume, trades")
    compare(got_1m, final_1m, "1-minute bars (highest revisions)")
    con.execute("create table final_1m(symbol varchar, ws bigint, open double, high double, low double, close double, volume double, trades bigint)")
    con.executemany("insert into final_1m values (?, ?, ?, ?, ?, ?, ?, ?)", final_1m)
    expected = con.execute("""
        select symbol, (ws // 300000) * 300000 as w5, first(open order by ws), max(high), min(low),
               last(close order by ws), sum(volume), sum(trades), count(*)
        from final_1m group by symbol, w5 order by symbol, w5
    """).fetchall()
    got = latest("bars_5m", "symbol, epoch_ms(window_start), open, high, low, close, volume, trades, bars")
    compare(got, expected, "5-minute bars (highest revisions)")
    revised = con.execute(f"""
        select count(*) filter (where revision > 0) from read_parquet('{out}/bars_5m/**/*.parquet')
    """).fetchone()[0]
    if revised == 0:
        print("the input revises no 5-minute bar")
        sys.exit(1)
    print(f"{revised} revisions of 5-minute bars")


def top_movers(con, out):
    """Each minute's highest revision of a ranking equals the ranking (row_number over the
    minute, ties by symbol) of the final 1-minute bars: those of the trades accepted within
    90 s of lateness."""
    con.execute(f"""
        create table final_1m as
        with {MARKED}
        select symbol, ws, first(price order by t, line, idx) as open,
               last(price order by t, line, idx) as close, sum(volume) as volume
        from marked where ws + 60000 + 90000 > watermark group by symbol, ws
    """)
    again, nulls = 0, 0
    for name, n, by in [("movers", 3, "abs(close / open - 1) desc nulls last"),
                        ("gainers", 3, "case when close > open then close / open - 1 end desc nulls last"),
                        ("quietest", 2, "nullif(volume, 0) asc nulls last")]:
        expected = con.execute(f"""
            select * from (
                select ws, row_number() over (partition by ws order by {by}, symbol) as rk,
                       symbol, open, close, volume
                from final_1m)
            where rk <= {n} order by ws, rk
        """).fetchall()
        got = con.execute(f"""
            with r as (select *, max(revision) over (partition by window_start) as last
                       from read_parquet('{out}/{name}/**/*.parquet'))
            select epoch_ms(window_start), rank, symbol, open, close, volume
            from r where revision = last order by window_start, rank
        """).fetchall()
        compare(got, expected, f"{name} (highest revisions)")
        revised = con.execute(f"""
            select count(distinct window_start) filter (where revision > 0)
            from read_parquet('{out}/{name}/**/*.parquet')
        """).fetchone()[0]
        print(f"{name}: {revised} minutes ranked again")
        again += revised
    nulls = con.execute(f"""
        select count(*) from read_parquet('{out}/gainers/**/*.parquet') where close <= open
    """).fetchone()[0]
    print(f"{nulls} rows ranked with a NULL value")
    if again == 0 or nulls == 0:
        print("the input exercises no revised ranking or no NULL value")
        sys.exit(1)


def sector_bars(con, out, sectors):
    """Trades left-joined with the sectors CSV (read by DuckDB's own CSV reader), 1-minute bars
    per sector (unlisted symbols under `unknown`), and 1-minute bars per symbol with their
    sector, exchange and shares."""
    con.execute(f"create table sectors as select * from read_csv('{sectors}', header = true, all_varchar = true)")
    expected = con.execute(f"""
        with {MARKED}
        select coalesce(s.sector, 'unknown') as sector, ws, sum(volume),
               case when sum(volume) > 0 then sum(price * volume) / sum(volume) end, count(*)
        from marked m left join sectors s on s.symbol = m.symbol
        where ws + 60000 > watermark
        group by all order by sector, ws
    """).fetchall()
    got = con.execute(f"""
        select sector, epoch_ms(window_start), volume, vwap, trades
        from read_parquet('{out}/sector_bars/**/*.parquet') order by sector, window_start
    """).fetchall()
    compare(got, expected, "sector bars")
    expected = con.execute(f"""
        with {MARKED},
        bars as (
            select symbol, ws, first(price order by t, line, idx) as open,
                   last(price order by t, line, idx) as close, sum(volume) as volume
            from marked where ws + 60000 > watermark group by symbol, ws)
        select b.symbol, ws, open, close, volume, s.sector, s.exchange, cast(nullif(s.shares_out_m, '') as double)
        from bars b left join sectors s on s.symbol = b.symbol order by b.symbol, ws
    """).fetchall()
    got = con.execute(f"""
        select symbol, epoch_ms(window_start), open, close, volume, sector, venue, shares_out_m
        from read_parquet('{out}/bars/**/*.parquet') order by symbol, window_start
    """).fetchall()
    compare(got, expected, "bars with their sector")
    unlisted = con.execute(f"""
        select count(*) from read_parquet('{out}/bars/**/*.parquet') where sector is null
    """).fetchone()[0]
    nulls = con.execute(f"""
        select count(*) from read_parquet('{out}/bars/**/*.parquet') where sector is not null and shares_out_m is null
    """).fetchone()[0]
    print(f"{unlisted} bars of unlisted symbols, {nulls} with a NULL column of a listed one")
    if unlisted == 0 or nulls == 0:
        print("the input exercises no unmatched key or no NULL value")
        sys.exit(1)


def eur_usd(con, out):
    """Each EUR trade that is not late (its time at or after the watermark it was read at, in
    the dataflow's 1-second steps) with the latest OANDA:EUR_USD price at or before it (the last
    one read among equal times; late ones left out), if at most a minute old: DuckDB's ASOF LEFT
    JOIN."""
    expected = con.execute(f"""
        with {MARKED},
        stamped as (select *, (watermark // 1000) * 1000 as dt from marked),
        lefts as (select * from stamped where ends_with(symbol, 'EUR') and t >= dt),
        rights as (
            select t, last(price order by line, idx) as price
            from stamped where symbol = 'OANDA:EUR_USD' and t >= dt group by t)
        select l.symbol, l.t, l.price, l.volume,
               case when l.t - r.t <= 60000 then r.price end as rate,
               case when l.t - r.t <= 60000 then r.t end as rate_time,
               case when l.t - r.t <= 60000 then l.price * r.price end
        from lefts l asof left join rights r on l.t >= r.t
        order by l.symbol, l.t, l.price, l.volume
    """).fetchall()
    got = con.execute(f"""
        select symbol, epoch_ms(timestamp), price, volume, rate, epoch_ms(rate_time), price_usd
        from read_parquet('{out}/usd_trades/**/*.parquet') order by symbol, timestamp, price, volume
    """).fetchall()
    compare(got, expected, "EUR trades with their rate")
    missing = sum(1 for r in got if r[4] is None)
    print(f"{missing} trades without a rate within a minute")
    if missing == 0 or missing == len(got):
        print("the input exercises no tolerance (or no match)")
        sys.exit(1)


def market_breadth(con, out):
    """Breadth per minute: the 1-minute bars of the accepted trades grouped by minute (the whole
    market) and by minute and asset class: advancing, declining, symbols, up and down volume."""
    con.execute(f"""
        create table bars as
        with {MARKED}
        select symbol, ws, first(price order by t, line, idx) as open,
               last(price order by t, line, idx) as close, sum(volume) as volume
        from marked where ws + 60000 > watermark group by symbol, ws
    """)
    sums = """count(*) filter (where close > open), count(*) filter (where close < open), count(*),
              coalesce(sum(volume) filter (where close > open), 0),
              coalesce(sum(volume) filter (where close < open), 0)"""
    cols = "advancing, declining, symbols, up_volume, down_volume"
    expected = con.execute(f"select 'all', ws, {sums} from bars group by ws order by ws").fetchall()
    got = con.execute(f"""
        select market, epoch_ms(window_start), {cols}
        from read_parquet('{out}/breadth/**/*.parquet') order by window_start
    """).fetchall()
    compare(got, expected, "market breadth")
    expected = con.execute(f"""
        select case when starts_with(symbol, 'BINANCE:') then 'crypto'
                    when starts_with(symbol, 'OANDA:') then 'forex' else 'equity' end as class,
               ws, {sums}
        from bars group by all order by class, ws
    """).fetchall()
    got = con.execute(f"""
        select class, epoch_ms(window_start), {cols}
        from read_parquet('{out}/class_breadth/**/*.parquet') order by class, window_start
    """).fetchall()
    compare(got, expected, "breadth per asset class")
    mixed = con.execute("select count(*) from (select ws from bars group by ws having count(*) filter (where close > open) > 0 and count(*) filter (where close < open) > 0)").fetchone()[0]
    if mixed == 0:
        print("the input has no minute with both advancing and declining symbols")
        sys.exit(1)


def main():
    name, trades_file, out = sys.argv[1], sys.argv[2], sys.argv[3]
    con = duckdb.connect()
    load_trades(con, trades_file)
    {
        "crypto-returns": crypto_returns,
        "overflowing-derive": overflowing_derive,
        "bars-5m": bars_5m,
        "notional-rows": notional_rows,
        "rolling-features": rolling_features,
        "session-bars": session_bars,
        "gap-filled-bars": gap_filled,
        "volume-bars": volume_bars,
        "revised-bars": revised_bars,
        "top-movers": top_movers,
        "market-breadth": market_breadth,
        "eur-usd": eur_usd,
        "sector-bars": lambda con, out: sector_bars(con, out, "../../specs/sample/sectors.csv"),
    }[name](con, out)


if __name__ == "__main__":
    main()
