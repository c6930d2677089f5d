"""Asset checks of the logs lake, per partition, declared from the shared check factories.

Checks guarding gold are blocking. Counts come from manifests and Parquet
footers (no Spark); schema checks run pandera's PySpark schemas on the
partitions as stored. Each outcome is merged into the metrics zone (dataset ``logs``).
"""

import functools

import pandera.pyspark as pa
from pyspark.sql import types as T

from lake_assets.domains.logs import contract
from lake_assets.domains.logs.assets import DAILY_ACTIVITY_TABLE, PROCESSED_TABLE, REJECTS_TABLE
from lake_assets.partitions import daily_partitions
from lake_assets.quality.checks import (
    Accounting,
    accounting_check,
    pandera_schema as _schema,
    rate_check,
    schema_check,
    unique_key_check,
)
from lake_assets.quality.rules import REJECT_SCHEMA
from lake_assets.settings import LakeSettings, module_built_from_env

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

#: Per date: records ingestion routed there, and rows processed wrote (valid access and error, rejected).
ACCOUNTING = Accounting(
    formats=contract.ACCESS_FORMATS + contract.ERROR_FORMATS,
    valid={"valid_access": (PROCESSED_TABLE, "access"), "valid_error": (PROCESSED_TABLE, "error")},
    rejected=("rejected", REJECTS_TABLE),
    undated="undated_rejected",
)

@functools.lru_cache
def build(settings: LakeSettings) -> dict[str, list]:
    """The logs checks for ``settings``: its partitions and its reject-rate thresholds."""
    _DAILY = {"dataset": "logs", "partitions_def": daily_partitions(settings.start_date)}

    checks = [
        schema_check("rejected_log_records", REJECTS_TABLE, {"rejected": REJECTS_PANDERA}, blocking=False, **_DAILY,
                     description="pandera (PySpark) schema of the rejected records: every row has its record, "
                                 "a reason and the stage that rejected it."),
        schema_check("processed_logs", PROCESSED_TABLE, {"access": ACCESS_PANDERA, "error": ERROR_PANDERA}, **_DAILY,
                     description="pandera (PySpark) schema of processed access and error rows: types, "
                                 "nullability, value ranges."),
        accounting_check("processed_logs", ACCOUNTING, name="processed_logs_count_conservation", **_DAILY,
                         description="Count conservation: valid + rejected rows = records ingestion routed "
                                     "to the partition (from the ingestion manifests)."),
        rate_check("processed_logs", ACCOUNTING, settings.reject_rate,
                   name="processed_logs_reject_rate", **_DAILY,
                   description="Share of the partition's dated records rejected: WARN above "
                               "LAKE_REJECT_RATE_WARN, ERROR (blocks gold) above LAKE_REJECT_RATE_ERROR. "
                               "Records without a date in range land on their ingest date and are "
                               "reported apart (undated_rejected), not counted against it."),
        schema_check("daily_activity", DAILY_ACTIVITY_TABLE, {"daily_activity": DAILY_ACTIVITY_PANDERA}, **_DAILY,
                     description="pandera (PySpark) schema of daily_activity."),
        unique_key_check("daily_activity", DAILY_ACTIVITY_TABLE, ["date", "service"], **_DAILY,
                         name="daily_activity_unique_date_service",
                         description="(date, service) is unique in daily_activity."),
    ]
    return {"LOGS_CHECKS": checks}


__getattr__ = module_built_from_env(build)
