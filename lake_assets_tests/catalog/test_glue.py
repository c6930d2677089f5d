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


# -- a declaration change reaches the partitions ---------------------------------------------------
def _registered(client, catalog: GlueCatalog, table: Table) -> tuple[dict, dict[tuple[str, ...], dict]]:
    """The table as Glue has it, and its partitions by values."""
    db = catalog.database(table.domain)
    t = client.get_table(DatabaseName=db, Name=table.name)["Table"]
    pages = client.get_paginator("get_partitions").paginate(DatabaseName=db, TableName=table.name)
    return t, {tuple(p["Values"]): p for page in pages for p in page["Partitions"]}


def _versions(client, catalog: GlueCatalog, table: Table) -> int:
    return len(client.get_table_versions(DatabaseName=catalog.database(table.domain),
                                         TableName=table.name)["TableVersions"])


def _with_rows(n: int) -> list[PartitionEntry]:
    """``n`` days, each with its own row count (so a partition's own parameters can be told apart)."""
    return [dataclasses.replace(e, rows=i + 1) for i, e in enumerate(_days(n))]


def _assert_partitions_follow_the_table(client, catalog: GlueCatalog, table: Table, s3_lake,
                                        entries: list[PartitionEntry]) -> dict:
    t, parts = _registered(client, catalog, table)
    assert set(parts) == {e.values for e in entries}
    for e in entries:
        p = parts[e.values]
        assert p["StorageDescriptor"]["Columns"] == t["StorageDescriptor"]["Columns"]
        # Each partition keeps its own location, formats and parameters.
        assert p["StorageDescriptor"]["Location"] == s3_lake.uri(f"{table.location}/{e.path}") + "/"
        assert p["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
        assert p["Parameters"] == {"numRows": str(e.rows), "numFiles": "1"}
    return t


def test_an_added_column_is_written_into_every_partition(glue, glue_client, s3_lake):
    glue.register_table(s3_lake, DAILY)
    entries = _with_rows(130)
    glue.add_partitions(s3_lake, DAILY, entries)
    before = _versions(glue_client, glue, DAILY)
    batches: list[int] = []
    glue.client.meta.events.register(
        "provide-client-params.glue.BatchUpdatePartition",
        lambda params, **_: batches.append(len(params["Entries"])))

    wider = dataclasses.replace(DAILY, schema=T.StructType(
        DAILY.schema.fields + [T.StructField("country", T.StringType(), metadata={"comment": "ISO code"})]))
    glue.register_table(s3_lake, wider)

    assert batches == [100, 30]  # Glue takes at most 100 per call
    assert _versions(glue_client, glue, DAILY) == before + 1
    t = _assert_partitions_follow_the_table(glue_client, glue, wider, s3_lake, entries)
    assert [(c["Name"], c["Type"], c.get("Comment")) for c in t["StorageDescriptor"]["Columns"]][-1] == (
        "country", "string", "ISO code")
    assert glue.describe(wider).partitions == {e.path: e.rows for e in entries}


def test_a_retyped_column_is_written_into_every_partition(glue, glue_client, s3_lake):
    glue.register_table(s3_lake, DAILY)
    entries = _with_rows(3)
    glue.add_partitions(s3_lake, DAILY, entries)

    retyped = dataclasses.replace(DAILY, schema=T.StructType([
        T.StructField("revenue", T.DecimalType(20, 4)) if f.name == "revenue" else f for f in DAILY.schema.fields]))
    glue.register_table(s3_lake, retyped)

    t = _assert_partitions_follow_the_table(glue_client, glue, retyped, s3_lake, entries)
    assert [(c["Name"], c["Type"]) for c in t["StorageDescriptor"]["Columns"]] == [
        ("service", "string"), ("requests", "bigint"), ("revenue", "decimal(20,4)")]


def test_new_partition_keys_delete_the_old_partitions(glue, glue_client, s3_lake):
    glue.register_table(s3_lake, DAILY)
    glue.add_partitions(s3_lake, DAILY, _days(30))  # more than 25: several delete calls
    ymd = dataclasses.replace(DAILY, partitioning="ymd")

    glue.register_table(s3_lake, ymd)

    t, parts = _registered(glue_client, glue, ymd)
    assert parts == {}
    assert [(k["Name"], k["Type"]) for k in t["PartitionKeys"]] == [("year", "int"), ("month", "int"), ("day", "int")]
    assert [c["Name"] for c in t["StorageDescriptor"]["Columns"]][0] == "date"  # now a data column
    entry = PartitionEntry("year=2024/month=01/day=05", ("2024", "01", "05"),
                           ("analytics/logs/daily_activity/year=2024/month=01/day=05/part-00000.parquet",), 4)
    glue.add_partitions(s3_lake, ymd, [entry])
    assert _partition_values(glue_client, glue, ymd) == {("2024", "01", "05")}
    assert glue.describe(ymd).partitions == {"year=2024/month=01/day=05": 4}
    _assert_partitions_follow_the_table(glue_client, glue, ymd, s3_lake, [entry])


def test_partitioning_an_unpartitioned_table_drops_its_table_counts(glue, s3_lake):
    glue.register_table(s3_lake, SUMMARY)
    glue.add_partitions(s3_lake, SUMMARY, [PartitionEntry("", (), ("gold/commerce/summary/part-00000.parquet",), 42)])
    by_day = dataclasses.replace(SUMMARY, partitioning="date")

    glue.register_table(s3_lake, by_day)

    assert glue.describe(by_day).partitions == {}
    assert glue._get_table(by_day)["Parameters"].keys().isdisjoint({"numRows", "numFiles"})


def test_an_unchanged_declaration_changes_nothing_in_glue(glue, glue_client, s3_lake):
    glue.register_table(s3_lake, DAILY)
    glue.add_partitions(s3_lake, DAILY, _with_rows(5))
    version = _versions(glue_client, glue, DAILY)
    _, partitions = _registered(glue_client, glue, DAILY)
    calls: list[str] = []
    glue.client.meta.events.register("before-call.glue", lambda model, **_: calls.append(model.name))

    glue.register_table(s3_lake, DAILY)
    glue.register_table(s3_lake, dataclasses.replace(DAILY))

    assert calls and all(c.startswith("Get") for c in calls), calls
    assert _versions(glue_client, glue, DAILY) == version
    assert _registered(glue_client, glue, DAILY)[1] == partitions


def test_a_refused_column_rewrite_leaves_the_table_to_the_next_registration(glue, glue_client, s3_lake,
                                                                            monkeypatch):
    """Partitions are fixed before the table: when Glue refuses one, the table still differs, so the
    next registration repeats the rewrite. A partition deleted meanwhile is no failure."""
    glue.register_table(s3_lake, DAILY)
    entries = _with_rows(3)
    glue.add_partitions(s3_lake, DAILY, entries)
    version = _versions(glue_client, glue, DAILY)
    wider = dataclasses.replace(DAILY, schema=T.StructType(
        DAILY.schema.fields + [T.StructField("country", T.StringType())]))
    refused = {"Errors": [
        {"PartitionValueList": ["2024-01-02"],
         "ErrorDetail": {"ErrorCode": "ConcurrentModificationException", "ErrorMessage": "busy"}},
        {"PartitionValueList": ["2024-01-03"],
         "ErrorDetail": {"ErrorCode": "EntityNotFoundException", "ErrorMessage": "gone"}}]}
    with monkeypatch.context() as m:
        m.setattr(glue.client, "batch_update_partition", lambda **_: refused)
        with pytest.raises(GlueCatalogError) as raised:
            glue.register_table(s3_lake, wider)
    assert "['2024-01-02']: ConcurrentModificationException: busy" in str(raised.value)
    assert "2024-01-03" not in str(raised.value)
    assert _versions(glue_client, glue, DAILY) == version  # the table is left as it was

    glue.register_table(s3_lake, wider)
    _assert_partitions_follow_the_table(glue_client, glue, wider, s3_lake, entries)


def test_building_a_catalog_calls_no_aws(monkeypatch):
    """``CatalogResource.backends()`` builds one per call: no client until one is needed."""
    import boto3 as boto3_module

    monkeypatch.setattr(boto3_module, "client", lambda *a, **k: pytest.fail("a client was created"))
    catalog = GlueCatalog("lake_", region="us-east-1")
    assert catalog.database("logs") == "lake_logs"
    assert "client" not in vars(catalog)
