"""Baseline: the tpcds contract as one plain PySpark job, the way a data engineer writes it without Dagster.

One Spark application reads ``raw/tpcds/<table>/`` directly and writes the three
zones of shared/contracts/tpcds.md: typed bronze Parquet per table, silver
(trimmed, empty strings NULL, the contract's rules with their reasons,
deduplicated by primary key over the whole table, facts dated from ``date_dim``
and written ``partitionBy`` month), quarantine, and the four gold tables of §4.
No ingestion stage, manifests, archive, per-partition publishing, increments,
catalog or checks: the difference in time against ``lake run`` is the price of
those and of Dagster.

What it borrows from the project: only the column lists and DDL types of the 24
tables, read from ``lake_assets/domains/tpcds/spec.py`` (loaded as a plain file,
without importing the ``lake_assets`` package or Dagster) so that the DDL is not
retyped here; and the Spark session settings of the logs baseline
(``plain_spark_job.spark_session``: ours' settings, plus any ``SPARK_CONF_*``
variable). Bronze, silver and gold are written here, none of ours is called.

How it reads: ``spark.read.csv`` with ``sep='|'``, no quoting, an explicit schema
(the table's columns typed from the DDL, one more string column for the empty
field after dsdgen's trailing ``|``, and ``_corrupt_record``), ``mode=PERMISSIVE``.
A line Spark cannot convert (wrong number of fields, a value that does not parse
as its type) lands in ``_corrupt_record`` and goes to quarantine; its reasons
are worked out from the line's text for those few rows only. The parse is cached
once per table so that bronze and its quarantine come from the same full-width
parse (Spark's CSV column pruning would otherwise skip converting columns a
query does not read). Known leniency of the reader, not the contract's: a
decimal with more digits than its scale is rounded, not refused (``1.005`` is
1.01), and a ``+`` sign or thousands separators are accepted; the generator
writes none of these unless asked for broken lines (``--bad-share``).

Deduplication keeps, per primary key, the row of the file name sorting last, then
the row read last (``monotonically_increasing_id``: in file order within a file,
since a file's splits are read in order); everything is one ingestion run here.

    python benchmarks/baselines/tpcds_plain_spark_job.py --raw LAKE/raw/tpcds --out OUT [--master local[2]]

Writes ``OUT/bronze/tpcds/<table>/``, ``OUT/silver/tpcds/<table>/`` (facts under
``sold_month=``/``returned_month=``/``inv_month=``), ``OUT/quarantine/tpcds/<table>/``
and ``OUT/gold/tpcds/<table>/``; prints one JSON line: per-stage seconds and row counts.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from plain_spark_job import spark_session  # noqa: E402  (the same session settings as ours)
from tpcds_common import DIMENSIONS, FACTS, NULL_PARTITION, RETURNS, SALES, TABLES  # noqa: E402,F401

#: What "trimmed" strips (the contract's whitespace; Spark's ``trim`` alone strips only spaces).
WHITESPACE = " \t\n\r\f\v"

MONEY = "decimal(18,2)"


def spark_type(column):
    from pyspark.sql import types as T

    if column.decimal:
        return T.DecimalType(*column.decimal)
    return {"identifier": T.LongType(), "integer": T.IntegerType(), "date": T.DateType(),
            "string": T.StringType()}[column.type]


def reasons_of(rules):
    """Every rule broken, in order (an empty array: the row is valid)."""
    from pyspark.sql import functions as F

    return F.array_compact(F.array(*[F.when(cond, F.lit(name)) for name, cond in rules]))


# --------------------------------------------------------------------------- bronze


def bronze_table(spark, spec, raw: str, out: str, now) -> None:
    """raw/tpcds/<table>/ -> bronze/tpcds/<table>/ (typed) and quarantine/tpcds/<table>/stage=bronze/."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField(c.name, spark_type(c), True) for c in spec.columns]
                          + [T.StructField("_eol", T.StringType(), True),
                             T.StructField("_corrupt_record", T.StringType(), True)])
    df = (spark.read.schema(schema)
          .option("sep", "|").option("header", "false").option("quote", "").option("escape", "")
          .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", "_corrupt_record")
          .option("dateFormat", "yyyy-MM-dd").option("encoding", "UTF-8")
          .csv(os.path.join(raw, spec.name)))
    df = df.select("*", F.col("_metadata.file_name").alias("_source_file"),
                   F.monotonically_increasing_id().alias("_line"))
    # A line with one field too many and no trailing '|' parses, with its extra field in _eol.
    bad = F.col("_corrupt_record").isNotNull() | F.col("_eol").isNotNull()
    df = df.withColumn("_bad", bad).cache()
    try:
        lineage = [F.col("_source_file"), F.col("_line"), F.lit(now).cast("timestamp").alias("_ingested_at")]
        good = df.where(~F.col("_bad")).select(*spec.column_names, *lineage)
        # Contract §2: bronze is Parquet/Snappy (the session's codec, zstd, for every other zone).
        good.write.mode("overwrite").option("compression", "snappy").parquet(f"{out}/bronze/tpcds/{spec.name}")
        rejects = bronze_rejects(df.where(F.col("_bad")), spec)
        rejects.write.mode("overwrite").parquet(f"{out}/quarantine/tpcds/{spec.name}/stage=bronze")
    finally:
        df.unpersist()


def bronze_rejects(bad, spec):
    """The contract's reasons of the rows Spark could not convert, from their text (those rows only)."""
    from pyspark.sql import functions as F

    n = len(spec.columns)
    record = F.coalesce(F.col("_corrupt_record"),
                        F.concat(F.concat_ws("|", *[F.coalesce(F.col(c).cast("string"), F.lit(""))
                                                    for c in (*spec.column_names, "_eol")]), F.lit("|")))
    fields = F.split(record, r"\|", -1)
    count = F.size(fields) - F.when(record.endswith("|"), 1).otherwise(0)
    rows = bad.select(record.alias("record"), fields.alias("_fields"), (count != n).alias("_wrong"),
                      *spec.column_names, "_source_file", "_line")
    rules = [("wrong_field_count", F.col("_wrong"))]
    for i, c in enumerate(spec.columns):
        if c.type != "string":
            text = F.nullif(F.get(F.col("_fields"), i), F.lit(""))
            rules.append((f"invalid_type:{c.name}", ~F.col("_wrong") & text.isNotNull() & F.col(c.name).isNull()))
    reasons = reasons_of(rules)
    return rows.select("record", F.coalesce(reasons[0], F.lit("unparseable")).alias("reason"),
                       F.when(F.size(reasons) > 0, reasons).otherwise(F.array(F.lit("unparseable"))).alias("reasons"),
                       F.col("_source_file").alias("source_file"), F.col("_line").alias("line"),
                       F.lit("bronze").alias("stage"))


# --------------------------------------------------------------------------- silver


def standardised(spark, spec, out: str):
    """A table's bronze, strings trimmed and an empty string NULL."""
    from pyspark.sql import functions as F

    df = spark.read.parquet(f"{out}/bronze/tpcds/{spec.name}")
    cols = [F.nullif(F.btrim(F.col(c.name), F.lit(WHITESPACE)), F.lit("")).alias(c.name) if c.type == "string"
            else F.col(c.name) for c in spec.columns]
    return df.select(*cols, "_source_file", "_line")


def silver_table(spark, spec, out: str, now, date_dim=None, item=None) -> None:
    """bronze -> silver/tpcds/<table>/ (valid, deduplicated, facts by month) and quarantine stage=silver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rows = standardised(spark, spec, out)
    rules = [("missing_primary_key", _any([F.col(k).isNull() for k in spec.primary_key]))]
    extra = []
    if spec.is_fact:
        for i, key in enumerate(spec.date_keys):
            cols = [F.col("d_date_sk").alias(f"_dk{i}")]
            if key == spec.dating.key:
                cols.append(F.col("d_date").alias(spec.dating.column))
            rows = rows.join(F.broadcast(date_dim.select(*cols)), F.col(key) == F.col(f"_dk{i}"), "left")
            extra.append(f"_dk{i}")
        rows = rows.join(F.broadcast(item.select(F.col("i_item_sk").alias("_ik"))),
                         F.col(spec.item_key) == F.col("_ik"), "left")
        extra.append("_ik")
        rules += [(f"negative_value:{m}", F.col(m) < 0) for m in spec.measures]
        rules.append(("unknown_date", _any([F.col(k).isNotNull() & F.col(f"_dk{i}").isNull()
                                            for i, k in enumerate(spec.date_keys)])))
        rules.append(("unknown_item", F.col(spec.item_key).isNotNull() & F.col("_ik").isNull()))
    rows = rows.withColumn("reasons", reasons_of(rules)).drop(*extra)
    # Deduplication among the rows that broke no rule: the file name sorting last, then the row read last.
    valid = F.size("reasons") == 0
    latest = Window.partitionBy(valid.alias("_valid"), *spec.primary_key).orderBy(
        F.col("_source_file").desc(), F.col("_line").desc())
    rows = rows.withColumn("reasons", F.when(valid & (F.row_number().over(latest) > 1), F.array(F.lit("duplicate")))
                           .otherwise(F.col("reasons")))
    month = None
    if spec.dating:
        month = spec.dating.partition
        rows = rows.withColumn(month, F.date_format(spec.dating.column, "yyyy-MM"))
    rows = rows.persist()
    try:
        keep = [*spec.column_names, *([spec.dating.column] if spec.dating else []), "_source_file",
                F.lit(now).cast("timestamp").alias("load_timestamp")]
        good = rows.where(F.size("reasons") == 0)
        if month:
            # One file per month, sorted by date inside (a NULL month is Spark's __HIVE_DEFAULT_PARTITION__).
            (good.select(*keep, month).repartition(month).sortWithinPartitions(month, spec.dating.column)
             .write.mode("overwrite").partitionBy(month).parquet(f"{out}/silver/tpcds/{spec.name}"))
        else:
            good.select(*keep).write.mode("overwrite").parquet(f"{out}/silver/tpcds/{spec.name}")
        record = F.concat(F.concat_ws("|", *[F.coalesce(F.col(c).cast("string"), F.lit(""))
                                             for c in spec.column_names]), F.lit("|"))
        (rows.where(F.size("reasons") > 0)
         .select(record.alias("record"), F.col("reasons")[0].alias("reason"), "reasons",
                 F.col("_source_file").alias("source_file"), F.col("_line").alias("line"),
                 F.lit("silver").alias("stage"), *([F.coalesce(month, F.lit(NULL_PARTITION)).alias("month")]
                                                   if month else []))
         .write.mode("overwrite").parquet(f"{out}/quarantine/tpcds/{spec.name}/stage=silver"))
    finally:
        rows.unpersist()


def _any(conditions):
    out = conditions[0]
    for c in conditions[1:]:
        out = out | c
    return out


# --------------------------------------------------------------------------- gold


def silver(spark, out: str, table: str):
    return spark.read.parquet(f"{out}/silver/tpcds/{table}")


def sales_lines(spark, out: str):
    from pyspark.sql import functions as F

    frames = [silver(spark, out, t).select(
        F.lit(ch).alias("channel"), "sold_date", F.col(o).alias("order_number"), F.col(i).alias("item_sk"),
        F.col(c).alias("customer_sk"), F.col(q).alias("quantity"), F.col(s).alias("sales"),
        F.col(d).alias("discount"), F.col(p).alias("paid"), F.col(pr).alias("profit"))
        for ch, (t, o, i, c, q, s, d, p, pr) in SALES.items()]
    return frames[0].unionByName(frames[1]).unionByName(frames[2])


def return_lines(spark, out: str):
    from pyspark.sql import functions as F

    frames = [silver(spark, out, t).select(
        F.lit(ch).alias("channel"), "returned_date", F.col(o).alias("order_number"), F.col(c).alias("customer_sk"),
        F.col(q).alias("quantity"), F.col(a).alias("amount"))
        for ch, (t, o, c, q, a) in RETURNS.items()]
    return frames[0].unionByName(frames[1]).unionByName(frames[2])


def money(col):
    from pyspark.sql import functions as F

    return F.coalesce(F.sum(col), F.lit(0)).cast(MONEY)


def total(col):
    from pyspark.sql import functions as F

    return F.coalesce(F.sum(col), F.lit(0)).cast("bigint")


def ratio(num, den):
    from pyspark.sql import functions as F

    return F.when(den.isNotNull() & (den != 0), num.cast("double") / den.cast("double"))


def gold(spark, out: str) -> None:
    """The four gold tables of contract §4, from silver as written."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    sales, returns = sales_lines(spark, out), return_lines(spark, out)
    dated = sales.where(F.col("sold_date").isNotNull())

    # daily_sales_summary: (sold_date, channel) with dated sales or dated returns.
    by_sale = dated.groupBy("sold_date", "channel").agg(
        F.count_distinct("order_number").alias("orders"), F.count("*").alias("line_items"),
        total("quantity").alias("quantity"), money("sales").alias("gross_sales"), money("discount").alias("discounts"),
        money("paid").alias("net_paid"), money("profit").alias("net_profit"),
        F.count_distinct("customer_sk").alias("customers"))
    by_return = returns.where(F.col("returned_date").isNotNull()).groupBy(
        F.col("returned_date").alias("sold_date"), "channel").agg(
        total("quantity").alias("returned_quantity"), money("amount").alias("returned_amount"))
    zero_money = F.lit(0).cast(MONEY)
    daily = by_sale.join(by_return, ["sold_date", "channel"], "full").select(
        "sold_date", "channel",
        *[F.coalesce(c, F.lit(0)).cast("bigint").alias(c) for c in ("orders", "line_items", "quantity")],
        *[F.coalesce(c, zero_money).alias(c) for c in ("gross_sales", "discounts", "net_paid", "net_profit")],
        F.coalesce("customers", F.lit(0)).cast("bigint").alias("customers"),
        F.coalesce("returned_quantity", F.lit(0)).cast("bigint").alias("returned_quantity"),
        F.coalesce("returned_amount", zero_money).alias("returned_amount"),
        F.date_format("sold_date", "yyyy-MM").alias("sold_month"))
    daily.repartition("sold_month").write.mode("overwrite").partitionBy("sold_month") \
        .parquet(f"{out}/gold/tpcds/daily_sales_summary")

    # customer_lifetime_value: every customer with a sales line.
    per_customer = sales.where(F.col("customer_sk").isNotNull()).groupBy("customer_sk").agg(
        F.min("sold_date").alias("first_purchase_date"), F.max("sold_date").alias("last_purchase_date"),
        F.count_distinct("channel", "order_number").alias("orders"), F.count("*").alias("line_items"),
        total("quantity").alias("quantity"), money("paid").alias("total_net_paid"),
        money("profit").alias("total_net_profit"), F.count_distinct("channel").cast("int").alias("channels"))
    returned = returns.where(F.col("customer_sk").isNotNull()).groupBy("customer_sk").agg(
        money("amount").alias("returned_amount"))
    ids = silver(spark, out, "customer").select(F.col("c_customer_sk").alias("customer_sk"),
                                                F.col("c_customer_id").alias("customer_id"))
    clv = (per_customer.join(returned, "customer_sk", "left").join(ids, "customer_sk", "left")
           .withColumn("returned_amount", F.coalesce("returned_amount", zero_money))
           .withColumn("net_value", (F.col("total_net_paid") - F.col("returned_amount")).cast(MONEY))
           .withColumn("value_rank", F.row_number().over(Window.orderBy(F.col("net_value").desc(),
                                                                        F.col("customer_sk").asc())).cast("bigint"))
           .withColumn("_n", F.count("*").over(Window.partitionBy())))

    def ceil_share(p):  # ceil(p% of N) in integers
        return F.floor((F.col("_n") * p + 99) / 100)

    clv = clv.withColumn("segment", F.when(F.col("value_rank") <= ceil_share(5), "platinum")
                         .when(F.col("value_rank") <= ceil_share(20), "gold")
                         .when(F.col("value_rank") <= ceil_share(50), "silver").otherwise("bronze"))
    clv.select("customer_sk", "customer_id", "first_purchase_date", "last_purchase_date", "orders", "line_items",
               "quantity", "total_net_paid", "total_net_profit", "returned_amount", "net_value", "channels",
               "value_rank", "segment").write.mode("overwrite").parquet(f"{out}/gold/tpcds/customer_lifetime_value")

    # product_performance: (month, item) over dated sales lines, ranked within the month's category.
    per_item = dated.groupBy(F.trunc("sold_date", "month").alias("month"), "item_sk").agg(
        total("quantity").alias("quantity"), money("sales").alias("revenue"), money("profit").alias("net_profit"),
        F.count_distinct("channel", "order_number").alias("orders"))
    items = silver(spark, out, "item").select(
        F.col("i_item_sk").alias("item_sk"), F.col("i_item_id").alias("item_id"),
        F.col("i_product_name").alias("product_name"), F.col("i_category").alias("category"),
        F.col("i_brand").alias("brand"))
    category = Window.partitionBy("month", "category")
    perf = (per_item.join(items, "item_sk", "left")
            .withColumn("margin", ratio(F.col("net_profit"), F.col("revenue")))
            .withColumn("category_rank", F.dense_rank().over(category.orderBy(F.col("revenue").desc())))
            .withColumn("category_share", ratio(F.col("revenue"), F.sum("revenue").over(category)))
            .withColumn("sold_month", F.date_format("month", "yyyy-MM")))
    perf.select("month", "item_sk", "item_id", "product_name", "category", "brand", "quantity", "revenue",
                "net_profit", "orders", "margin", "category_rank", "category_share", "sold_month") \
        .repartition("sold_month").write.mode("overwrite").partitionBy("sold_month") \
        .parquet(f"{out}/gold/tpcds/product_performance")

    # monthly_trends: (month, channel) with month-over-month and year-over-year growth of net paid.
    per_month = dated.groupBy(F.trunc("sold_date", "month").alias("month"), "channel").agg(
        F.count_distinct("order_number").alias("orders"), F.count_distinct("customer_sk").alias("customers"),
        total("quantity").alias("quantity"), money("paid").alias("net_paid"), money("profit").alias("net_profit"))

    def shifted(months, name):
        return per_month.select(F.add_months("month", months).alias("month"), "channel", F.col("net_paid").alias(name))

    trends = (per_month.join(shifted(1, "prev_month_net_paid"), ["month", "channel"], "left")
              .join(shifted(12, "prev_year_net_paid"), ["month", "channel"], "left")
              .withColumn("mom_growth", ratio(F.col("net_paid") - F.col("prev_month_net_paid"),
                                              F.col("prev_month_net_paid")))
              .withColumn("yoy_growth", ratio(F.col("net_paid") - F.col("prev_year_net_paid"),
                                              F.col("prev_year_net_paid"))))
    trends.select("month", "channel", "orders", "customers", "quantity", "net_paid", "net_profit",
                  "prev_month_net_paid", "mom_growth", "prev_year_net_paid", "yoy_growth") \
        .coalesce(1).write.mode("overwrite").parquet(f"{out}/gold/tpcds/monthly_trends")


# --------------------------------------------------------------------------- main


def run(args) -> dict:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spark = spark_session(args.master, args.shuffle_partitions, args.driver_memory, app_name="plain_spark_tpcds_job")
    timings["session_start"] = time.perf_counter() - t0
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    out = os.path.abspath(args.out).rstrip("/")
    raw = os.path.abspath(args.raw)
    tables = [t for t in TABLES if os.path.isdir(os.path.join(raw, t))]
    missing = sorted(set(TABLES) - set(tables))
    if missing:
        raise SystemExit(f"no raw folder for {missing} under {raw}")

    t = time.perf_counter()
    for name in tables:
        bronze_table(spark, TABLES[name], raw, out, now)
    timings["bronze"] = time.perf_counter() - t

    t = time.perf_counter()
    for name in DIMENSIONS:  # dimensions first: the facts' rules read silver date_dim and item
        silver_table(spark, TABLES[name], out, now)
    date_dim = silver(spark, out, "date_dim").select("d_date_sk", "d_date")
    item = silver(spark, out, "item").select("i_item_sk")
    for name in FACTS:
        silver_table(spark, TABLES[name], out, now, date_dim, item)
    timings["silver"] = time.perf_counter() - t

    t = time.perf_counter()
    gold(spark, out)
    timings["gold"] = time.perf_counter() - t
    spark.stop()
    timings["total"] = time.perf_counter() - t0
    return {"phases": timings, "rows": count_rows(out)}


def count_rows(out: str) -> dict[str, dict[str, int]]:
    """Rows per table and zone, from the Parquet footers (after the job: no Spark job, not a stage)."""
    import pyarrow.parquet as pq

    def rows(folder: str) -> int:
        return sum(pq.ParquetFile(os.path.join(d, f)).metadata.num_rows for d, _, fs in os.walk(folder)
                   for f in fs if f.endswith(".parquet") and not f.startswith((".", "_")))

    return {name: {"bronze": rows(f"{out}/bronze/tpcds/{name}"),
                   "quarantine": rows(f"{out}/quarantine/tpcds/{name}/stage=bronze"),
                   "silver": rows(f"{out}/silver/tpcds/{name}"),
                   "silver_quarantine": rows(f"{out}/quarantine/tpcds/{name}/stage=silver")} for name in TABLES}


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--raw", required=True, help="the raw/tpcds folder (one sub-folder per table)")
    p.add_argument("--out", required=True, help="output root (bronze/, silver/, quarantine/, gold/)")
    p.add_argument("--master", default=os.environ.get("SPARK_MASTER", "local[2]"))
    p.add_argument("--shuffle-partitions", type=int, default=int(os.environ.get("SPARK_SHUFFLE_PARTITIONS", "8")))
    p.add_argument("--driver-memory", default=os.environ.get("SPARK_DRIVER_MEMORY", "4g"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    result = run(parse_args(argv))
    print(json.dumps({"engine": "tpcds_plain_spark", **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
