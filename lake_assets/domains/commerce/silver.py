"""Bronze records -> silver rows and quarantined rows, driven by a :class:`DatasetSpec`.

One pass: the record's JSON is parsed once (strictly), every canonical column
is read under each of its names (the first present wins), trimmed, null tokens
nulled and cast; every rule is a Spark column expression collected into
``reasons``; deduplication is one window over the rows that broke no rule, and
its losers are quarantined as ``duplicate``. No Python UDF.

Routing (Python, at ingestion) dates a record with the same timestamp parser,
so the partition a row lands in is the date ingestion routed it to.
"""
from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.domains.commerce.spec import MIN_TIMESTAMP, NULL_TOKENS, DatasetSpec
from lake_assets.ingest.formats import Record
from lake_assets.ingest.validated import NUMBERED_INPUT_SCHEMA, json_get, json_record
from lake_assets.quality.rules import Rule, reasons_column, reject_rows
from lake_assets.quality.timestamps import event_time_column, parse_event_time

_MIN_TS = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
#: What "trimmed" strips, in Python (routing) and Spark (silver) alike: Spark's ``trim`` alone
#: strips only spaces, Python's ``strip()`` all Unicode whitespace.
WHITESPACE = " \t\n\r\f\v"


# -- Python: the date ingestion routes a record to ----------------------------
def _clean(value: object) -> object:
    if isinstance(value, str):
        value = value.strip(WHITESPACE)
        return None if value in NULL_TOKENS else value
    return value


def routing_date(spec: DatasetSpec, record: Record, ingest_ts: dt.datetime, start: dt.date) -> dt.date | None:
    """The UTC date of the record's dating column, or None (the ingest date) when it has no usable one."""
    if record.value is None:
        return None
    col = spec.by_name[spec.date_column]
    value = next((v for v in (_clean(record.value.get(n)) for n in col.names) if v is not None), None)
    ts = parse_event_time(value)
    if ts is None or ts < _MIN_TS or ts > ingest_ts + dt.timedelta(days=1) or ts.date() < start:
        return None
    return ts.date()


# -- Spark: schemas ---------------------------------------------------------------
def _spark_type(name: str) -> T.DataType:
    return {"string": T.StringType(), "timestamp": T.TimestampType()}.get(name) or T.DecimalType(18, 2)


def silver_schema(spec: DatasetSpec) -> T.StructType:
    """Silver's columns: canonical (typed) plus ``_extra`` and lineage."""
    # Required columns (primary keys among them) are never null in silver: a null one is quarantined.
    fields = [T.StructField(c.name, _spark_type(c.type), c.nullable) for c in spec.columns]
    return T.StructType(fields + [
        T.StructField("_extra", T.StringType(), True),
        T.StructField("_source_file", T.StringType(), False),
        T.StructField("_ingest_run_id", T.StringType(), False),
        T.StructField("_loaded_at", T.TimestampType(), False),
    ])


# -- Spark: parse, rules, dedup -------------------------------------------------------
def _text(obj: Column, name: str) -> Column:
    """A field as trimmed text (numbers keep their JSON form), null tokens nulled."""
    raw = F.btrim(json_get(obj, f"$['{name}']", "string"), F.lit(WHITESPACE))
    return F.when(~raw.isin(*NULL_TOKENS), raw)


def _cast(text: Column, type_name: str) -> Column:
    if type_name == "string":
        return text
    if type_name == "timestamp":
        return event_time_column(text)
    return text.try_cast(type_name)


def _any(conditions: list[Column]) -> Column:
    out = conditions[0]
    for c in conditions[1:]:
        out = out | c
    return out


def parse(records: DataFrame, spec: DatasetSpec, start: dt.date) -> DataFrame:
    """Records (validated text with lineage) -> typed columns, ``reasons`` (incl. duplicate) and lineage."""
    lineage = NUMBERED_INPUT_SCHEMA.fieldNames()
    known = list(spec.known_names)
    # Three projections, each reading the previous one's columns: every field is read, trimmed
    # and cast once (inlined into each rule, the plan grows per rule and takes seconds to optimize).
    obj = json_record(F.col("record"))
    extras = F.map_filter(json_get(F.col("_obj"), "$", "map<string,variant>"),
                          lambda k, v: ~k.isin(*known))
    step = records.select(*lineage, obj.alias("_obj"))
    step = step.select(
        *lineage, F.col("_obj").isNull().alias("_malformed"),
        *[F.coalesce(*[_text(F.col("_obj"), n) for n in c.names]).alias(f"_text_{c.name}") for c in spec.columns],
        F.when(F.size(extras) > 0, F.to_json(extras)).alias("_extra"),
    )
    text = {c.name: F.col(f"_text_{c.name}") for c in spec.columns}
    step = step.select("*", *[_cast(text[c.name], c.type).alias(c.name) for c in spec.columns])
    typed = {c.name: F.col(c.name) for c in spec.columns}
    malformed = F.col("_malformed")
    ingest_ts = F.col("ingest_ts")

    rules = [Rule("malformed_record", malformed),
             Rule("missing_primary_key", ~malformed & _any([text[k].isNull() for k in spec.primary_key]))]
    rules += [Rule(f"missing_value:{c.name}", ~malformed & text[c.name].isNull())
              for c in spec.columns if not c.nullable and c.name not in spec.primary_key]
    rules += [Rule(f"invalid_type:{c.name}", text[c.name].isNotNull() & typed[c.name].isNull())
              for c in spec.columns if c.type != "string"]
    impossible = [typed[n].isNotNull() & ((typed[n] < F.lit(MIN_TIMESTAMP).cast("timestamp"))
                                          | (typed[n] > ingest_ts + F.expr("INTERVAL 1 DAY")))
                  for n in spec.timestamp_columns]
    rules.append(Rule("impossible_timestamp", _any(impossible)))
    # Possible but older than the lake's first partition (an impossible one is reported as such only).
    rules.append(Rule("before_lake_start", ~_any(impossible) & (F.to_date(typed[spec.date_column]) < F.lit(start))))
    for c in spec.columns:
        value = typed[c.name]
        if c.allowed:
            rules.append(Rule(f"invalid_value:{c.name}", value.isNotNull() & ~value.isin(*c.allowed)))
        elif c.non_negative:
            rules.append(Rule(f"invalid_value:{c.name}", value < 0))
        elif c.needs_at:
            rules.append(Rule(f"invalid_value:{c.name}", value.isNotNull() & ~value.contains("@")))
    # The spec lists the same rules for the metrics zone and the docs: they must not drift apart.
    assert [r.name for r in rules] + ["duplicate"] == list(spec.rule_names), "spec.rule_names is out of date"
    reasons = F.coalesce(reasons_column(rules), F.array().cast("array<string>"))
    parsed = step.select(*[c.name for c in spec.columns], "_extra", *lineage, reasons.alias("reasons"))
    return _flag_duplicates(parsed, spec)


def _flag_duplicates(parsed: DataFrame, spec: DatasetSpec) -> DataFrame:
    """Rank valid rows per key as the contract says; every loser gets the reason ``duplicate``."""
    valid = F.size("reasons") == 0
    delivery = [F.col("ingest_ts"), F.col("source_file"), F.col("position")]
    if spec.dedup.startswith("earliest:"):
        order = [F.col(spec.dedup.split(":", 1)[1]).asc()] + [c.asc() for c in delivery]
    else:  # latest_delivery
        order = [c.desc() for c in delivery]
    window = Window.partitionBy(*spec.primary_key, valid.alias("_valid")).orderBy(*order)
    rank = F.when(valid, F.row_number().over(window))
    return parsed.withColumn("reasons", F.when(rank > 1, F.array(F.lit("duplicate"))).otherwise(F.col("reasons")))


def silver_rows(parsed: DataFrame, spec: DatasetSpec, loaded_at: dt.datetime) -> DataFrame:
    """The rows that broke no rule, in silver's schema, with their partition date (``_event_date``)."""
    schema = silver_schema(spec)
    ok = parsed.where(F.size("reasons") == 0)
    return ok.select(
        *[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields[: len(spec.columns)]],
        F.col("_extra"),
        F.col("source_file").alias("_source_file"),
        F.col("ingest_run_id").alias("_ingest_run_id"),
        F.lit(loaded_at).cast("timestamp").alias("_loaded_at"),
        F.col("routed_date").alias("_event_date"),
    )


def quarantined_rows(parsed: DataFrame, rejected_at: dt.datetime) -> DataFrame:
    """The rows that broke a rule, under the date they were routed to (the ingest date when undatable)."""
    bad = parsed.where(F.size("reasons") > 0).withColumn("partition_date", F.col("routed_date"))
    return reject_rows(bad, stage="silver", rejected_at=F.lit(rejected_at).cast("timestamp"))
