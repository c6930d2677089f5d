"""The logs contract (``shared/contracts/logs.md``) as code: formats, schemas and rules.

Rules are declared once, in contract order, as Spark column expressions; the
only Python twin is event dating (:func:`routing_date`), which ingestion needs
to route records and which shares its patterns with Spark (quality.timestamps).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import replace

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.domains.logs.fields import (  # noqa: F401  (re-exported: the contract's lists)
    ACCESS_FIELDS,
    ACCESS_REQUIRED,
    ACCESS_RULES,
    ERROR_FIELDS,
    ERROR_REQUIRED,
    ERROR_RULES,
    LEVELS,
    MAY_BE_EMPTY,
    METHODS,
)
from lake_assets.ingest.formats import JSON_GZIP, NDJSON, XML_ERRORS, RawFormat, Record
from lake_assets.ingest.validated import TEXT_INPUT_SCHEMA, json_get, json_record  # noqa: F401  (what parse_* read)
from lake_assets.quality.rules import Rule, reasons_column, reject_rows
from lake_assets.quality.timestamps import event_time_column, parse_event_time

#: The one field :func:`routing_date` reads: the JSON readers build only it (each record is
#: still validated whole, and its text passes through to ``validated/`` unchanged).
DATING_FIELDS = ("timestamp",)
#: Access records come as NDJSON or gzip JSON, errors as XML.
ACCESS_FORMATS = tuple(replace(f, value_fields=DATING_FIELDS) for f in (NDJSON, JSON_GZIP))
ERROR_FORMATS = (XML_ERRORS,)
#: raw/<name>/ -> format.
FORMATS: dict[str, RawFormat] = {f.name: f for f in ACCESS_FORMATS + ERROR_FORMATS}

#: Every rule name, access then error, in contract order (the metrics zone reports each one's outcome).
RULE_NAMES = tuple(dict.fromkeys([
    "malformed_record", *(f"missing_field:{n}" for n in ACCESS_REQUIRED + ERROR_REQUIRED),
    "invalid_timestamp", "timestamp_out_of_range", "invalid_status", "invalid_method",
    "negative_value:bytes_sent", "negative_value:latency_ms", "invalid_type:bytes_sent",
    "invalid_type:latency_ms", "invalid_level",
]))

ACCESS_SCHEMA = T.StructType([
    T.StructField("event_ts", T.TimestampType(), False),
    T.StructField("event_date", T.DateType(), False),
    T.StructField("service", T.StringType(), False),
    T.StructField("host", T.StringType(), True),
    T.StructField("request_id", T.StringType(), False),
    T.StructField("client_ip", T.StringType(), True),
    T.StructField("user_id", T.StringType(), True),
    T.StructField("method", T.StringType(), False),
    T.StructField("path", T.StringType(), False),
    T.StructField("status", T.IntegerType(), False),
    T.StructField("bytes_sent", T.LongType(), True),
    T.StructField("latency_ms", T.DoubleType(), True),
    T.StructField("user_agent", T.StringType(), True),
    T.StructField("attributes", T.StringType(), True),
    T.StructField("source_format", T.StringType(), False),
    T.StructField("source_file", T.StringType(), False),
    T.StructField("ingest_run_id", T.StringType(), False),
])

ERROR_SCHEMA = T.StructType([
    T.StructField("event_ts", T.TimestampType(), False),
    T.StructField("event_date", T.DateType(), False),
    T.StructField("service", T.StringType(), False),
    T.StructField("host", T.StringType(), True),
    T.StructField("level", T.StringType(), False),
    T.StructField("code", T.StringType(), True),
    T.StructField("message", T.StringType(), False),
    T.StructField("request_id", T.StringType(), True),
    T.StructField("source_file", T.StringType(), False),
    T.StructField("ingest_run_id", T.StringType(), False),
])

DAILY_ACTIVITY_SCHEMA = T.StructType([
    T.StructField("date", T.DateType(), False),
    T.StructField("service", T.StringType(), False),
    T.StructField("requests", T.LongType(), False),
    T.StructField("client_errors", T.LongType(), False),
    T.StructField("server_errors", T.LongType(), False),
    T.StructField("unique_users", T.LongType(), False),
    T.StructField("unique_clients", T.LongType(), False),
    T.StructField("bytes_sent", T.LongType(), False),
    T.StructField("p50_latency_ms", T.DoubleType(), True),
    T.StructField("p95_latency_ms", T.DoubleType(), True),
    T.StructField("error_events", T.LongType(), False),
    T.StructField("critical_events", T.LongType(), False),
])



# -- Python: dating a record for routing ------------------------------------
_ONE_DAY = dt.timedelta(days=1)


def in_lake_range(ts: dt.datetime, ingest_ts: dt.datetime, start: dt.date) -> bool:
    """``timestamp_out_of_range`` negated: not before the lake's start, at most a day ahead."""
    return ts.date() >= start and ts <= ingest_ts + _ONE_DAY


def routing_date(record: Record, ingest_ts: dt.datetime, start: dt.date) -> dt.date | None:
    """The event date a record is routed to, or None (the ingest date) when it has none in range.

    It reads only ``DATING_FIELDS``: the access formats build no other key of a record's value.
    """
    value = record.value
    if value is None:
        return None
    ts = parse_event_time(value.get("timestamp"))
    if ts is None or not in_lake_range(ts, ingest_ts, start):
        return None
    return ts.date()


# -- Spark: parsing and rules -----------------------------------------------
def _missing(value: Column, name: str, malformed: Column) -> Column:
    absent = value.isNull() if name in MAY_BE_EMPTY else (value.isNull() | (value == ""))
    return ~malformed & absent


def _timestamp_rules(ts: Column, malformed: Column, missing_ts: Column,
                     ingest_ts: Column, start: dt.date) -> list[Rule]:
    return [
        Rule("invalid_timestamp", ~malformed & ~missing_ts & ts.isNull()),
        Rule("timestamp_out_of_range", ts.isNotNull() & (
            (F.to_date(ts) < F.lit(start)) | (ts > ingest_ts + F.expr("INTERVAL 1 DAY")))),
    ]


def parse_access(text: DataFrame, start: dt.date) -> DataFrame:
    """Validated access records -> typed columns plus ``reasons`` (empty when valid).

    Three projections, each reading the one before: the record is parsed once,
    each field read once and typed once. Inlined into every rule that uses
    them, the same expressions were evaluated several times per row (Spark
    does not share work across the branches of the rules' conditionals).
    """
    lineage = TEXT_INPUT_SCHEMA.fieldNames()
    obj = F.col("_obj")
    extras = F.map_filter(json_get(obj, "$", "map<string,variant>"), lambda k, v: ~k.isin(*ACCESS_FIELDS))
    # 1. The one strict parse; 2. every field as text (numbers and nested values keep their JSON form).
    step = text.select(*lineage, json_record(F.col("record")).alias("_obj"))
    step = step.select(
        *lineage, obj.isNull().alias("_malformed"),
        *[json_get(obj, f"$.{n}", "string").alias(n) for n in ACCESS_FIELDS],
        F.when(F.size(extras) > 0, F.to_json(extras)).alias("attributes"),
    )
    c = {n: F.col(n) for n in ACCESS_FIELDS}
    # 3. Typed once.
    step = step.select(
        "*",
        event_time_column(c["timestamp"]).alias("event_ts"),
        F.when(c["status"].rlike(r"^\d{1,3}$"), c["status"].try_cast("int")).alias("_status"),
        F.upper(c["method"]).alias("_method"),
        c["bytes_sent"].try_cast("bigint").alias("_bytes_sent"),
        c["latency_ms"].try_cast("double").alias("_latency_ms"),
    )
    ts, status, method = F.col("event_ts"), F.col("_status"), F.col("_method")
    bytes_sent, latency = F.col("_bytes_sent"), F.col("_latency_ms")
    malformed = F.col("_malformed")
    missing = {n: _missing(c[n], n, malformed) for n in ACCESS_REQUIRED}
    rules = [Rule("malformed_record", malformed)]
    rules += [Rule(f"missing_field:{n}", missing[n]) for n in ACCESS_REQUIRED]
    rules += _timestamp_rules(ts, malformed, missing["timestamp"], F.col("ingest_ts"), start)
    rules += [
        Rule("invalid_status", ~missing["status"] & ~malformed & ~(status.isNotNull() & status.between(100, 599))),
        Rule("invalid_method", ~missing["method"] & ~malformed & ~method.isin(*METHODS)),
        Rule("negative_value:bytes_sent", bytes_sent < 0),
        Rule("negative_value:latency_ms", latency < 0),
        # Outside the contract's types (a number was promised): kept, not nulled.
        Rule("invalid_type:bytes_sent", c["bytes_sent"].isNotNull() & bytes_sent.isNull()),
        Rule("invalid_type:latency_ms", c["latency_ms"].isNotNull() & (latency.isNull() | F.isnan(latency))),
    ]
    assert tuple(r.name for r in rules) == ACCESS_RULES, "access rules drifted from fields.ACCESS_RULES"
    return step.select(
        ts.alias("event_ts"),
        F.to_date(ts).alias("event_date"),
        *[c[n].alias(n) for n in ("service", "host", "request_id", "client_ip", "user_id")],
        method.alias("method"),
        c["path"].alias("path"),
        status.alias("status"),
        bytes_sent.alias("bytes_sent"),
        latency.alias("latency_ms"),
        c["user_agent"].alias("user_agent"),
        "attributes",
        "record", "routed_date", "source_format", "source_file", "ingest_run_id",
        reasons_column(rules).alias("reasons"),
    )


def parse_errors(text: DataFrame, start: dt.date) -> DataFrame:
    """Validated ``<error>`` records -> typed columns plus ``reasons`` (empty when valid)."""
    schema = T.StructType([T.StructField(n, T.StringType()) for n in ERROR_FIELDS])
    x = F.from_xml("record", schema, {"ignoreSurroundingSpaces": "false", "mode": "PERMISSIVE"})
    df = text.withColumn("_x", x)
    c = {n: F.col(f"_x.{n}") for n in ERROR_FIELDS}
    malformed = ~F.col("record").rlike(r"^<error[\s/>]")
    missing = {n: _missing(c[n], n, malformed) for n in ERROR_REQUIRED}
    ts = event_time_column(c["timestamp"])
    level = F.upper(c["level"])
    rules = [Rule("malformed_record", malformed)]
    rules += [Rule(f"missing_field:{n}", missing[n]) for n in ERROR_REQUIRED]
    rules += _timestamp_rules(ts, malformed, missing["timestamp"], F.col("ingest_ts"), start)
    rules += [Rule("invalid_level", ~missing["level"] & ~malformed & ~level.isin(*LEVELS))]
    assert tuple(r.name for r in rules) == ERROR_RULES, "error rules drifted from fields.ERROR_RULES"
    return df.select(
        ts.alias("event_ts"),
        F.to_date(ts).alias("event_date"),
        c["service"].alias("service"),
        F.nullif(c["host"], F.lit("")).alias("host"),
        level.alias("level"),
        F.nullif(c["code"], F.lit("")).alias("code"),
        F.coalesce(c["message"], F.lit("")).alias("message"),
        F.nullif(c["request_id"], F.lit("")).alias("request_id"),
        "record", "routed_date", "source_format", "source_file", "ingest_run_id",
        reasons_column(rules).alias("reasons"),
    )


def valid_rows(parsed: DataFrame, schema: T.StructType) -> DataFrame:
    """The rows that broke no rule, in the contract's columns and types."""
    ok = parsed.where(F.size("reasons") == 0)
    return ok.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def rejected_rows(parsed: DataFrame, stage: str = "processed") -> DataFrame:
    """The rows that broke a rule, under the partition they were routed to."""
    bad = parsed.where(F.size("reasons") > 0).withColumn("partition_date", F.col("routed_date"))
    return reject_rows(bad, stage=stage)


def daily_activity(access: DataFrame, errors: DataFrame) -> DataFrame:
    """The gold table: one row per (date, service), deduplicated by request and identical errors."""
    # One row per request (a re-delivery carries the same id); the earliest wins, deterministically.
    per_request = (
        access.groupBy("event_date", "service", "request_id")
        .agg(F.min(F.struct("event_ts", "status", "bytes_sent", "latency_ms", "source_file")).alias("r"))
        .select("event_date", "service", "r.status", "r.bytes_sent", "r.latency_ms")
    )
    requests = per_request.groupBy("event_date", "service").agg(
        F.count(F.lit(1)).alias("requests"),
        F.count(F.when(F.col("status").between(400, 499), 1)).alias("client_errors"),
        F.count(F.when(F.col("status").between(500, 599), 1)).alias("server_errors"),
        F.sum(F.coalesce("bytes_sent", F.lit(0))).alias("bytes_sent"),
        F.percentile_approx("latency_ms", [0.5, 0.95], 10000).alias("_p"),
    )
    # Distinct counts in their own aggregation: mixed with percentile_approx, Spark
    # plans an expand that is many times slower.
    users = access.where(F.col("user_id").isNotNull()).select("event_date", "service", "user_id").distinct() \
        .groupBy("event_date", "service").agg(F.count(F.lit(1)).alias("unique_users"))
    clients = access.where(F.col("client_ip").isNotNull()).select("event_date", "service", "client_ip").distinct() \
        .groupBy("event_date", "service").agg(F.count(F.lit(1)).alias("unique_clients"))
    error_counts = (
        errors.select("event_ts", "event_date", "service", "host", "level", "code", "message", "request_id")
        .distinct()
        .groupBy("event_date", "service")
        .agg(F.count(F.lit(1)).alias("error_events"),
             F.count(F.when(F.col("level") == "CRITICAL", 1)).alias("critical_events"))
    )
    keys = ["event_date", "service"]
    joined = (
        requests.join(users, keys, "left").join(clients, keys, "left").join(error_counts, keys, "full_outer")
    )
    zero = F.lit(0).cast("bigint")
    return joined.select(
        F.col("event_date").alias("date"),
        "service",
        *[F.coalesce(F.col(n).cast("bigint"), zero).alias(n) for n in
          ("requests", "client_errors", "server_errors", "unique_users", "unique_clients", "bytes_sent")],
        F.col("_p")[0].cast("double").alias("p50_latency_ms"),
        F.col("_p")[1].cast("double").alias("p95_latency_ms"),
        *[F.coalesce(F.col(n), zero).alias(n) for n in ("error_events", "critical_events")],
    )
