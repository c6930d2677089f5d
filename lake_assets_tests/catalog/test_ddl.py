"""Athena DDL text: exact statements for a partitioned and an unpartitioned table."""
from __future__ import annotations

from pyspark.sql import types as T

from lake_assets.catalog import ddl
from lake_assets.catalog.base import PartitionEntry
from lake_assets.catalog.ddl import athena_database_ddl, athena_ddl, hive_type, quote
from lake_assets.catalog.tables import Table
from lake_assets.lake import LakeStorage

# No request is made: the storage only spells URIs.
STORAGE = LakeStorage("s3://my-lake/prod")

DAILY = Table(
    "logs", "daily_activity", "analytics", "analytics/logs/daily_activity",
    T.StructType([
        T.StructField("date", T.DateType()),  # in the files and in the path: registered once, as the key
        T.StructField("service", T.StringType(), metadata={"comment": "the service's name"}),
        T.StructField("user", T.StringType()),
        T.StructField("requests", T.LongType()),
        T.StructField("revenue", T.DecimalType(18, 2)),
        T.StructField("tags", T.ArrayType(T.StringType())),
    ]),
    "Requests per service and day (the logs' gold)", "logs/daily_activity", partitioning="date")

UNPARTITIONED = Table(
    "commerce", "revenue_by_country", "gold", "gold/commerce/revenue_by_country",
    T.StructType([T.StructField("Country", T.StringType()), T.StructField("revenue", T.DecimalType(18, 2)),
                  T.StructField("updated_at", T.TimestampNTZType())]),
    "", "commerce/revenue_by_country", partitioning=None, file_stem=None)


def _days(n: int) -> list[PartitionEntry]:
    return [PartitionEntry(f"date=2024-03-{d:02d}", (f"2024-03-{d:02d}",), (), 10) for d in range(1, n + 1)]


def test_partitioned_table_ddl():
    statements = athena_ddl(STORAGE, DAILY, _days(2))
    assert statements == [
        "CREATE EXTERNAL TABLE IF NOT EXISTS lake_logs.daily_activity (\n"
        "  service string COMMENT 'the service\\'s name',\n"
        "  `user` string,\n"
        "  requests bigint,\n"
        "  revenue decimal(18,2),\n"
        "  tags array<string>\n"
        ")\n"
        "COMMENT 'Requests per service and day (the logs\\' gold)'\n"
        "PARTITIONED BY (`date` date)\n"
        "STORED AS PARQUET\n"
        "LOCATION 's3://my-lake/prod/analytics/logs/daily_activity/'\n"
        "TBLPROPERTIES ('classification'='parquet')",
        "ALTER TABLE lake_logs.daily_activity ADD IF NOT EXISTS\n"
        "  PARTITION (`date`='2024-03-01') LOCATION 's3://my-lake/prod/analytics/logs/daily_activity/date=2024-03-01/'\n"
        "  PARTITION (`date`='2024-03-02') LOCATION 's3://my-lake/prod/analytics/logs/daily_activity/date=2024-03-02/'",
    ]


def test_unpartitioned_table_ddl_and_prefix():
    assert athena_ddl(STORAGE, UNPARTITIONED, [PartitionEntry("", (), (), 3)], database_prefix="dev_") == [
        "CREATE EXTERNAL TABLE IF NOT EXISTS dev_commerce.revenue_by_country (\n"
        "  country string,\n"
        "  revenue decimal(18,2),\n"
        "  updated_at timestamp\n"
        ")\n"
        "STORED AS PARQUET\n"
        "LOCATION 's3://my-lake/prod/gold/commerce/revenue_by_country/'\n"
        "TBLPROPERTIES ('classification'='parquet')",
    ]
    assert athena_database_ddl("commerce", "dev_") == "CREATE DATABASE IF NOT EXISTS dev_commerce"


def test_partitions_are_chunked_per_statement():
    statements = athena_ddl(STORAGE, DAILY, _days(31) * 4)  # 124 partition clauses
    alters = statements[1:]
    assert [s.count("PARTITION (") for s in alters] == [ddl.PARTITIONS_PER_STATEMENT, 24]


def test_ymd_keys_and_quoting_rules():
    access = Table("logs", "access", "processed", "processed/logs/access",
                   T.StructType([T.StructField("ts", T.TimestampType()), T.StructField("status", T.IntegerType())]),
                   "Access log rows", "logs/access")
    [_, alter] = athena_ddl(STORAGE, access, [PartitionEntry("year=2024/month=03/day=05", ("2024", "03", "05"), (), 1)])
    assert "PARTITIONED BY (year int, month int, day int)" in athena_ddl(STORAGE, access, [])[0]
    assert alter == ("ALTER TABLE lake_logs.access ADD IF NOT EXISTS\n"
                     "  PARTITION (year='2024', month='03', day='05') "
                     "LOCATION 's3://my-lake/prod/processed/logs/access/year=2024/month=03/day=05/'")
    assert [quote(n) for n in ("date", "Order", "event_date", "2fa", "a-b", "we`ird")] == [
        "`date`", "`Order`", "event_date", "`2fa`", "`a-b`", "`we``ird`"]
    assert hive_type(T.StructType([T.StructField("at", T.TimestampNTZType())])) == "struct<at:timestamp>"
