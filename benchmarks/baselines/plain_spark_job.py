"""Baseline: the logs contract as one plain PySpark job, written the way an AWS Glue job would be.

No Dagster, no ingestion stage, no manifests, no archive: the job reads ``raw/``
directly, applies the contract's rules (shared/contracts/logs.md) and writes
processed, rejected and gold Parquet in one Spark application. It exists so the
benchmark can tell what our pipeline's extra guarantees cost.

What it assumes (and the benchmark guarantees): every file under ``--input`` is
readable. Unreadable files, which our pipeline rejects whole, are left out of
its input by the harness. A gzip JSON array is read as text, one element per
line, which is how the producers (and the generator) write arrays.

    python benchmarks/baselines/plain_spark_job.py --input RAW --output OUT [--master local[2]]

Prints one JSON line with phase timings to stdout.
"""
from __future__ import annotations

import argparse
import datetime as dt
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

ISO = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
       r"(Z|[+-](0[0-9]|1[0-7]):[0-5][0-9]|[+-]18:00)\z")
NUMBER = r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\z"
MIN_EPOCH, MAX_EPOCH = -62135596800, 253402300799


def local_cores(master: str) -> int | None:
    """Cores of a local[N]/local[*]/local master; None for a cluster."""
    import re

    m = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\s*\d+)?\])?", master.strip())
    if not m:
        return None
    return (os.cpu_count() or 1) if m.group(1) == "*" else int(m.group(1) or 1)


def conf_overrides() -> dict[str, str]:
    """``SPARK_CONF_spark__eventLog__enabled=true`` -> ``spark.eventLog.enabled=true``: the variables our
    pipeline reads (lake_assets/spark.py), so the harness sets a setting (the event log) for all alike."""
    return {key[len("SPARK_CONF_"):].replace("__", "."): value
            for key, value in os.environ.items() if key.startswith("SPARK_CONF_")}


def spark_session(master: str, shuffle_partitions: int, driver_memory: str, app_name: str = "plain_spark_logs_job"):
    """The same session settings our pipeline uses (spark.py), so only the job's shape differs."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(app_name).master(master)
    for key, value in {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "true",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.parquet.compression.codec": "zstd",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.driver.memory": driver_memory,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.locality.wait": "0s",
        "spark.sql.variant.allowDuplicateKeys": "true",
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
        # As ours: 16 MiB Parquet row groups, and the JIT compiles large generated methods.
        "spark.hadoop.parquet.block.size": str(16 * 1024 * 1024),
        "spark.driver.defaultJavaOptions": "-XX:-DontCompileHugeMethods",
        "spark.executor.defaultJavaOptions": "-XX:-DontCompileHugeMethods",
        # As ours: several input splits per local core.
        **({"spark.sql.files.minPartitionNum": str(8 * local_cores(master)),
            "spark.sql.inMemoryColumnarStorage.compressed": "false"} if local_cores(master) else {}),
        **conf_overrides(),
    }.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def event_time(text):
    """ISO-8601 with a zone, or epoch seconds/milliseconds (above 1e11); null otherwise."""
    from pyspark.sql import functions as F

    number = text.try_cast("decimal(38,9)")
    seconds = F.when(number > 10**11, number / 1000).otherwise(number)
    epoch = F.when(seconds.between(MIN_EPOCH, MAX_EPOCH),
                   F.timestamp_micros(F.floor(seconds * 1_000_000).try_cast("bigint")))
    iso = text.try_cast("timestamp")
    iso_ok = iso.between(F.timestamp_micros(F.lit(MIN_EPOCH * 10**6)),
                         F.timestamp_micros(F.lit((MAX_EPOCH + 1) * 10**6 - 1)))
    return F.when(text.rlike(ISO), F.when(iso_ok, iso)).when(text.rlike(NUMBER), epoch)


def reasons(rules):
    """Every rule broken, in contract order (empty array: valid)."""
    from pyspark.sql import functions as F

    return F.filter(F.array(*[F.when(cond, F.lit(name)) for name, cond in rules]), lambda x: x.isNotNull())


def timestamp_rules(ts, malformed, missing_ts, ingest_ts, start: dt.date):
    from pyspark.sql import functions as F

    return [
        ("invalid_timestamp", ~malformed & ~missing_ts & ts.isNull()),
        ("timestamp_out_of_range", ts.isNotNull() & ((F.to_date(ts) < F.lit(start))
                                                     | (ts > ingest_ts + F.expr("INTERVAL 1 DAY")))),
    ]


def routed_date(ts, ingest_ts, start: dt.date):
    """Where a record lands: its event date when in range, else the ingest date (as ingestion routes)."""
    from pyspark.sql import functions as F

    in_range = ts.isNotNull() & (F.to_date(ts) >= F.lit(start)) & (ts <= ingest_ts + F.expr("INTERVAL 1 DAY"))
    return F.when(in_range, F.to_date(ts)).otherwise(F.to_date(ingest_ts))


def read_lines(spark, folder: str, fmt: str):
    """Non-blank lines of every file in a folder, with the file they came from."""
    from pyspark.sql import functions as F

    df = spark.read.text(folder).select(F.col("value").alias("record"),
                                        F.col("_metadata.file_path").alias("source_file"))
    if fmt == "json_gzip":
        # A JSON array is written one element per line: drop its brackets and trailing commas.
        df = df.where(~F.trim("record").isin("[", "]")) \
               .withColumn("record", F.regexp_replace("record", r",\s*$", ""))
    return df.where(F.length(F.trim("record")) > 0).withColumn("source_format", F.lit(fmt))


def parse_access(lines, ingest_ts, start):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    j = F.from_json("record", T.StructType([T.StructField(n, T.StringType()) for n in ACCESS_FIELDS]))
    df = lines.withColumn("_j", j)
    c = {n: F.col(f"_j.{n}") for n in ACCESS_FIELDS}
    # Exactly one JSON object: a sentinel after it makes trailing text fail the parse.
    wrapped = F.try_parse_json(F.concat(F.lit("["), F.col("record"), F.lit(',"#end#"]')))
    malformed = ~F.coalesce((F.try_variant_get(wrapped, "$[1]", "string") == "#end#")
                            & F.schema_of_variant(F.try_variant_get(wrapped, "$[0]", "variant"))
                            .startswith("OBJECT"), F.lit(False))
    missing = {n: ~malformed & (c[n].isNull() | (c[n] == "")) for n in ACCESS_REQUIRED}
    ts = event_time(c["timestamp"])
    status = F.when(c["status"].rlike(r"^[0-9]{1,3}$"), c["status"].try_cast("int"))
    method = F.upper(c["method"])
    sent = c["bytes_sent"].try_cast("bigint")
    latency = c["latency_ms"].try_cast("double")
    rules = [("malformed_record", malformed)]
    rules += [(f"missing_field:{n}", missing[n]) for n in ACCESS_REQUIRED]
    rules += timestamp_rules(ts, malformed, missing["timestamp"], ingest_ts, start)
    rules += [
        ("invalid_status", ~missing["status"] & ~malformed & ~(status.isNotNull() & status.between(100, 599))),
        ("invalid_method", ~missing["method"] & ~malformed & ~method.isin(*METHODS)),
        ("negative_value:bytes_sent", sent < 0),
        ("negative_value:latency_ms", latency < 0),
        ("invalid_type:bytes_sent", c["bytes_sent"].isNotNull() & sent.isNull()),
        ("invalid_type:latency_ms", c["latency_ms"].isNotNull() & (latency.isNull() | F.isnan(latency))),
    ]
    extras = F.map_filter(F.from_json("record", T.MapType(T.StringType(), T.VariantType())),
                          lambda k, v: ~k.isin(*ACCESS_FIELDS))
    return df.select(
        ts.alias("event_ts"), F.to_date(ts).alias("event_date"), c["service"].alias("service"),
        c["host"].alias("host"), c["request_id"].alias("request_id"), c["client_ip"].alias("client_ip"),
        c["user_id"].alias("user_id"), method.alias("method"), c["path"].alias("path"),
        status.alias("status"), sent.alias("bytes_sent"), latency.alias("latency_ms"),
        c["user_agent"].alias("user_agent"), F.when(F.size(extras) > 0, F.to_json(extras)).alias("attributes"),
        "record", "source_format", "source_file",
        routed_date(ts, ingest_ts, start).alias("routed_date"), reasons(rules).alias("reasons"),
    )


def read_error_elements(spark, folder: str):
    """Each child element of each file's ``<errors>`` root, as text (elements may span lines)."""
    from pyspark.sql import functions as F

    files = spark.read.text(folder, wholetext=True).select(
        F.col("value"), F.col("_metadata.file_path").alias("source_file"))
    body = F.regexp_extract("value", r"(?s)<errors(?:\s[^>]*)?>(.*)</errors>", 1)
    elements = F.regexp_extract_all(body, F.lit(r"(?s)<([A-Za-z_][\w.-]*)(?:\s[^>]*)?(?:/>|>.*?</\1\s*>)"), 0)
    return files.select(F.explode(elements).alias("record"), "source_file") \
        .withColumn("source_format", F.lit("xml_errors"))


def parse_errors(elements, ingest_ts, start):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField(n, T.StringType()) for n in ERROR_FIELDS])
    df = elements.withColumn("_x", F.from_xml("record", schema, {"ignoreSurroundingSpaces": "false",
                                                                  "mode": "PERMISSIVE"}))
    c = {n: F.col(f"_x.{n}") for n in ERROR_FIELDS}
    malformed = ~F.col("record").rlike(r"^<error[\s/>]")
    missing = {n: ~malformed & (c[n].isNull() | ((c[n] == "") if n != "message" else F.lit(False)))
               for n in ERROR_REQUIRED}
    ts = event_time(c["timestamp"])
    level = F.upper(c["level"])
    rules = [("malformed_record", malformed)]
    rules += [(f"missing_field:{n}", missing[n]) for n in ERROR_REQUIRED]
    rules += timestamp_rules(ts, malformed, missing["timestamp"], ingest_ts, start)
    rules += [("invalid_level", ~missing["level"] & ~malformed & ~level.isin(*LEVELS))]
    return df.select(
        ts.alias("event_ts"), F.to_date(ts).alias("event_date"), c["service"].alias("service"),
        F.nullif(c["host"], F.lit("")).alias("host"), level.alias("level"),
        F.nullif(c["code"], F.lit("")).alias("code"), F.coalesce(c["message"], F.lit("")).alias("message"),
        F.nullif(c["request_id"], F.lit("")).alias("request_id"),
        "record", "source_format", "source_file",
        routed_date(ts, ingest_ts, start).alias("routed_date"), reasons(rules).alias("reasons"),
    )


def with_ymd(df, date_col: str):
    from pyspark.sql import functions as F

    return df.withColumn("year", F.date_format(date_col, "yyyy")) \
        .withColumn("month", F.date_format(date_col, "MM")).withColumn("day", F.date_format(date_col, "dd"))


def write_by_day(df, date_col: str, path: str) -> None:
    """One file per day under year=/month=/day=, as our pipeline lays it out."""
    with_ymd(df, date_col).repartition("year", "month", "day").write.mode("overwrite") \
        .partitionBy("year", "month", "day").parquet(path)


def daily_activity(access, errors):
    """The gold table, with the same deduplication and aggregation strategy as the contract's."""
    from pyspark.sql import functions as F

    per_request = access.groupBy("event_date", "service", "request_id") \
        .agg(F.min(F.struct("event_ts", "status", "bytes_sent", "latency_ms", "source_file")).alias("r")) \
        .select("event_date", "service", "r.status", "r.bytes_sent", "r.latency_ms")
    requests = per_request.groupBy("event_date", "service").agg(
        F.count(F.lit(1)).alias("requests"),
        F.count(F.when(F.col("status").between(400, 499), 1)).alias("client_errors"),
        F.count(F.when(F.col("status").between(500, 599), 1)).alias("server_errors"),
        F.sum(F.coalesce("bytes_sent", F.lit(0))).alias("bytes_sent"),
        F.percentile_approx("latency_ms", [0.5, 0.95], 10000).alias("_p"),
    )
    users = access.where(F.col("user_id").isNotNull()).select("event_date", "service", "user_id").distinct() \
        .groupBy("event_date", "service").agg(F.count(F.lit(1)).alias("unique_users"))
    clients = access.where(F.col("client_ip").isNotNull()).select("event_date", "service", "client_ip") \
        .distinct().groupBy("event_date", "service").agg(F.count(F.lit(1)).alias("unique_clients"))
    errs = errors.select("event_ts", "event_date", "service", "host", "level", "code", "message", "request_id") \
        .distinct().groupBy("event_date", "service") \
        .agg(F.count(F.lit(1)).alias("error_events"),
             F.count(F.when(F.col("level") == "CRITICAL", 1)).alias("critical_events"))
    keys = ["event_date", "service"]
    joined = requests.join(users, keys, "left").join(clients, keys, "left").join(errs, keys, "full_outer")
    zero = F.lit(0).cast("bigint")
    return joined.select(
        F.col("event_date").alias("date"), "service",
        *[F.coalesce(F.col(n).cast("bigint"), zero).alias(n) for n in
          ("requests", "client_errors", "server_errors", "unique_users", "unique_clients", "bytes_sent")],
        F.col("_p")[0].cast("double").alias("p50_latency_ms"), F.col("_p")[1].cast("double").alias("p95_latency_ms"),
        *[F.coalesce(F.col(n), zero).alias(n) for n in ("error_events", "critical_events")],
    )


def reject_rows(parsed):
    """Rows that broke a rule, in the contract's rejected/data_quality columns."""
    from pyspark.sql import functions as F

    return parsed.where(F.size("reasons") > 0).select(
        "record", F.col("reasons")[0].alias("reason"), "reasons", "source_format", "source_file",
        F.lit("processed").alias("stage"), "ingest_run_id", F.current_timestamp().alias("rejected_at"),
        "routed_date")


ACCESS_COLUMNS = ("event_ts", "event_date", "service", "host", "request_id", "client_ip", "user_id", "method",
                  "path", "status", "bytes_sent", "latency_ms", "user_agent", "attributes", "source_format",
                  "source_file", "ingest_run_id")
ERROR_COLUMNS = ("event_ts", "event_date", "service", "host", "level", "code", "message", "request_id",
                 "source_file", "ingest_run_id")


def run(args) -> dict:
    from pyspark.sql import functions as F

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spark = spark_session(args.master, args.shuffle_partitions, args.driver_memory)
    timings["session_start"] = time.perf_counter() - t0
    start = dt.date.fromisoformat(args.start_date)
    now = dt.datetime.fromisoformat(args.ingest_ts) if args.ingest_ts else dt.datetime.now(dt.timezone.utc)
    ingest_ts = F.lit(now.astimezone(dt.timezone.utc).replace(tzinfo=None)).cast("timestamp")
    run_id = str(uuid.uuid4())
    out = args.output.rstrip("/")

    t = time.perf_counter()
    access_dirs = [(os.path.join(args.input, f), f) for f in ("ndjson", "json_gzip")
                   if os.path.isdir(os.path.join(args.input, f))]
    lines = None
    for folder, fmt in access_dirs:
        part = read_lines(spark, folder, fmt)
        lines = part if lines is None else lines.unionByName(part)
    access = parse_access(lines, ingest_ts, start).withColumn("ingest_run_id", F.lit(run_id)).persist()
    errors = parse_errors(read_error_elements(spark, os.path.join(args.input, "xml_errors")), ingest_ts, start) \
        .withColumn("ingest_run_id", F.lit(run_id)).persist()
    valid_access = access.where(F.size("reasons") == 0).select(*ACCESS_COLUMNS)
    valid_errors = errors.where(F.size("reasons") == 0).select(*ERROR_COLUMNS)
    write_by_day(valid_access, "event_date", f"{out}/processed/logs/log_type=access")
    write_by_day(valid_errors, "event_date", f"{out}/processed/logs/log_type=error")
    timings["processed"] = time.perf_counter() - t

    t = time.perf_counter()
    rejected = reject_rows(access).unionByName(reject_rows(errors))
    write_by_day(rejected, "routed_date", f"{out}/rejected/data_quality")
    timings["rejected"] = time.perf_counter() - t

    t = time.perf_counter()
    gold = daily_activity(valid_access, valid_errors)
    gold.repartition("date").write.mode("overwrite").partitionBy("date").parquet(f"{out}/analytics/daily_activity")
    timings["gold"] = time.perf_counter() - t
    access.unpersist()
    errors.unpersist()
    spark.stop()
    timings["total"] = time.perf_counter() - t0
    return timings


def parse_args(argv, description: str, outputs: str) -> argparse.Namespace:
    """The command line every Spark baseline takes (the benchmark runs them alike)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--input", required=True, help="folder holding ndjson/, json_gzip/, xml_errors/")
    p.add_argument("--output", required=True, help=f"output root ({outputs})")
    p.add_argument("--master", default=os.environ.get("SPARK_MASTER", "local[2]"))
    p.add_argument("--shuffle-partitions", type=int, default=int(os.environ.get("SPARK_SHUFFLE_PARTITIONS", "8")))
    p.add_argument("--driver-memory", default=os.environ.get("SPARK_DRIVER_MEMORY", "4g"))
    p.add_argument("--start-date", default=os.environ.get("LAKE_START_DATE", "2024-01-01"))
    p.add_argument("--ingest-ts", help="ISO time the records count as ingested (default: now)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv, __doc__.splitlines()[0], "processed/, rejected/, analytics/")
    print(json.dumps({"engine": "plain_spark", "phases": run(args)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
