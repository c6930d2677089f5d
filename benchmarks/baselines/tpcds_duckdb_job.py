"""Baseline: the tpcds contract as one DuckDB job, the single-node reference.

The same work as ``tpcds_plain_spark_job.py`` (shared/contracts/tpcds.md), in
DuckDB SQL: ``read_csv`` of ``raw/tpcds/<table>/`` with explicit columns typed
from the DDL (one more for the empty field after dsdgen's trailing ``|``), lines
DuckDB cannot convert kept by ``store_rejects`` (with the column and the kind of
error) and written to quarantine; typed bronze Parquet per table; silver
(trimmed, empty strings NULL, the contract's rules with their reasons,
deduplicated by primary key over the whole table, facts dated from silver
``date_dim`` and written ``PARTITION_BY`` month, ``__HIVE_DEFAULT_PARTITION__``
for a NULL date); the four gold tables of §4 from silver as written.

Only the column lists and DDL types come from the project
(``lake_assets/domains/tpcds/spec.py``, loaded as a plain file: the ``lake_assets``
package and Dagster are not imported), so that the DDL is not retyped.

Deduplication keeps, per primary key, the row of the file name sorting last, then
the row read last (the row's position in the table a CSV scan is loaded into,
which keeps the files' order). Known leniency of DuckDB's CSV reader, not the
contract's: a decimal with more digits than its scale is rounded (``1.005`` is
1.01), not refused.

    python benchmarks/baselines/tpcds_duckdb_job.py --raw LAKE/raw/tpcds --out OUT [--threads 2]

Writes the same folders as the Spark baseline; prints one JSON line: per-stage
seconds and row counts.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from tpcds_common import DIMENSIONS, FACTS, NULL_PARTITION, RETURNS, SALES, TABLES  # noqa: E402,F401

MONEY = "DECIMAL(18, 2)"


def sql_type(column) -> str:
    if column.decimal:
        return "DECIMAL(%d, %d)" % column.decimal
    return {"identifier": "BIGINT", "integer": "INTEGER", "date": "DATE", "string": "VARCHAR"}[column.type]


def q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def reasons_sql(rules: list[tuple[str, str]]) -> str:
    """Every rule broken, in order (an empty list: the row is valid)."""
    cases = ", ".join(f"CASE WHEN {cond} THEN {q(name)} END" for name, cond in rules)
    return f"list_filter([{cases}], x -> x IS NOT NULL)"


def any_sql(conditions: list[str]) -> str:
    return "(" + " OR ".join(conditions) + ")"


def record_sql(spec, prefix: str = "") -> str:
    """A row as a dsdgen line (NULL an empty field, the trailing ``|``)."""
    return "concat_ws('|', " + ", ".join(f"coalesce(CAST({prefix}{c} AS VARCHAR), '')" for c in spec.column_names) \
        + ") || '|'"


# --------------------------------------------------------------------------- bronze


def bronze_table(con, spec, raw: str, out: str, now: str) -> None:
    """raw/tpcds/<table>/ -> bronze/tpcds/<table>/data.parquet and quarantine/tpcds/<table>/stage=bronze/."""
    name = spec.name
    columns = "{" + ", ".join(f"{q(c.name)}: {q(sql_type(c))}" for c in spec.columns) + ", '_eol': 'VARCHAR'}"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE raw_lines AS
        SELECT * FROM read_csv({q(os.path.join(raw, name, '*'))}, columns = {columns}, delim = '|', header = false,
            quote = '', escape = '', auto_detect = false, dateformat = '%Y-%m-%d', filename = true,
            compression = 'auto', null_padding = false, store_rejects = true,
            rejects_table = 'rejects_{name}', rejects_scan = 'scans_{name}')
    """)
    cols = ", ".join(spec.column_names)
    os.makedirs(f"{out}/bronze/tpcds/{name}", exist_ok=True)
    con.execute(f"""
        COPY (SELECT {cols}, filename AS _source_file, rowid AS _line, TIMESTAMP '{now}' AS _ingested_at
              FROM raw_lines WHERE _eol IS NULL)
        TO {q(f'{out}/bronze/tpcds/{name}/data.parquet')} (FORMAT parquet, COMPRESSION snappy)
    """)
    # Rejected lines: DuckDB's rejects (one row per error of a line), and lines with one field too many
    # and no trailing '|' (read, with the extra field in _eol).
    os.makedirs(f"{out}/quarantine/tpcds/{name}/stage=bronze", exist_ok=True)
    con.execute(f"""
        COPY (
            WITH errors AS (
                SELECT s.file_path AS source_file, e.line, any_value(e.csv_line) AS record,
                       list(CASE WHEN e.error_type = 'CAST' THEN 'invalid_type:' || e.column_name
                                 WHEN e.error_type IN ('TOO_MANY_COLUMNS', 'MISSING_COLUMNS') THEN 'wrong_field_count'
                                 ELSE lower(e.error_type) END ORDER BY e.column_idx) AS reasons
                FROM rejects_{name} e JOIN scans_{name} s USING (scan_id, file_id)
                GROUP BY ALL
            )
            SELECT record, reasons[1] AS reason, reasons, source_file, line, 'bronze' AS stage FROM errors
            UNION ALL
            SELECT {record_sql(spec)}, 'wrong_field_count', ['wrong_field_count'], filename, rowid, 'bronze'
            FROM raw_lines WHERE _eol IS NOT NULL
        ) TO {q(f'{out}/quarantine/tpcds/{name}/stage=bronze/data.parquet')} (FORMAT parquet, COMPRESSION zstd)
    """)
    con.execute("DROP TABLE raw_lines")
    con.execute(f"DROP TABLE rejects_{name}")
    con.execute(f"DROP TABLE scans_{name}")


# --------------------------------------------------------------------------- silver


def silver_table(con, spec, out: str, now: str) -> None:
    """bronze -> silver/tpcds/<table>/ (valid, deduplicated, facts by month) and quarantine stage=silver."""
    name = spec.name
    ws = "' ' || chr(9) || chr(10) || chr(13) || chr(12) || chr(11)"
    cols = [f"nullif(trim(b.{c.name}, {ws}), '') AS {c.name}" if c.type == "string" else f"b.{c.name}"
            for c in spec.columns]
    joins, extra = [], []
    rules = [("missing_primary_key", any_sql([f"{k} IS NULL" for k in spec.primary_key]))]
    if spec.is_fact:
        date_dim = q(f"{out}/silver/tpcds/date_dim/*.parquet")
        item = q(f"{out}/silver/tpcds/item/*.parquet")
        for i, key in enumerate(spec.date_keys):
            dated = f", d{i}.d_date AS {spec.dating.column}" if key == spec.dating.key else ""
            joins.append(f"LEFT JOIN read_parquet({date_dim}) d{i} ON b.{key} = d{i}.d_date_sk")
            extra.append(f"d{i}.d_date_sk AS _dk{i}{dated}")
        joins.append(f"LEFT JOIN (SELECT i_item_sk FROM read_parquet({item})) it ON b.{spec.item_key} = it.i_item_sk")
        extra.append("it.i_item_sk AS _ik")
        rules += [(f"negative_value:{m}", f"{m} < 0") for m in spec.measures]
        rules.append(("unknown_date", any_sql([f"({k} IS NOT NULL AND _dk{i} IS NULL)"
                                               for i, k in enumerate(spec.date_keys)])))
        rules.append(("unknown_item", f"({spec.item_key} IS NOT NULL AND _ik IS NULL)"))
    pk = ", ".join(spec.primary_key)
    month = spec.dating.partition if spec.dating else None
    month_col = (f", coalesce(strftime({spec.dating.column}, '%Y-%m'), '{NULL_PARTITION}') AS {month}"
                 if month else "")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE parsed AS
        WITH rows AS (
            SELECT {', '.join(cols)}, b._source_file, b._line{''.join(', ' + e for e in extra)}
            FROM read_parquet({q(f'{out}/bronze/tpcds/{name}/*.parquet')}) b {' '.join(joins)}
        ), checked AS (
            SELECT *, {reasons_sql(rules)} AS reasons FROM rows
        )
        SELECT * EXCLUDE (reasons{''.join(', _dk%d' % i for i in range(len(spec.date_keys)))}
                          {', _ik' if spec.is_fact else ''}),
               CASE WHEN len(reasons) = 0 AND row_number() OVER (
                        PARTITION BY len(reasons) = 0, {pk} ORDER BY _source_file DESC, _line DESC) > 1
                    THEN ['duplicate'] ELSE reasons END AS reasons{month_col}
        FROM checked
    """)
    keep = ", ".join([*spec.column_names, *([spec.dating.column] if spec.dating else []), "_source_file",
                      f"TIMESTAMP '{now}' AS load_timestamp"])
    os.makedirs(f"{out}/silver/tpcds/{name}", exist_ok=True)
    if month:
        con.execute(f"""
            COPY (SELECT {keep}, {month} FROM parsed WHERE len(reasons) = 0 ORDER BY {month}, {spec.dating.column})
            TO {q(f'{out}/silver/tpcds/{name}')} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY ({month}),
                                                  OVERWRITE_OR_IGNORE)
        """)
    else:
        con.execute(f"COPY (SELECT {keep} FROM parsed WHERE len(reasons) = 0) "
                    f"TO {q(f'{out}/silver/tpcds/{name}/data.parquet')} (FORMAT parquet, COMPRESSION zstd)")
    os.makedirs(f"{out}/quarantine/tpcds/{name}/stage=silver", exist_ok=True)
    con.execute(f"""
        COPY (SELECT {record_sql(spec)} AS record, reasons[1] AS reason, reasons, _source_file AS source_file,
                     _line AS line, 'silver' AS stage{', ' + month + ' AS month' if month else ''}
              FROM parsed WHERE len(reasons) > 0)
        TO {q(f'{out}/quarantine/tpcds/{name}/stage=silver/data.parquet')} (FORMAT parquet, COMPRESSION zstd)
    """)
    con.execute("DROP TABLE parsed")


# --------------------------------------------------------------------------- gold


def gold(con, out: str) -> None:
    """The four gold tables of contract §4, from silver as written."""
    def silver(table: str) -> str:
        pattern = "**/*.parquet" if table in FACTS else "*.parquet"
        return f"read_parquet({q(f'{out}/silver/tpcds/{table}/{pattern}')}, hive_partitioning = false)"

    con.execute("CREATE OR REPLACE TEMP VIEW sales AS " + " UNION ALL ".join(
        f"SELECT '{ch}' AS channel, sold_date, {o} AS order_number, {i} AS item_sk, {c} AS customer_sk, "
        f"{qty} AS quantity, {s} AS sales, {d} AS discount, {p} AS paid, {pr} AS profit FROM {silver(t)}"
        for ch, (t, o, i, c, qty, s, d, p, pr) in SALES.items()))
    con.execute("CREATE OR REPLACE TEMP VIEW returns AS " + " UNION ALL ".join(
        f"SELECT '{ch}' AS channel, returned_date, {o} AS order_number, {c} AS customer_sk, "
        f"{qty} AS quantity, {a} AS amount FROM {silver(t)}"
        for ch, (t, o, c, qty, a) in RETURNS.items()))

    def money(col: str) -> str:
        return f"coalesce(sum({col}), 0)::{MONEY}"

    def total(col: str) -> str:
        return f"coalesce(sum({col}), 0)::BIGINT"

    def ratio(num: str, den: str) -> str:
        return f"CASE WHEN {den} IS NOT NULL AND {den} <> 0 THEN ({num})::DOUBLE / ({den})::DOUBLE END"

    def copy(query: str, table: str, partition: str | None = None) -> None:
        target = f"{out}/gold/tpcds/{table}"
        os.makedirs(target, exist_ok=True)
        if partition:
            con.execute(f"COPY ({query}) TO {q(target)} (FORMAT parquet, COMPRESSION zstd, "
                        f"PARTITION_BY ({partition}), OVERWRITE_OR_IGNORE)")
        else:
            con.execute(f"COPY ({query}) TO {q(target + '/data.parquet')} (FORMAT parquet, COMPRESSION zstd)")

    copy(f"""
        WITH s AS (
            SELECT sold_date, channel, count(DISTINCT order_number) AS orders, count(*) AS line_items,
                   {total('quantity')} AS quantity, {money('sales')} AS gross_sales,
                   {money('discount')} AS discounts, {money('paid')} AS net_paid, {money('profit')} AS net_profit,
                   count(DISTINCT customer_sk) AS customers
            FROM sales WHERE sold_date IS NOT NULL GROUP BY ALL
        ), r AS (
            SELECT returned_date AS sold_date, channel, {total('quantity')} AS returned_quantity,
                   {money('amount')} AS returned_amount
            FROM returns WHERE returned_date IS NOT NULL GROUP BY ALL
        )
        SELECT sold_date, channel, coalesce(orders, 0) AS orders, coalesce(line_items, 0) AS line_items,
               coalesce(quantity, 0) AS quantity, coalesce(gross_sales, 0)::{MONEY} AS gross_sales,
               coalesce(discounts, 0)::{MONEY} AS discounts, coalesce(net_paid, 0)::{MONEY} AS net_paid,
               coalesce(net_profit, 0)::{MONEY} AS net_profit, coalesce(customers, 0) AS customers,
               coalesce(returned_quantity, 0) AS returned_quantity,
               coalesce(returned_amount, 0)::{MONEY} AS returned_amount, strftime(sold_date, '%Y-%m') AS sold_month
        FROM s FULL JOIN r USING (sold_date, channel)
    """, "daily_sales_summary", "sold_month")

    copy(f"""
        WITH per_customer AS (
            SELECT customer_sk, min(sold_date) AS first_purchase_date, max(sold_date) AS last_purchase_date,
                   count(DISTINCT (channel, order_number)) AS orders, count(*) AS line_items,
                   {total('quantity')} AS quantity, {money('paid')} AS total_net_paid,
                   {money('profit')} AS total_net_profit, count(DISTINCT channel)::INTEGER AS channels
            FROM sales WHERE customer_sk IS NOT NULL GROUP BY customer_sk
        ), returned AS (
            SELECT customer_sk, {money('amount')} AS returned_amount
            FROM returns WHERE customer_sk IS NOT NULL GROUP BY customer_sk
        ), valued AS (
            SELECT p.*, c.c_customer_id AS customer_id, coalesce(r.returned_amount, 0)::{MONEY} AS returned_amount,
                   (p.total_net_paid - coalesce(r.returned_amount, 0))::{MONEY} AS net_value
            FROM per_customer p LEFT JOIN returned r USING (customer_sk)
            LEFT JOIN (SELECT c_customer_sk, c_customer_id FROM {silver('customer')}) c
                   ON c.c_customer_sk = p.customer_sk
        ), ranked AS (
            SELECT *, row_number() OVER (ORDER BY net_value DESC, customer_sk ASC) AS value_rank,
                   count(*) OVER () AS n
            FROM valued
        )
        SELECT customer_sk, customer_id, first_purchase_date, last_purchase_date, orders, line_items, quantity,
               total_net_paid, total_net_profit, returned_amount, net_value, channels, value_rank,
               CASE WHEN value_rank <= (5 * n + 99) // 100 THEN 'platinum'
                    WHEN value_rank <= (20 * n + 99) // 100 THEN 'gold'
                    WHEN value_rank <= (50 * n + 99) // 100 THEN 'silver' ELSE 'bronze' END AS segment
        FROM ranked
    """, "customer_lifetime_value")

    copy(f"""
        WITH per_item AS (
            SELECT date_trunc('month', sold_date)::DATE AS month, item_sk, {total('quantity')} AS quantity,
                   {money('sales')} AS revenue, {money('profit')} AS net_profit,
                   count(DISTINCT (channel, order_number)) AS orders
            FROM sales WHERE sold_date IS NOT NULL GROUP BY ALL
        )
        SELECT p.month, p.item_sk, i.i_item_id AS item_id, i.i_product_name AS product_name,
               i.i_category AS category, i.i_brand AS brand, p.quantity, p.revenue, p.net_profit, p.orders,
               {ratio('p.net_profit', 'p.revenue')} AS margin,
               dense_rank() OVER (PARTITION BY p.month, i.i_category ORDER BY p.revenue DESC)::INTEGER
                   AS category_rank,
               {ratio('p.revenue', 'sum(p.revenue) OVER (PARTITION BY p.month, i.i_category)')} AS category_share,
               strftime(p.month, '%Y-%m') AS sold_month
        FROM per_item p
        LEFT JOIN (SELECT i_item_sk, i_item_id, i_product_name, i_category, i_brand FROM {silver('item')}) i
               ON i.i_item_sk = p.item_sk
    """, "product_performance", "sold_month")

    copy(f"""
        WITH per_month AS (
            SELECT date_trunc('month', sold_date)::DATE AS month, channel,
                   count(DISTINCT order_number) AS orders, count(DISTINCT customer_sk) AS customers,
                   {total('quantity')} AS quantity, {money('paid')} AS net_paid, {money('profit')} AS net_profit
            FROM sales WHERE sold_date IS NOT NULL GROUP BY ALL
        )
        SELECT m.*, pm.net_paid AS prev_month_net_paid,
               {ratio('m.net_paid - pm.net_paid', 'pm.net_paid')} AS mom_growth,
               py.net_paid AS prev_year_net_paid,
               {ratio('m.net_paid - py.net_paid', 'py.net_paid')} AS yoy_growth
        FROM per_month m
        LEFT JOIN per_month pm ON pm.channel = m.channel AND (pm.month + INTERVAL 1 MONTH)::DATE = m.month
        LEFT JOIN per_month py ON py.channel = m.channel AND (py.month + INTERVAL 12 MONTH)::DATE = m.month
    """, "monthly_trends")


# --------------------------------------------------------------------------- main


def count_rows(con, out: str) -> dict[str, dict[str, int]]:
    """Rows per table and zone, from the Parquet footers (not timed as a stage)."""
    def rows(pattern: str) -> int:
        return con.execute(f"SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata({q(pattern)})").fetchone()[0]

    out_rows = {}
    for name in TABLES:
        out_rows[name] = {
            "bronze": rows(f"{out}/bronze/tpcds/{name}/*.parquet"),
            "quarantine": rows(f"{out}/quarantine/tpcds/{name}/stage=bronze/*.parquet"),
            "silver": rows(f"{out}/silver/tpcds/{name}/**/*.parquet" if name in FACTS
                           else f"{out}/silver/tpcds/{name}/*.parquet"),
            "silver_quarantine": rows(f"{out}/quarantine/tpcds/{name}/stage=silver/*.parquet"),
        }
    return out_rows


def run(args) -> dict:
    import duckdb

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    config = {"threads": args.threads}
    if args.memory_limit:
        config["memory_limit"] = args.memory_limit
    out = os.path.abspath(args.out).rstrip("/")
    raw = os.path.abspath(args.raw)
    missing = sorted(t for t in TABLES if not os.path.isdir(os.path.join(raw, t)))
    if missing:
        raise SystemExit(f"no raw folder for {missing} under {raw}")
    if os.path.isdir(out) and os.listdir(out):
        raise SystemExit(f"{out} is not empty: give a new or empty output folder")
    os.makedirs(out, exist_ok=True)
    con = duckdb.connect(config=config)
    con.execute(f"SET temp_directory = {q(os.path.join(out, '.duckdb_tmp'))}")
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    timings["session_start"] = time.perf_counter() - t0

    t = time.perf_counter()
    for name in TABLES:
        bronze_table(con, TABLES[name], raw, out, now)
    timings["bronze"] = time.perf_counter() - t

    t = time.perf_counter()
    for name in (*DIMENSIONS, *FACTS):  # dimensions first: the facts' rules read silver date_dim and item
        silver_table(con, TABLES[name], out, now)
    timings["silver"] = time.perf_counter() - t

    t = time.perf_counter()
    gold(con, out)
    timings["gold"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    rows = count_rows(con, out)
    con.close()
    shutil.rmtree(os.path.join(out, ".duckdb_tmp"), ignore_errors=True)
    return {"phases": timings, "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--raw", required=True, help="the raw/tpcds folder (one sub-folder per table)")
    p.add_argument("--out", required=True, help="output root (bronze/, silver/, quarantine/, gold/)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 4GB (default: DuckDB's own, 80%% of RAM)")
    args = p.parse_args(argv)
    print(json.dumps({"engine": "tpcds_duckdb", **run(args)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
