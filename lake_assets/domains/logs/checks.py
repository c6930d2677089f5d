"""Asset checks of the logs lake, per partition. Checks guarding gold are blocking.

Counts come from manifests and Parquet footers (no Spark); schema checks run
pandera's PySpark backend on the partitions as stored.
"""

import datetime as dt

import pandera.pyspark as pa
from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import types as T

from lake_assets.domains.logs import contract
from lake_assets.domains.logs.assets import (
    DAILY_ACTIVITY_TABLE,
    PROCESSED_TABLE,
    REJECTS_TABLE,
    daily_activity,
    processed_logs,
)
from lake_assets.ingest.validated import validated_files
from lake_assets.io_managers import partition_row_counts, read_table
from lake_assets.partitions import daily_partitions
from lake_assets.quality.checks import (
    RateThresholds,
    pandera_result,
    pandera_schema as _schema,
    rate_result,
    unique_key_result,
)
from lake_assets.quality.metrics import recorded
from lake_assets.quality.rules import REJECT_SCHEMA
from lake_assets.resources import LakeResource


ACCESS_PANDERA = _schema(contract.ACCESS_SCHEMA, {
    "status": [pa.Check.in_range(100, 599)],
    "method": [pa.Check.isin(list(contract.METHODS))],
    "bytes_sent": [pa.Check.ge(0)],
    "latency_ms": [pa.Check.ge(0)],
})
ERROR_PANDERA = _schema(contract.ERROR_SCHEMA, {"level": [pa.Check.isin(list(contract.LEVELS))]})
DAILY_ACTIVITY_PANDERA = _schema(contract.DAILY_ACTIVITY_SCHEMA, {
    n: [pa.Check.ge(0)] for n in ("requests", "client_errors", "server_errors", "unique_users",
                                  "unique_clients", "bytes_sent", "error_events", "critical_events")
})

REJECTS_PANDERA = _schema(T.StructType([f for f in REJECT_SCHEMA.fields if not f.name.startswith("_")]))

_PROCESSED = processed_logs.keys_by_output_name["processed_logs"]
_REJECTS = processed_logs.keys_by_output_name["rejected_log_records"]


def _record(context: AssetCheckExecutionContext, lake: LakeResource, asset: str,
            result: AssetCheckResult) -> AssetCheckResult:
    """The check's outcome, also merged into the metrics zone of each partition it checked."""
    return recorded(context, lake.storage, result, dataset="logs", asset=asset,
                    name=context.check_specs[0].name, partitions=list(context.partition_keys))


def _days(context: AssetCheckExecutionContext) -> list[dt.date]:
    return [dt.date.fromisoformat(k) for k in context.partition_keys]


@asset_check(asset=_PROCESSED, partitions_def=daily_partitions, blocking=True,
             description="pandera (PySpark) schema of processed access and error rows: types, "
                         "nullability, value ranges.")
def processed_logs_schema(context: AssetCheckExecutionContext, spark: LazyPySparkResource,
                          lake: LakeResource) -> AssetCheckResult:
    frames = _read(context, spark, lake, PROCESSED_TABLE, "processed_logs")
    return _record(context, lake, "processed_logs",
                   pandera_result({"access": ACCESS_PANDERA, "error": ERROR_PANDERA}, frames))


def _conservation(lake: LakeResource, days: list[dt.date]) -> dict[str, dict[str, int]]:
    """Per date: records ingestion routed there, and rows processed wrote (valid + rejected)."""
    out = {}
    files = validated_files(lake.storage, days, contract.ACCESS_FORMATS + contract.ERROR_FORMATS)
    for day in days:
        key = day.isoformat()
        rows = partition_row_counts(lake.storage, PROCESSED_TABLE, key)
        rejected = partition_row_counts(lake.storage, REJECTS_TABLE, key)[None]
        out[key] = {
            "records_read": sum(f.records for f in files if f.day == day),
            "valid_access": rows["access"], "valid_error": rows["error"], "rejected": rejected,
            # Ingestion routed these to their ingest date for want of a date in range.
            "undated_rejected": sum(f.undated for f in files if f.day == day),
        }
    return out


@asset_check(asset=_PROCESSED, partitions_def=daily_partitions, blocking=True,
             description="Count conservation: valid + rejected rows = records ingestion routed "
                         "to the partition (from the ingestion manifests).")
def processed_logs_count_conservation(context: AssetCheckExecutionContext,
                                      lake: LakeResource) -> AssetCheckResult:
    counts = _conservation(lake, _days(context))
    broken = {d: c for d, c in counts.items()
              if c["valid_access"] + c["valid_error"] + c["rejected"] != c["records_read"]}
    total = {k: sum(c[k] for c in counts.values()) for k in ("records_read", "valid_access", "valid_error", "rejected")}
    broken = {d: {k: v for k, v in c.items() if k != "undated_rejected"} for d, c in broken.items()}
    return _record(context, lake, "processed_logs", AssetCheckResult(passed=not broken, metadata={
        **total, "mismatched_partitions": MetadataValue.json(broken)}))


@asset_check(asset=_PROCESSED, partitions_def=daily_partitions, blocking=True,
             description="Share of the partition's dated records rejected: WARN above "
                         "LAKE_REJECT_RATE_WARN, ERROR (blocks gold) above LAKE_REJECT_RATE_ERROR. "
                         "Records without a date in range land on their ingest date and are "
                         "reported apart (undated_rejected), not counted against it.")
def processed_logs_reject_rate(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    counts = _conservation(lake, _days(context))
    undated = sum(c["undated_rejected"] for c in counts.values())
    rejected = sum(c["rejected"] for c in counts.values()) - undated
    total = sum(c["records_read"] for c in counts.values()) - undated
    return _record(context, lake, "processed_logs",
                   rate_result(rejected, total, RateThresholds.from_env(), undated_rejected=undated))


@asset_check(asset=daily_activity, partitions_def=daily_partitions, blocking=True,
             description="pandera (PySpark) schema of daily_activity.")
def daily_activity_schema(context: AssetCheckExecutionContext, spark: LazyPySparkResource,
                          lake: LakeResource) -> AssetCheckResult:
    df = _read(context, spark, lake, DAILY_ACTIVITY_TABLE, "daily_activity")
    return _record(context, lake, "daily_activity",
                   pandera_result({"daily_activity": DAILY_ACTIVITY_PANDERA}, {"daily_activity": df}))


@asset_check(asset=daily_activity, partitions_def=daily_partitions, blocking=True,
             description="(date, service) is unique in daily_activity.")
def daily_activity_unique_date_service(context: AssetCheckExecutionContext, spark: LazyPySparkResource,
                                       lake: LakeResource) -> AssetCheckResult:
    return _record(context, lake, "daily_activity",
                   unique_key_result(_read(context, spark, lake, DAILY_ACTIVITY_TABLE, "daily_activity"),
                                     ["date", "service"]))


def _read(context: AssetCheckExecutionContext, spark: LazyPySparkResource, lake: LakeResource,
          table: dict, asset: str):
    """The check's partitions of a lake table, as stored."""
    return read_table(spark.spark_session, lake.storage, table, list(context.partition_keys), asset)


@asset_check(asset=_REJECTS, partitions_def=daily_partitions,
             description="pandera (PySpark) schema of the rejected records: every row has its record, "
                         "a reason and the stage that rejected it.")
def rejected_log_records_schema(context: AssetCheckExecutionContext, spark: LazyPySparkResource,
                                lake: LakeResource) -> AssetCheckResult:
    df = _read(context, spark, lake, REJECTS_TABLE, "rejected_log_records")
    return _record(context, lake, "rejected_log_records", pandera_result({"rejected": REJECTS_PANDERA}, {"rejected": df}))


LOGS_CHECKS = [rejected_log_records_schema, processed_logs_schema, processed_logs_count_conservation, processed_logs_reject_rate,
               daily_activity_schema, daily_activity_unique_date_service]
