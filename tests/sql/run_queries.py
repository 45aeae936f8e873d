"""Runs SQL with DuckDB (an engine independent of tickflow) and reports what each query returned.

stdin:  {"init": ["SQL", ...], "queries": {"NAME": "SQL", ...}, "httpfs": true|false}
stdout: {"NAME": {"rows": N, "columns": [...], "first": [...], "error": "..."}, ...}
"""
import json
import sys

import duckdb

job = json.load(sys.stdin)
con = duckdb.connect()
if job.get("httpfs"):
    # httpfs (gs://, s3://) from its PyPI package (duckdb-extension-httpfs, the same version as
    # duckdb): no download from DuckDB's extension repository.
    import glob
    import os

    import duckdb_extension_httpfs

    found = glob.glob(os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__), "extensions", "v" + duckdb.__version__, "httpfs.duckdb_extension"))
    if not found:
        sys.exit(f"no httpfs extension for duckdb {duckdb.__version__} in duckdb-extension-httpfs")
    con.execute(f"LOAD '{found[0]}'")
for sql in job["init"]:
    con.execute(sql)
out = {}
for name, sql in job["queries"].items():
    try:
        # Values as text (DuckDB renders them; no pytz/pyarrow needed for time zones).
        cur = con.execute("SELECT COLUMNS(*)::VARCHAR FROM (%s)" % sql)
        rows = cur.fetchall()
        out[name] = {
            "rows": len(rows),
            "columns": [d[0] for d in cur.description],
            "first": [str(v) for v in rows[0]] if rows else [],
            "all": [[str(v) for v in r] for r in rows[:500]],
        }
    except Exception as e:  # reported per query, so one bad query does not hide the others
        out[name] = {"rows": 0, "columns": [], "first": [], "all": [], "error": str(e)}
json.dump(out, sys.stdout)
