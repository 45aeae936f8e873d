"""Evaluates expressions with DuckDB, the independent engine of the expression differential test.

    python expressions.py CASE.json RESULT.json

CASE.json: {"columns": [[name, duckdb_type], ...], "rows": [[cell, ...], ...],
            "exprs": [[sql, result_type], ...]}
Cells: null, numbers, strings; doubles as strings ("nan", "inf", "-0.0", repr), timestamps as
epoch milliseconds. RESULT.json: per expression, per row, {"v": value} or {"error": message};
doubles again as repr strings (so NaN, infinities and -0.0 survive JSON), timestamps as epoch ms.
"""
import json
import math
import sys

import duckdb


def cell_in(value, ty):
    if value is None:
        return None
    if ty == "DOUBLE":
        return float(value)
    return value


def cell_out(value, ty):
    if value is None:
        return None
    if ty == "double":
        return repr(float(value))
    return value


def main():
    case = json.load(open(sys.argv[1]))
    con = duckdb.connect()
    cols = case["columns"]
    con.execute(
        "create table t (id bigint, "
        + ", ".join(f'"{n}" {"BIGINT" if ty == "TIMESTAMP" else ty}' for n, ty in cols)
        + ")"
    )
    for i, row in enumerate(case["rows"]):
        values = [i] + [cell_in(v, ty) for v, (_, ty) in zip(row, cols)]
        con.execute(f"insert into t values ({', '.join('?' for _ in values)})", values)
    # Timestamps arrive as epoch ms: the view gives the expressions real TIMESTAMP columns.
    select = ", ".join(
        f'make_timestamp("{n}" * 1000) as "{n}"' if ty == "TIMESTAMP" else f'"{n}"' for n, ty in cols
    )
    con.execute(f"create view v as select id, {select} from t")
    n = len(case["rows"])
    results = []
    for sql, ty in case["exprs"]:
        wrapped = f"epoch_ms(({sql}))" if ty == "timestamp" else f"({sql})"
        try:
            got = con.execute(f"select {wrapped} from v order by id").fetchall()
            results.append([{"v": cell_out(r[0], ty)} for r in got])
        except duckdb.Error:
            # One row's error fails the whole query: ask row by row.
            per_row = []
            for i in range(n):
                try:
                    r = con.execute(f"select {wrapped} from v where id = ?", [i]).fetchone()
                    per_row.append({"v": cell_out(r[0], ty)})
                except duckdb.Error as e:
                    per_row.append({"error": str(e).splitlines()[0]})
            results.append(per_row)
    json.dump(results, open(sys.argv[2], "w"))


main()
