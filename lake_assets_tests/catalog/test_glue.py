"""The Glue Data Catalog backend on moto: tables, partitions across re-runs, schema changes."""
from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import types as T

from lake_assets.catalog.base import PartitionEntry, scan_partitions
from lake_assets.catalog.glue import GlueCatalog, GlueCatalogError
from lake_assets.catalog.tables import Table

ACCESS_SCHEMA = T.StructType([
    T.StructField("ts", T.TimestampType()),
    T.StructField("service", T.StringType(), metadata={"comment": "service name"}),
    T.StructField("status", T.IntegerType()),
    T.StructField("bytes", T.LongType()),
])
ACCESS = Table("logs", "access", "processed", "processed/logs/access", ACCESS_SCHEMA,
               "Access log rows, one per request", "logs/access")

# Like logs' daily_activity: `date` is written in the files and in the `date=` folders.
DAILY = Table("logs", "daily_activity", "analytics", "analytics/logs/daily_activity",
              T.StructType([T.StructField("date", T.DateType()), T.StructField("service", T.StringType()),
                            T.StructField("requests", T.LongType()), T.StructField("revenue", T.DecimalType(18, 2))]),
              "Requests per service and day", "logs/daily_activity", partitioning="date")

SUMMARY = Table("commerce", "summary", "gold", "gold/commerce/summary",
                T.StructType([T.StructField("country", T.StringType()), T.StructField("orders", T.LongType())]),
                "Orders per country", "commerce/summary", partitioning=None)


@pytest.fixture
def glue(moto_server) -> GlueCatalog:
    """A catalog with its own database prefix (the moto server lives for the whole session)."""
    return GlueCatalog(f"t{uuid.uuid4().hex[:8]}_")


@pytest.fixture
def glue_client(moto_server):
    return boto3.client("glue", endpoint_url=moto_server, region_name="us-east-1")


def _days(n: int, rows: int = 10, start: dt.date = dt.date(2024, 1, 1)) -> list[PartitionEntry]:
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range(n)]
    return [PartitionEntry(f"date={d}", (d,), (f"analytics/logs/daily_activity/date={d}/part-00000.parquet",), rows)
            for d in days]


def _partition_values(client, catalog: GlueCatalog, table: Table) -> set[tuple[str, ...]]:
    pages = client.get_paginator("get_partitions").paginate(
        DatabaseName=catalog.database(table.domain), TableName=table.name)
    return {tuple(p["Values"]) for page in pages for p in page["Partitions"]}


def test_register_creates_a_hive_parquet_table(glue, glue_client, s3_lake):
    glue.register_table(s3_lake, ACCESS)

    db = glue.database("logs")
    assert glue_client.get_database(Name=db)["Database"]["Name"] == db
    t = glue_client.get_table(DatabaseName=db, Name="access")["Table"]
    sd = t["StorageDescriptor"]
    assert t["TableType"] == "EXTERNAL_TABLE"
    assert t["Description"] == "Access log rows, one per request"
    assert {"classification": "parquet", "EXTERNAL": "TRUE"}.items() <= t["Parameters"].items()
    assert [(c["Name"], c["Type"], c.get("Comment")) for c in sd["Columns"]] == [
        ("ts", "timestamp", None), ("service", "string", "service name"), ("status", "int", None),
        ("bytes", "bigint", None)]
    assert [(k["Name"], k["Type"]) for k in t["PartitionKeys"]] == [("year", "int"), ("month", "int"), ("day", "int")]
    assert sd["Location"] == s3_lake.uri("processed/logs/access") + "/"
    assert sd["Location"].startswith("s3://")
    assert sd["InputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    assert sd["OutputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    assert sd["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def test_a_column_that_is_also_the_partition_key_is_registered_once(glue, glue_client, s3_lake):
    glue.register_table(s3_lake, DAILY)

    t = glue_client.get_table(DatabaseName=glue.database("logs"), Name="daily_activity")["Table"]
    assert [(c["Name"], c["Type"]) for c in t["StorageDescriptor"]["Columns"]] == [
        ("service", "string"), ("requests", "bigint"), ("revenue", "decimal(18,2)")]
    assert [(k["Name"], k["Type"]) for k in t["PartitionKeys"]] == [("date", "date")]


def test_partitions_are_added_in_chunks_refreshed_and_removed(glue, glue_client, s3_lake):
    glue.register_table(s3_lake, DAILY)
    batches: list[int] = []
    glue.client.meta.events.register(
        "provide-client-params.glue.BatchCreatePartition",
        lambda params, **_: batches.append(len(params["PartitionInputList"])))

    entries = _days(130)
    glue.add_partitions(s3_lake, DAILY, entries)
    assert batches == [100, 30]  # Glue takes at most 100 per call
    assert _partition_values(glue_client, glue, DAILY) == {e.values for e in entries}
    p = glue_client.get_partition(DatabaseName=glue.database("logs"), TableName="daily_activity",
                                  PartitionValues=["2024-01-05"])["Partition"]
    assert p["StorageDescriptor"]["Location"] == s3_lake.uri("analytics/logs/daily_activity/date=2024-01-05") + "/"
    assert p["Parameters"]["numRows"] == "10"

    # A re-run: the same partitions again (every one AlreadyExists), rows changed: refreshed, not failed.
    glue.add_partitions(s3_lake, DAILY, _days(130, rows=7))
    described = glue.describe(DAILY)
    assert len(described.partitions) == 130 and set(described.partitions.values()) == {7}

    # Removed partitions are deleted (more than 25: several calls); absent ones are ignored.
    gone = [e.path for e in entries[:30]] + ["date=1999-01-01"]
    glue.remove_partitions(s3_lake, DAILY, gone)
    assert _partition_values(glue_client, glue, DAILY) == {e.values for e in entries[30:]}
    glue.remove_partitions(s3_lake, DAILY, gone)  # idempotent


def test_replace_partitions_leaves_exactly_what_the_lake_holds(glue, glue_client, s3_lake):
    """``lake catalog sync``: files written with pyarrow, scanned, and the catalog made to match."""
    days = ["2024-03-01", "2024-03-02", "2024-03-03"]
    for i, day in enumerate(days):
        table = pa.table({"date": [dt.date.fromisoformat(day)] * (i + 1), "service": ["api"] * (i + 1),
                          "requests": pa.array(range(i + 1), pa.int64()),
                          "revenue": pa.array([None] * (i + 1), pa.decimal128(18, 2))})
        with s3_lake.open_write(DAILY.file_path(f"date={day}")) as f:
            pq.write_table(table, f)
    glue.register_table(s3_lake, DAILY)
    glue.add_partitions(s3_lake, DAILY, _days(5, start=dt.date(2024, 2, 27)))  # stale: 02-27 .. 03-02

    entries = scan_partitions(s3_lake, DAILY)
    glue.replace_partitions(s3_lake, DAILY, entries)
    assert _partition_values(glue_client, glue, DAILY) == {(d,) for d in days}

    described = glue.describe(DAILY)
    assert described.qualified_name == "logs.daily_activity"
    assert described.location == s3_lake.uri("analytics/logs/daily_activity")
    assert described.columns == [("service", "string"), ("requests", "bigint"), ("revenue", "decimal(18,2)")]
    assert described.partition_keys == [("date", "date")]
    assert described.partitions == {"date=2024-03-01": 1, "date=2024-03-02": 2, "date=2024-03-03": 3}
    assert described.rows == 6 and described.description == "Requests per service and day"

    glue.replace_partitions(s3_lake, DAILY, [])
    assert glue.describe(DAILY).partitions == {}


def test_a_schema_change_updates_the_table_and_glue_keeps_a_version(glue, glue_client, s3_lake):
    db = glue.database("logs")

    def versions() -> int:
        return len(glue_client.get_table_versions(DatabaseName=db, TableName="access")["TableVersions"])

    glue.register_table(s3_lake, ACCESS)
    first = versions()
    glue.register_table(s3_lake, ACCESS)  # nothing changed: no write, no version
    assert versions() == first

    wider = dataclasses.replace(ACCESS, schema=T.StructType(
        ACCESS_SCHEMA.fields + [T.StructField("user_agent", T.StringType())]))
    glue.register_table(s3_lake, wider)
    assert versions() == first + 1
    t = glue_client.get_table(DatabaseName=db, Name="access")["Table"]
    assert [c["Name"] for c in t["StorageDescriptor"]["Columns"]][-1] == "user_agent"
    glue.register_table(s3_lake, wider)
    assert versions() == first + 1


def test_an_unpartitioned_table_keeps_its_rows_in_the_table(glue, s3_lake):
    glue.register_table(s3_lake, SUMMARY)
    assert glue.describe(SUMMARY).partitions == {}
    glue.add_partitions(s3_lake, SUMMARY, [PartitionEntry("", (), ("gold/commerce/summary/part-00000.parquet",), 42)])
    described = glue.describe(SUMMARY)
    assert described.partitions == {"": 42} and described.partition_keys == []
    glue.register_table(s3_lake, SUMMARY)  # re-registering keeps the counts
    assert glue.describe(SUMMARY).partitions == {"": 42}
    glue.remove_partitions(s3_lake, SUMMARY, [""])
    assert glue.describe(SUMMARY).partitions == {}


def test_describe_an_unregistered_table_is_none(glue):
    assert glue.describe(ACCESS) is None


def test_explicit_endpoint_overrides_the_environment(moto_server, s3_lake, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    catalog = GlueCatalog(f"t{uuid.uuid4().hex[:8]}_", region="us-east-1", endpoint_url=moto_server)
    catalog.register_table(s3_lake, SUMMARY)
    assert catalog.describe(SUMMARY).columns == [("country", "string"), ("orders", "bigint")]


def test_a_partition_glue_refuses_raises_with_its_values(glue, s3_lake, monkeypatch):
    glue.register_table(s3_lake, DAILY)
    refused = {"Errors": [{"PartitionValues": ["2024-01-02"],
                           "ErrorDetail": {"ErrorCode": "InternalServiceException", "ErrorMessage": "try later"}}]}
    monkeypatch.setattr(glue.client, "batch_create_partition", lambda **_: refused)
    with pytest.raises(GlueCatalogError, match=r"\['2024-01-02'\]: InternalServiceException: try later"):
        glue.add_partitions(s3_lake, DAILY, _days(3))
