"""Baseline: the logs contract as one DuckDB job, the single-node reference.

Same input, rules and outputs as ``plain_spark_job.py`` (shared/contracts/logs.md):
reads ``raw/`` directly, writes processed, rejected and gold Parquet. DuckDB has
no XML reader, so ``<error>`` elements are parsed with Python's streaming
``iterparse`` into an Arrow table that DuckDB then queries; JSON lines are read
by DuckDB itself (``read_csv`` with one column per line, gzip by extension) and
parsed with its JSON functions.

Like the Spark baseline it assumes every input file is readable (the benchmark
leaves the unreadable ones out) and that a gzip JSON array has one element per line.

    python benchmarks/baselines/duckdb_job.py --input RAW --output OUT [--threads 2]

Prints one JSON line with phase timings to stdout.
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import time
import uuid

ACCESS_FIELDS = ("timestamp", "service", "request_id", "method", "path", "status", "host",
                 "client_ip", "user_id", "user_agent", "bytes_sent", "latency_ms")
ACCESS_REQUIRED = ("timestamp", "service", "request_id", "method", "path", "status")
ERROR_FIELDS = ("timestamp", "service", "level", "message", "host", "code", "request_id")
ERROR_REQUIRED = ("timestamp", "service", "level", "message")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
LEVELS = ("WARN", "ERROR", "CRITICAL")

# RE2, matched against the whole value with regexp_full_match.
ISO = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
       r"(Z|[+-](0[0-9]|1[0-7]):[0-5][0-9]|[+-]18:00)")
NUMBER = r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?"
MIN_EPOCH, MAX_EPOCH = -62135596800, 253402300799


def sql_list(values) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def macros(con, ingest_ts: dt.datetime, start: dt.date) -> None:
    """Event-time parsing and the range rule, once, as SQL macros."""
    con.execute(f"""
    CREATE MACRO epoch_ts(d) AS CASE WHEN d BETWEEN {MIN_EPOCH} AND {MAX_EPOCH}
        THEN make_timestamp(floor(d * 1000000)::BIGINT) END;
    CREATE MACRO event_ts(t) AS CASE
        WHEN regexp_full_match(t, '{ISO}') THEN CASE
            WHEN try_cast(t AS TIMESTAMPTZ) >= TIMESTAMPTZ '0001-01-01 00:00:00+00'
            THEN try_cast(t AS TIMESTAMPTZ)::TIMESTAMP END
        WHEN regexp_full_match(t, '{NUMBER}') THEN epoch_ts(
            CASE WHEN try_cast(t AS DECIMAL(38, 9)) > 100000000000 THEN try_cast(t AS DECIMAL(38, 9)) / 1000
                 ELSE try_cast(t AS DECIMAL(38, 9)) END)
    END;
    CREATE MACRO out_of_range(ts) AS ts IS NOT NULL AND (ts::DATE < DATE '{start.isoformat()}'
        OR ts > TIMESTAMP '{ingest_ts.strftime("%Y-%m-%d %H:%M:%S.%f")}' + INTERVAL 1 DAY);
    CREATE MACRO routed(ts) AS CASE WHEN ts IS NOT NULL AND NOT out_of_range(ts) THEN ts::DATE
        ELSE DATE '{ingest_ts.date().isoformat()}' END;
    CREATE MACRO missing(v) AS v IS NULL OR v = '';
    """)


def reasons_sql(rules: list[tuple[str, str]]) -> str:
    """Every rule broken, in contract order (empty list: valid)."""
    cases = ", ".join(f"CASE WHEN {cond} THEN '{name}' END" for name, cond in rules)
    return f"list_filter([{cases}], lambda x: x IS NOT NULL)"


def load_access(con, root: str, ingest_ts, start, run_id: str) -> None:
    """Parse every JSON line into the ``access`` table: typed columns plus ``reasons``."""
    line_opts = ("columns={'line': 'VARCHAR'}, header=false, delim=E'\\x1f', quote='', escape='', "
                 "auto_detect=false, filename=true, compression='auto', new_line='\\n', strict_mode=false")
    parts = []
    for fmt in ("ndjson", "json_gzip"):
        files = sorted(f for f in glob.glob(os.path.join(root, fmt, "**", "*"), recursive=True) if os.path.isfile(f))
        if not files:
            continue
        line = "line"
        where = "trim(line) <> ''"
        if fmt == "json_gzip":  # a JSON array, one element per line: drop brackets and trailing commas
            line = r"regexp_replace(line, ',\s*$', '')"
            where += " AND trim(line) NOT IN ('[', ']')"
        parts.append(f"SELECT {line} AS record, '{fmt}' AS source_format, filename AS source_file "
                     f"FROM read_csv({sql_list(files)}, {line_opts}) WHERE {where}")
    if not parts:
        parts.append("SELECT NULL::VARCHAR AS record, NULL AS source_format, NULL AS source_file WHERE false")
    paths = ", ".join(f"'$.{f}'" for f in ACCESS_FIELDS)
    c = {f: f"v[{i + 1}]" for i, f in enumerate(ACCESS_FIELDS)}
    rules = [("malformed_record", "malformed")]
    rules += [(f"missing_field:{n}", f"NOT malformed AND missing({c[n]})") for n in ACCESS_REQUIRED]
    rules += [
        ("invalid_timestamp", f"NOT malformed AND NOT missing({c['timestamp']}) AND ts IS NULL"),
        ("timestamp_out_of_range", "out_of_range(ts)"),
        ("invalid_status", f"NOT malformed AND NOT missing({c['status']}) "
                           "AND NOT coalesce(status BETWEEN 100 AND 599, false)"),
        ("invalid_method", f"NOT malformed AND NOT missing({c['method']}) "
                           f"AND NOT coalesce(method IN {tuple(METHODS)}, false)"),
        ("negative_value:bytes_sent", "coalesce(bytes_sent < 0, false)"),
        ("negative_value:latency_ms", "coalesce(latency_ms < 0, false)"),
        ("invalid_type:bytes_sent", f"{c['bytes_sent']} IS NOT NULL AND bytes_sent IS NULL"),
        ("invalid_type:latency_ms", f"{c['latency_ms']} IS NOT NULL AND (latency_ms IS NULL OR isnan(latency_ms))"),
    ]
    known = "{" + ",".join(f'"{f}":null' for f in ACCESS_FIELDS) + "}"
    con.execute(f"""
    CREATE TABLE access AS
    WITH lines AS ({" UNION ALL ".join(parts)}),
    j AS (
        SELECT *, NOT CASE WHEN json_valid(record) THEN json_type(record) = 'OBJECT' ELSE false END AS malformed
        FROM lines),
    fields AS (
        SELECT *, CASE WHEN NOT malformed THEN json_extract_string(record, [{paths}]) END AS v FROM j),
    typed AS (
        SELECT *, event_ts({c['timestamp']}) AS ts,
               CASE WHEN regexp_full_match({c['status']}, '[0-9]{{1,3}}')
                    THEN try_cast({c['status']} AS INTEGER) END AS status,
               upper({c['method']}) AS method,
               try_cast({c['bytes_sent']} AS BIGINT) AS bytes_sent,
               try_cast({c['latency_ms']} AS DOUBLE) AS latency_ms
        FROM fields)
    SELECT ts AS event_ts, ts::DATE AS event_date, {c['service']} AS service, {c['host']} AS host,
           {c['request_id']} AS request_id, {c['client_ip']} AS client_ip, {c['user_id']} AS user_id,
           method, {c['path']} AS path, status, bytes_sent, latency_ms, {c['user_agent']} AS user_agent,
           CASE WHEN NOT malformed THEN nullif(json_merge_patch(record, '{known}')::VARCHAR, '{{}}') END AS attributes,
           source_format, source_file, '{run_id}' AS ingest_run_id, record, routed(ts) AS routed_date,
           {reasons_sql(rules)} AS reasons
    FROM typed
    """)


def xml_elements(root: str):
    """Every child element of each file's ``<errors>`` root, streamed: as an Arrow table."""
    import xml.etree.ElementTree as ET

    import pyarrow as pa

    cols: dict[str, list] = {k: [] for k in ("record", "tag", "source_file", *ERROR_FIELDS)}
    files = sorted(f for f in glob.glob(os.path.join(root, "xml_errors", "**", "*"), recursive=True)
                   if os.path.isfile(f))
    for path in files:
        depth = 0
        top = None
        for event, elem in ET.iterparse(path, events=("start", "end")):
            if event == "start":
                depth += 1
                if depth == 1:
                    top = elem
                continue
            depth -= 1
            if depth != 1:
                continue
            elem.tail = None
            fields = {child.tag: child.text or "" for child in elem}
            cols["record"].append(ET.tostring(elem, encoding="unicode"))
            cols["tag"].append(elem.tag)
            cols["source_file"].append(path)
            for f in ERROR_FIELDS:
                cols[f].append(fields.get(f))
            top.remove(elem)
    return pa.table({k: pa.array(v, pa.string()) for k, v in cols.items()})


def load_errors(con, root: str, run_id: str) -> None:
    """Parse ``<error>`` elements into the ``errors`` table: typed columns plus ``reasons``."""
    con.register("xml_raw", xml_elements(root))
    rules = [("malformed_record", "malformed")]
    rules += [(f"missing_field:{n}", f"NOT malformed AND {'message IS NULL' if n == 'message' else f'missing({n})'}")
              for n in ERROR_REQUIRED]
    rules += [
        ("invalid_timestamp", "NOT malformed AND NOT missing(timestamp) AND ts IS NULL"),
        ("timestamp_out_of_range", "out_of_range(ts)"),
        ("invalid_level", "NOT malformed AND NOT missing(level) "
                          f"AND NOT coalesce(upper(level) IN {tuple(LEVELS)}, false)"),
    ]
    con.execute(f"""
    CREATE TABLE errors AS
    WITH typed AS (SELECT *, tag <> 'error' AS malformed, event_ts(timestamp) AS ts FROM xml_raw)
    SELECT ts AS event_ts, ts::DATE AS event_date, service, nullif(host, '') AS host, upper(level) AS level,
           nullif(code, '') AS code, coalesce(message, '') AS message, nullif(request_id, '') AS request_id,
           source_file, '{run_id}' AS ingest_run_id, record, 'xml_errors' AS source_format,
           routed(ts) AS routed_date, {reasons_sql(rules)} AS reasons
    FROM typed
    """)
    con.unregister("xml_raw")


def copy_by_day(con, query: str, date_col: str, path: str) -> None:
    """Parquet under year=/month=/day=, one file per day, as our pipeline lays it out."""
    os.makedirs(path, exist_ok=True)
    con.execute(f"""
    COPY (SELECT *, strftime({date_col}, '%Y') AS year, strftime({date_col}, '%m') AS month,
                 strftime({date_col}, '%d') AS day FROM ({query}))
    TO '{path}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (year, month, day), OVERWRITE_OR_IGNORE)
    """)


GOLD = """
WITH per_request AS (
    SELECT event_date, service, request_id,
           min(struct_pack(event_ts, status, bytes_sent, latency_ms, source_file)) AS r
    FROM access_valid GROUP BY ALL),
req AS (
    SELECT event_date, service, count(*) AS requests,
           count_if(r.status BETWEEN 400 AND 499) AS client_errors,
           count_if(r.status BETWEEN 500 AND 599) AS server_errors,
           sum(coalesce(r.bytes_sent, 0)) AS bytes_sent,
           quantile_disc(r.latency_ms, 0.5) AS p50_latency_ms,
           quantile_disc(r.latency_ms, 0.95) AS p95_latency_ms
    FROM per_request GROUP BY ALL),
uniq AS (
    SELECT event_date, service, count(DISTINCT user_id) AS unique_users, count(DISTINCT client_ip) AS unique_clients
    FROM access_valid GROUP BY ALL),
err AS (
    SELECT event_date, service, count(*) AS error_events, count_if(level = 'CRITICAL') AS critical_events
    FROM (SELECT DISTINCT event_ts, event_date, service, host, level, code, message, request_id FROM errors_valid)
    GROUP BY ALL),
acc AS (SELECT * FROM req LEFT JOIN uniq USING (event_date, service))
SELECT coalesce(acc.event_date, err.event_date) AS date, coalesce(acc.service, err.service) AS service,
       coalesce(requests, 0)::BIGINT AS requests, coalesce(client_errors, 0)::BIGINT AS client_errors,
       coalesce(server_errors, 0)::BIGINT AS server_errors, coalesce(unique_users, 0)::BIGINT AS unique_users,
       coalesce(unique_clients, 0)::BIGINT AS unique_clients, coalesce(acc.bytes_sent, 0)::BIGINT AS bytes_sent,
       p50_latency_ms::DOUBLE AS p50_latency_ms, p95_latency_ms::DOUBLE AS p95_latency_ms,
       coalesce(error_events, 0)::BIGINT AS error_events, coalesce(critical_events, 0)::BIGINT AS critical_events
FROM acc FULL OUTER JOIN err ON acc.event_date = err.event_date AND acc.service = err.service
"""

ACCESS_COLUMNS = ("event_ts, event_date, service, host, request_id, client_ip, user_id, method, path, status, "
                  "bytes_sent, latency_ms, user_agent, attributes, source_format, source_file, ingest_run_id")
ERROR_COLUMNS = "event_ts, event_date, service, host, level, code, message, request_id, source_file, ingest_run_id"
REJECT_COLUMNS = ("record, reasons[1] AS reason, reasons, source_format, source_file, 'processed' AS stage, "
                  "ingest_run_id, now() AS rejected_at, routed_date")


def run(args) -> dict:
    import duckdb

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    con = duckdb.connect(config={"threads": args.threads, "preserve_insertion_order": False})
    con.execute("SET TimeZone = 'UTC'")
    if args.memory_limit:
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    start = dt.date.fromisoformat(args.start_date)
    now = dt.datetime.fromisoformat(args.ingest_ts) if args.ingest_ts else dt.datetime.now(dt.timezone.utc)
    ingest_ts = now.astimezone(dt.timezone.utc).replace(tzinfo=None)
    run_id = str(uuid.uuid4())
    out = args.output.rstrip("/")
    macros(con, ingest_ts, start)

    t = time.perf_counter()
    load_access(con, args.input, ingest_ts, start, run_id)
    timings["parse_json"] = time.perf_counter() - t
    t = time.perf_counter()
    load_errors(con, args.input, run_id)
    timings["parse_xml"] = time.perf_counter() - t

    t = time.perf_counter()
    con.execute(f"CREATE VIEW access_valid AS SELECT {ACCESS_COLUMNS} FROM access WHERE len(reasons) = 0")
    con.execute(f"CREATE VIEW errors_valid AS SELECT {ERROR_COLUMNS} FROM errors WHERE len(reasons) = 0")
    copy_by_day(con, "SELECT * FROM access_valid", "event_date", f"{out}/processed/logs/log_type=access")
    copy_by_day(con, "SELECT * FROM errors_valid", "event_date", f"{out}/processed/logs/log_type=error")
    timings["processed"] = time.perf_counter() - t
    t = time.perf_counter()
    copy_by_day(con, f"SELECT {REJECT_COLUMNS} FROM access WHERE len(reasons) > 0 UNION ALL "
                     f"SELECT {REJECT_COLUMNS} FROM errors WHERE len(reasons) > 0",
                "routed_date", f"{out}/rejected/data_quality")
    timings["rejected"] = time.perf_counter() - t
    t = time.perf_counter()
    os.makedirs(f"{out}/analytics/daily_activity", exist_ok=True)
    con.execute(f"COPY ({GOLD}) TO '{out}/analytics/daily_activity' "
                "(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date), OVERWRITE_OR_IGNORE)")
    timings["gold"] = time.perf_counter() - t
    con.close()
    timings["total"] = time.perf_counter() - t0
    return timings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="folder holding ndjson/, json_gzip/, xml_errors/")
    p.add_argument("--output", required=True, help="output root (processed/, rejected/, analytics/)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 4GB (default: DuckDB's own)")
    p.add_argument("--start-date", default=os.environ.get("LAKE_START_DATE", "2024-01-01"))
    p.add_argument("--ingest-ts", help="ISO time the records count as ingested (default: now)")
    args = p.parse_args(argv)
    print(json.dumps({"engine": "duckdb", "phases": run(args)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
