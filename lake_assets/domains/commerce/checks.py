"""Asset checks of the commerce lake. Checks on silver, dims and facts guard the marts: blocking.

Each check's outcome is also merged into the metrics zone (the metrics CSV of
the partition it checked), next to the table's row counts and null rates.
"""

import datetime as dt
from typing import Any

import pandera.pyspark as pa
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetKey,
    MetadataValue,
    asset_check,
)
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.domains.commerce import gold, silver
from lake_assets.domains.commerce.assets import (
    FORMATS,
    GOLD_TABLES,
    QUARANTINE_TABLES,
    SILVER_TABLES,
    ZONES,
)
from lake_assets.domains.commerce.spec import DATASETS, DatasetSpec
from lake_assets.ingest.validated import validated_files
from lake_assets.io_managers import partition_row_counts, read_table
from lake_assets.partitions import daily_partitions
from lake_assets.quality import metrics
from lake_assets.quality.checks import RateThresholds, pandera_schema, rate_result, validate_with_pandera
from lake_assets.quality.rules import REJECT_SCHEMA
from lake_assets.resources import LakeResource


def _keys(context: AssetCheckExecutionContext, partitioned: bool) -> list[str | None]:
    """The partitions a check covers; ``[None]`` for a full-refresh table (even in a partitioned run)."""
    return list(context.partition_keys) if partitioned else [None]


def _recorded(context: AssetCheckExecutionContext, lake: LakeResource, dataset: str, asset: str,
              name: str, result: AssetCheckResult, count: float = 0, partitioned: bool = True) -> AssetCheckResult:
    keys = [k for k in _keys(context, partitioned) if k is not None] or None
    return metrics.recorded(context, lake.storage, result, dataset=dataset, asset=asset, name=name,
                            partitions=keys, count=count)


def _read(context: AssetCheckExecutionContext, spark: LazyPySparkResource, lake: LakeResource,
          table: dict, asset: str, partitioned: bool) -> DataFrame:
    return read_table(spark.spark_session, lake.storage, table, _keys(context, partitioned), asset)


# -- shared pieces of the checks ----------------------------------------------------
def _duplicates(df: DataFrame, keys: list[str], sample: int = 5) -> tuple[int, list[str]]:
    dupes = df.groupBy(*keys).count().where(F.col("count") > 1)
    found = dupes.limit(sample).collect()
    n = dupes.count() if found else 0
    return n, ["/".join(str(r[k]) for k in keys) for r in found]


def _orphans(df: DataFrame, column: str, ref: DataFrame, ref_column: str, sample: int = 5) -> tuple[int, list[str]]:
    """Non-null values of ``column`` with no match in ``ref``."""
    missing = df.where(F.col(column).isNotNull()).select(column).distinct().join(
        ref.select(F.col(ref_column).alias(column)).distinct(), column, "left_anti")
    found = [str(r[column]) for r in missing.limit(sample).collect()]
    return (missing.count() if found else 0), found


def _schema_check(asset: str, dataset: str, table: dict, schema: pa.DataFrameSchema, *, blocking: bool,
                  partitioned: bool) -> AssetChecksDefinition:
    name = f"{asset}_schema"

    @asset_check(name=name, asset=AssetKey(asset), blocking=blocking,
                 partitions_def=daily_partitions if partitioned else None,
                 description=f"pandera (PySpark) schema of {asset}: columns, types, nullability, allowed values.")
    def _check(context: AssetCheckExecutionContext, spark: LazyPySparkResource, lake: LakeResource):
        errors = validate_with_pandera(schema, _read(context, spark, lake, table, asset, partitioned))
        failed = sum(e.get("failure_cases", 1) for e in errors.get("DATA", [])) if errors else 0
        result = AssetCheckResult(passed=not errors, metadata={"errors": MetadataValue.json(errors)})
        return _recorded(context, lake, dataset, asset, name, result, failed, partitioned)

    return _check


def _keys_check(asset: str, dataset: str, table: dict, unique: list[str], *, refs: list[tuple] = (),
                partitioned: bool, description: str) -> AssetChecksDefinition:
    """Primary key unique; each (column, ref table meta, ref asset, ref column) has a match (blocking)."""
    name = f"{asset}_keys"

    @asset_check(name=name, asset=AssetKey(asset), blocking=True,
                 partitions_def=daily_partitions if partitioned else None,
                 additional_deps=[AssetKey(r[2]) for r in refs], description=description)
    def _check(context: AssetCheckExecutionContext, spark: LazyPySparkResource, lake: LakeResource):
        df = _read(context, spark, lake, table, asset, partitioned)
        found: dict[str, Any] = {}
        bad = 0
        n, sample = _duplicates(df, unique)
        found["duplicate_keys"] = {"key": unique, "count": n, "sample": sample}
        bad += n
        for column, ref_table, ref_asset, ref_column in refs:
            ref = read_table(spark.spark_session, lake.storage, ref_table, [None], ref_asset)
            n, sample = _orphans(df, column, ref, ref_column)
            found[f"{column}_not_in_{ref_asset}"] = {"count": n, "sample": sample}
            bad += n
        result = AssetCheckResult(passed=bad == 0, metadata={
            "violations": bad, "details": MetadataValue.json(found)})
        return _recorded(context, lake, dataset, asset, name, result, bad, partitioned)

    return _check


# -- silver ---------------------------------------------------------------------------------
def _silver_pandera(spec: DatasetSpec) -> pa.DataFrameSchema:
    checks: dict[str, list] = {}
    for c in spec.columns:
        if c.allowed:
            checks[c.name] = [pa.Check.isin(list(c.allowed))]
        elif c.non_negative:
            checks[c.name] = [pa.Check.ge(0)]
    return pandera_schema(silver.silver_schema(spec), checks)


def _accounting(lake: LakeResource, spec: DatasetSpec, keys: list[str]) -> dict[str, dict[str, int]]:
    """Per date: records ingestion routed there (and how many for want of a usable date, all
    quarantined), and rows silver and quarantine hold: manifests and Parquet footers only."""
    days = [dt.date.fromisoformat(k) for k in keys]
    files = validated_files(lake.storage, days, (FORMATS[spec.name],), ZONES)
    out = {}
    for day in days:
        key = day.isoformat()
        out[key] = {
            "records_read": sum(f.records for f in files if f.day == day),
            "silver": partition_row_counts(lake.storage, SILVER_TABLES[spec.name], key)[None],
            "quarantined": partition_row_counts(lake.storage, QUARANTINE_TABLES[spec.name], key)[None],
            "undated": sum(f.undated for f in files if f.day == day),
        }
    return out


def silver_checks(spec: DatasetSpec) -> list[AssetChecksDefinition]:
    name, asset = spec.name, f"silver_{spec.name}"

    @asset_check(name=f"{asset}_every_row_accounted", asset=AssetKey(asset), partitions_def=daily_partitions,
                 blocking=True, description="Every bronze record routed to the partition is in silver or "
                                            "quarantine, once (from the ingestion manifests and Parquet footers).")
    def accounted(context: AssetCheckExecutionContext, lake: LakeResource):
        counts = _accounting(lake, spec, list(context.partition_keys))
        broken = {d: c for d, c in counts.items() if c["silver"] + c["quarantined"] != c["records_read"]}
        totals = {k: sum(c[k] for c in counts.values()) for k in ("records_read", "silver", "quarantined")}
        result = AssetCheckResult(passed=not broken, metadata={
            **totals, "mismatched_partitions": MetadataValue.json(broken)})
        lost = sum(abs(c["records_read"] - c["silver"] - c["quarantined"]) for c in broken.values())
        return _recorded(context, lake, name, asset, f"{asset}_every_row_accounted", result, lost)

    @asset_check(name=f"{asset}_quarantine_rate", asset=AssetKey(asset), partitions_def=daily_partitions,
                 blocking=True, description="Share of the partition's dated rows quarantined: WARN above "
                 "LAKE_QUARANTINE_RATE_WARN (default 0.10), ERROR (blocks gold) above LAKE_QUARANTINE_RATE_ERROR "
                 "(default 0.30). Rows without a usable date land on their ingest date and are reported "
                 "apart (undated_quarantined), not counted against it.")
    def quarantine_rate(context: AssetCheckExecutionContext, lake: LakeResource):
        counts = _accounting(lake, spec, list(context.partition_keys))
        undated = sum(c["undated"] for c in counts.values())
        quarantined = sum(c["quarantined"] for c in counts.values()) - undated
        total = quarantined + sum(c["silver"] for c in counts.values())
        result = rate_result(quarantined, total, RateThresholds.from_env("LAKE_QUARANTINE_RATE", 0.10, 0.30),
                             undated_quarantined=undated)
        return _recorded(context, lake, name, asset, f"{asset}_quarantine_rate", result, quarantined)

    reject_struct = T.StructType([f for f in REJECT_SCHEMA.fields if not f.name.startswith("_")])
    return [
        _schema_check(asset, name, SILVER_TABLES[name], _silver_pandera(spec), blocking=True, partitioned=True),
        _keys_check(asset, name, SILVER_TABLES[name], list(spec.primary_key), partitioned=True,
                    description=f"({', '.join(spec.primary_key)}) is unique in the partitions checked."),
        accounted,
        quarantine_rate,
        _schema_check(f"quarantine_{name}", name, QUARANTINE_TABLES[name], pandera_schema(reject_struct),
                      blocking=False, partitioned=True),
    ]


# -- gold --------------------------------------------------------------------------------------
@asset_check(asset=AssetKey("dim_users"), blocking=True,
             description="SCD type 2 sanity: no overlapping or empty validity windows, exactly one current "
                         "row per user, one unknown member (key -1).")
def dim_users_scd2(context: AssetCheckExecutionContext, spark: LazyPySparkResource, lake: LakeResource):
    dim = read_table(spark.spark_session, lake.storage, GOLD_TABLES["dim_users"], [None], "dim_users")
    known = dim.where(F.col("user_id").isNotNull())
    nxt = F.lead("valid_from").over(Window.partitionBy("user_id").orderBy("valid_from"))
    windows = known.withColumn("_next", nxt)
    bad_windows = windows.where(
        (F.col("valid_to").isNotNull() & (F.col("valid_to") <= F.col("valid_from")))
        | (F.col("_next").isNotNull() & (F.col("valid_to").isNull() | (F.col("_next") < F.col("valid_to"))))
    ).count()
    bad_current = known.groupBy("user_id").agg(F.sum(F.col("is_current").cast("int")).alias("c")) \
        .where(F.col("c") != 1).count()
    unknown = dim.where(F.col("user_key") == gold.UNKNOWN_USER_KEY).count()
    passed = bad_windows == 0 and bad_current == 0 and unknown == 1
    result = AssetCheckResult(passed=passed, metadata={
        "overlapping_or_empty_windows": bad_windows, "users_without_exactly_one_current_row": bad_current,
        "unknown_member_rows": unknown})
    return _recorded(context, lake, "gold", "dim_users", "dim_users_scd2", result,
                     bad_windows + bad_current + abs(unknown - 1), partitioned=False)


def gold_checks() -> list[AssetChecksDefinition]:
    t = GOLD_TABLES
    status, country, users = t["dim_status"], t["dim_country"], t["dim_users"]
    specs = [
        # asset, struct, partitioned, unique key, references
        ("dim_users", gold.DIM_USERS, False, ["user_key"],
         [("country", country, "dim_country", "country"), ("status", status, "dim_status", "status")]),
        ("dim_country", gold.DIM_COUNTRY, False, ["country"], []),
        ("dim_status", gold.DIM_STATUS, False, ["domain", "status"], []),
        ("dim_date", gold.DIM_DATE, False, ["date"], []),
        ("fact_events", gold.FACT_EVENTS, True, ["event_id"],
         [("user_key", users, "dim_users", "user_key"), ("event_type", status, "dim_status", "status")]),
        ("fact_transactions", gold.FACT_TRANSACTIONS, True, ["transaction_id"],
         [("user_key", users, "dim_users", "user_key"), ("status", status, "dim_status", "status")]),
        ("fact_user_activity", gold.FACT_USER_ACTIVITY, True, ["user_id", "date"], []),
        ("daily_revenue", gold.DAILY_REVENUE, True, ["date", "country", "currency"],
         [("country", country, "dim_country", "country")]),
        ("daily_active_users", gold.DAILY_ACTIVE_USERS, True, ["date", "country"],
         [("country", country, "dim_country", "country")]),
        ("user_ltv", gold.USER_LTV, False, ["user_id", "currency"], []),
    ]
    non_negative = {"events", "sessions", "purchases", "revenue", "orders", "refunded_amount", "active_users"}
    out: list[AssetChecksDefinition] = [dim_users_scd2]
    for asset, struct, partitioned, unique, refs in specs:
        checks = {f.name: [pa.Check.ge(0)] for f in struct.fields if f.name in non_negative}
        out.append(_schema_check(asset, "gold", t[asset], pandera_schema(struct, checks), blocking=True,
                                 partitioned=partitioned))
        what = f"({', '.join(unique)}) unique" + "".join(f"; every {c} in {a}" for c, _, a, _ in refs)
        out.append(_keys_check(asset, "gold", t[asset], unique, refs=refs, partitioned=partitioned,
                               description=what + "."))
    return out


COMMERCE_CHECKS = [c for spec in DATASETS.values() for c in silver_checks(spec)] + gold_checks()
