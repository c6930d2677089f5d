"""The logs lake's tables, declared once: the IO manager, the catalogs and the CLI read these."""
from pyspark.sql import types as T

from lake_assets.catalog.tables import Table
from lake_assets.domains.logs import contract
from lake_assets.quality.rules import REJECT_SCHEMA

DOMAIN = "logs"

ACCESS = Table(
    DOMAIN, "access", "processed", "processed/logs/log_type=access", contract.ACCESS_SCHEMA,
    "Canonical, typed HTTP access records, one row per valid record.", asset="processed_logs")
ERRORS = Table(
    DOMAIN, "errors", "processed", "processed/logs/log_type=error", contract.ERROR_SCHEMA,
    "Canonical, typed application error events, one row per valid record.", asset="processed_logs")
#: ``_partition_date`` picks the partition and is not written into the files.
REJECTED = Table(
    DOMAIN, "rejected_records", "rejected", "rejected/data_quality",
    T.StructType([f for f in REJECT_SCHEMA.fields if not f.name.startswith("_")]),
    "Every log record that broke a contract rule: the record, its first rule (reason) and all (reasons).",
    asset="rejected_log_records", file_stem="part-processed")
DAILY_ACTIVITY = Table(
    DOMAIN, "daily_activity", "analytics", "analytics/daily_activity", contract.DAILY_ACTIVITY_SCHEMA,
    "Gold: one row per (date, service): requests, client/server errors, unique users, latency percentiles.",
    asset="daily_activity", partitioning="date")

TABLES = (ACCESS, ERRORS, REJECTED, DAILY_ACTIVITY)
