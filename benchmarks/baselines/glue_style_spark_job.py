"""Baseline: the logs job as a Glue developer typically writes it (native readers, explicit schema).

``plain_spark_job.py`` re-implements our strict parse, so it is about as slow as
we are and cannot tell what the strictness costs. This job is the other yardstick
(issue 14): the one PySpark script a team writes on AWS Glue for the same lake.

* ``spark.read.json`` over ``raw/ndjson`` and ``raw/json_gzip`` with an explicit
  schema and a ``_corrupt_record`` column (mode PERMISSIVE): no variant parse,
  no sentinel, no per-field JSON extraction. The reader takes a line of a gzip
  JSON array (``{...},``) as its object and marks the brackets corrupt.
* ``spark.read.xml`` with ``rowTag=error``: the ``<error>`` elements, nothing else.
* Typing with ``try_cast`` / ``try_to_timestamp`` (ISO-8601 with a zone, or epoch
  seconds / milliseconds above 1e11), then one filter that drops a row that is
  corrupt, failed a cast, lacks a required field or breaks a plain value rule of
  the contract (status, method, level, negative amounts, the date window).
* Processed Parquet written partitioned by date (year=/month=/day=, as the lake
  lays it out); gold read back from it, ``dropDuplicates`` + ``groupBy``.

What it does not do, by design: name the reason of each dropped row, write the
rejects, check that a line is exactly one JSON object (trailing text after an
object is ignored, a top-level array becomes one row per element), reject a NaN
latency, or check the XML root. On the generator's bad records its filter drops
the same rows as the contract; on other input its gold may differ from ours on
such records (benchmarks/README.md, "The Glue-style job's gold", lists them).

The session is plain_spark_job's (the same settings as ours), so only the job differs.

    python benchmarks/baselines/glue_style_spark_job.py --input RAW --output OUT [--master local[2]]

Prints one JSON line with phase timings to stdout.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import time

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from plain_spark_job import LEVELS, METHODS, parse_args, spark_session

CORRUPT = "_corrupt_record"

# Strings where producers send more than one JSON type (timestamps as text or epoch
# numbers, status as 200 or "200"); numbers where they do not, so a mismatch marks
# the row corrupt.
ACCESS_SCHEMA = T.StructType([
    T.StructField("timestamp", T.StringType()),
    T.StructField("service", T.StringType()),
    T.StructField("request_id", T.StringType()),
    T.StructField("method", T.StringType()),
    T.StructField("path", T.StringType()),
    T.StructField("status", T.StringType()),
    T.StructField("host", T.StringType()),
    T.StructField("client_ip", T.StringType()),
    T.StructField("user_id", T.StringType()),
    T.StructField("user_agent", T.StringType()),
    T.StructField("bytes_sent", T.LongType()),
    T.StructField("latency_ms", T.DoubleType()),
    T.StructField(CORRUPT, T.StringType()),
])
ERROR_SCHEMA = T.StructType([
    T.StructField("timestamp", T.StringType()),
    T.StructField("service", T.StringType()),
    T.StructField("level", T.StringType()),
    T.StructField("message", T.StringType()),
    T.StructField("host", T.StringType()),
    T.StructField("code", T.StringType()),
    T.StructField("request_id", T.StringType()),
    T.StructField(CORRUPT, T.StringType()),
])
READ_OPTIONS = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
ISO_FORMAT = "yyyy-MM-dd'T'HH:mm:ss[.SSSSSSSSS]XXX"  # 1 to 9 fraction digits, a zone required


def event_ts(text: Column) -> Column:
    """Epoch seconds, epoch milliseconds (above 1e11) or ISO-8601 with a zone; null when none fits.

    decimal(20,6) keeps epoch fractions exact and cannot overflow a timestamp.
    """
    number = text.try_cast("decimal(20,6)")
    return (F.when(number > 10**11, F.timestamp_seconds(number / 1000))
            .when(number.isNotNull(), F.timestamp_seconds(number))
            .otherwise(F.try_to_timestamp(text, F.lit(ISO_FORMAT))))


def present(*names: str) -> Column:
    """Every named field there and not blank."""
    cond = F.lit(True)
    for n in names:
        cond = cond & F.col(n).isNotNull() & (F.col(n) != "")
    return cond


def in_window(ts: Column, start: dt.date, now: dt.datetime) -> Column:
    """The load window: from the lake's first date to a day after the run."""
    return (F.to_date(ts) >= F.lit(start)) & (ts <= F.lit(now) + F.expr("INTERVAL 1 DAY"))


def read_access(spark: SparkSession, input_root: str, start: dt.date, now: dt.datetime) -> DataFrame:
    """Clean, typed access rows; every other row dropped."""
    folders = [os.path.join(input_root, f) for f in ("ndjson", "json_gzip")
               if os.path.isdir(os.path.join(input_root, f))]
    raw = spark.read.schema(ACCESS_SCHEMA).options(**READ_OPTIONS).json(folders)
    typed = raw.select(
        event_ts(F.col("timestamp")).alias("event_ts"), "service", "host", "request_id", "client_ip", "user_id",
        F.upper("method").alias("method"), "path", F.col("status").try_cast("int").alias("status"),
        "bytes_sent", "latency_ms", "user_agent", F.col("_metadata.file_path").alias("source_file"), CORRUPT)
    keep = (F.col(CORRUPT).isNull() & present("service", "request_id", "method", "path")
            & F.col("event_ts").isNotNull() & in_window(F.col("event_ts"), start, now)
            & F.col("status").between(100, 599) & F.col("method").isin(*METHODS)
            & F.coalesce(F.col("bytes_sent") >= 0, F.lit(True))
            & F.coalesce(F.col("latency_ms") >= 0, F.lit(True)))
    return typed.where(keep).drop(CORRUPT).withColumn("event_date", F.to_date("event_ts"))


def read_errors(spark: SparkSession, input_root: str, start: dt.date, now: dt.datetime) -> DataFrame:
    """Clean, typed error events; every other row dropped (an empty message is a message)."""
    raw = spark.read.schema(ERROR_SCHEMA).options(**READ_OPTIONS, rowTag="error") \
        .xml(os.path.join(input_root, "xml_errors"))
    typed = raw.select(
        event_ts(F.col("timestamp")).alias("event_ts"), "service", F.nullif("host", F.lit("")).alias("host"),
        F.upper("level").alias("level"), F.nullif("code", F.lit("")).alias("code"), "message",
        F.nullif("request_id", F.lit("")).alias("request_id"), F.col("_metadata.file_path").alias("source_file"),
        CORRUPT)
    keep = (F.col(CORRUPT).isNull() & present("service", "level") & F.col("message").isNotNull()
            & F.col("event_ts").isNotNull() & in_window(F.col("event_ts"), start, now)
            & F.col("level").isin(*LEVELS))
    return typed.where(keep).drop(CORRUPT).withColumn("event_date", F.to_date("event_ts"))


def write_by_date(df: DataFrame, path: str) -> None:
    """Partitioned by event date, as year=/month=/day= (the lake's layout), one file per day."""
    df.withColumn("year", F.date_format("event_date", "yyyy")).withColumn("month", F.date_format("event_date", "MM")) \
        .withColumn("day", F.date_format("event_date", "dd")) \
        .repartition("year", "month", "day").write.mode("overwrite").partitionBy("year", "month", "day").parquet(path)


def daily_activity(access: DataFrame, errors: DataFrame) -> DataFrame:
    """Requests per (date, service) once per request id, error events once per distinct event."""
    keys = ["event_date", "service"]
    requests = access.dropDuplicates(["event_date", "service", "request_id"]).groupBy(*keys).agg(
        F.count(F.lit(1)).alias("requests"),
        F.count(F.when(F.col("status").between(400, 499), 1)).alias("client_errors"),
        F.count(F.when(F.col("status").between(500, 599), 1)).alias("server_errors"),
        F.count_distinct("user_id").alias("unique_users"),
        F.count_distinct("client_ip").alias("unique_clients"),
        F.sum(F.coalesce("bytes_sent", F.lit(0))).alias("bytes_sent"),
        F.percentile_approx("latency_ms", [0.5, 0.95], 10000).alias("_p"))
    events = errors.dropDuplicates(["event_ts", "event_date", "service", "host", "level", "code", "message",
                                    "request_id"]).groupBy(*keys).agg(
        F.count(F.lit(1)).alias("error_events"),
        F.count(F.when(F.col("level") == "CRITICAL", 1)).alias("critical_events"))
    zero = F.lit(0).cast("bigint")
    return requests.join(events, keys, "full_outer").select(
        F.col("event_date").alias("date"), "service",
        *[F.coalesce(F.col(n).cast("bigint"), zero).alias(n) for n in
          ("requests", "client_errors", "server_errors", "unique_users", "unique_clients", "bytes_sent")],
        F.col("_p")[0].cast("double").alias("p50_latency_ms"), F.col("_p")[1].cast("double").alias("p95_latency_ms"),
        *[F.coalesce(F.col(n), zero).alias(n) for n in ("error_events", "critical_events")])


def run(args) -> dict:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spark = spark_session(args.master, args.shuffle_partitions, args.driver_memory, app_name="glue_style_logs_job")
    timings["session_start"] = time.perf_counter() - t0
    start = dt.date.fromisoformat(args.start_date)
    # Zone-aware, so Spark takes it as an instant whatever the process's local zone.
    now = dt.datetime.fromisoformat(args.ingest_ts) if args.ingest_ts else dt.datetime.now(dt.timezone.utc)
    now = now.astimezone(dt.timezone.utc)
    out = args.output.rstrip("/")
    access_path, errors_path = f"{out}/processed/logs/log_type=access", f"{out}/processed/logs/log_type=error"

    t = time.perf_counter()
    write_by_date(read_access(spark, args.input, start, now), access_path)
    write_by_date(read_errors(spark, args.input, start, now), errors_path)
    timings["processed"] = time.perf_counter() - t

    # Gold from the Parquet just written (only the columns it needs), not from a second parse of raw/.
    t = time.perf_counter()
    gold = daily_activity(spark.read.parquet(access_path), spark.read.parquet(errors_path))
    gold.repartition("date").write.mode("overwrite").partitionBy("date").parquet(f"{out}/analytics/daily_activity")
    timings["gold"] = time.perf_counter() - t
    spark.stop()
    timings["total"] = time.perf_counter() - t0
    return timings


def main(argv=None) -> int:
    args = parse_args(argv, __doc__.splitlines()[0], "processed/, analytics/")
    print(json.dumps({"engine": "glue_spark", "phases": run(args)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
