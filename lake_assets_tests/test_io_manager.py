"""The partitioned Parquet IO manager: paths, metadata, ranges, atomic replacement, failures."""

import datetime as dt
import os

import pyarrow.parquet as pq
import pytest
from dagster import AssetIn, BackfillPolicy, DailyPartitionsDefinition, asset, materialize
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.definitions import build_resources
from lake_assets.catalog.tables import Table
from lake_assets.io_managers import lake_table
from lake_assets.lake import LakeStorage

PARTS = DailyPartitionsDefinition(start_date="2024-03-01", end_date="2024-03-10")
RANGE = {"dagster/asset_partition_range_start": "2024-03-02", "dagster/asset_partition_range_end": "2024-03-04"}

EVENTS = Table("test", "events", "processed", "test/events", T.StructType(
    [T.StructField("event_date", T.DateType()), T.StructField("value", T.IntegerType())]), "test events", "events")
DAILY = Table("test", "daily", "analytics", "test/daily", T.StructType(
    [T.StructField("date", T.DateType()), T.StructField("total", T.LongType())]), "daily totals", "daily",
    partitioning="date")

#: What the next materialization of `events` produces: (date, value) rows.
ROWS: list[tuple[str, int]] = []


@asset(partitions_def=PARTS, backfill_policy=BackfillPolicy.single_run(), io_manager_key="lake_io_manager",
       metadata=lake_table(EVENTS, date_column="event_date"))
def events(context, spark: LazyPySparkResource):
    session = spark.spark_session
    df = session.createDataFrame([(d, v) for d, v in ROWS], "d string, value int")
    return df.select(F.to_date("d").alias("event_date"), "value")


@asset(partitions_def=PARTS, backfill_policy=BackfillPolicy.single_run(), io_manager_key="lake_io_manager",
       ins={"events": AssetIn()}, metadata=lake_table(DAILY, date_column="date"))
def daily(events):
    return events.groupBy(F.col("event_date").alias("date")).agg(F.sum("value").alias("total"))


def run(lake_root, instance, *assets, tags=RANGE, raise_on_error=True):
    return materialize(list(assets), resources=build_resources(lake_root), instance=instance, tags=tags,
                       raise_on_error=raise_on_error)


def read(storage: LakeStorage, rel: str) -> list[dict]:
    return pq.read_table(storage.local_path(rel)).to_pylist()


def test_range_in_one_run_with_paths_metadata_and_empty_partitions(lake_root, spark, instance):
    ROWS[:] = [("2024-03-02", 1), ("2024-03-02", 2), ("2024-03-04", 5)]
    result = run(lake_root, instance, events, daily)
    storage = LakeStorage(lake_root)
    assert [f.path for f in storage.list_files("test")] == [
        "test/daily/date=2024-03-02/part-00000.parquet",
        "test/daily/date=2024-03-03/part-00000.parquet",
        "test/daily/date=2024-03-04/part-00000.parquet",
        "test/events/year=2024/month=03/day=02/part-00000.parquet",
        "test/events/year=2024/month=03/day=03/part-00000.parquet",
        "test/events/year=2024/month=03/day=04/part-00000.parquet",
    ]
    assert read(storage, "test/daily/date=2024-03-02/part-00000.parquet") == [
        {"date": dt.date(2024, 3, 2), "total": 3}]
    assert read(storage, "test/events/year=2024/month=03/day=03/part-00000.parquet") == []  # empty, with schema
    mats = result.asset_materializations_for_node("events")
    assert sorted(m.partition for m in mats) == ["2024-03-02", "2024-03-03", "2024-03-04"]
    meta = mats[0].metadata
    assert meta["dagster/row_count"].value == 3
    assert [c.name for c in meta["dagster/column_schema"].schema.columns] == ["event_date", "value"]
    assert meta["rows_per_partition"].value == {"2024-03-02": 2, "2024-03-03": 0, "2024-03-04": 1}
    assert "| event_date | value |" in meta["preview"].value
    assert meta["dagster/uri"].value == os.path.join(lake_root, "test/events")


def test_rerun_replaces_each_partition_whole(lake_root, spark, instance):
    storage = LakeStorage(lake_root)
    ROWS[:] = [("2024-03-02", 1), ("2024-03-03", 2)]
    run(lake_root, instance, events, tags={"dagster/asset_partition_range_start": "2024-03-02",
                                            "dagster/asset_partition_range_end": "2024-03-03"})
    ROWS[:] = [("2024-03-03", 7)]  # 2024-03-02 lost its rows; 2024-03-03 changed
    run(lake_root, instance, events, tags={"dagster/asset_partition_range_start": "2024-03-02",
                                            "dagster/asset_partition_range_end": "2024-03-03"})
    assert read(storage, "test/events/year=2024/month=03/day=02/part-00000.parquet") == []
    assert read(storage, "test/events/year=2024/month=03/day=03/part-00000.parquet") == [
        {"event_date": dt.date(2024, 3, 3), "value": 7}]
    assert len(storage.list_files("test/events")) == 2  # one file a partition, nothing doubled
    assert not storage.list_files("_staging", hidden=True)  # the stage is cleaned up


def test_rows_outside_the_run_publish_nothing(lake_root, spark, instance):
    storage = LakeStorage(lake_root)
    ROWS[:] = [("2024-03-02", 1)]
    materialize([events], resources=build_resources(lake_root), instance=instance, partition_key="2024-03-02")
    ROWS[:] = [("2024-03-02", 9), ("2024-03-05", 1)]  # a row dated outside the run's partition
    result = materialize([events], resources=build_resources(lake_root), instance=instance,
                         partition_key="2024-03-02", raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    error, messages = failure.event_specific_data.error, []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    assert any("fall outside this run's partitions" in m for m in messages), messages
    # The previous partition is intact and nothing else was published.
    assert read(storage, "test/events/year=2024/month=03/day=02/part-00000.parquet") == [
        {"event_date": dt.date(2024, 3, 2), "value": 1}]
    assert [f.path for f in storage.list_files("test")] == ["test/events/year=2024/month=03/day=02/part-00000.parquet"]
    assert not storage.list_files("_staging", hidden=True)


def test_missing_upstream_partition_is_a_clear_error(lake_root, spark, instance):
    ROWS[:] = []
    with pytest.raises(Exception, match="not materialized.*materialize events for those partitions first"):
        materialize([events.to_source_asset(), daily], resources=build_resources(lake_root), instance=instance,
                    partition_key="2024-03-06")


def test_publish_partitions_found_by_the_data_sorted_and_emptied(lake_root, spark):
    """``any_key``: the partitions the rows hold are published, and each named key without rows loses its
    file; ``sort_within`` orders each file; a partition column named like a hidden folder (``_month``)
    still publishes (Spark and the lake's listing skip ``_x=`` folders, so it is renamed for the write)."""
    from lake_assets.io_managers import publish_partitions

    storage = LakeStorage(lake_root)
    dest = lambda k: f"t/m={k}/part-00000.parquet"  # noqa: E731
    storage.write_bytes(dest("1999-12"), b"old")  # a month whose rows all moved away
    rows = [("2000-01", 3), ("2000-01", 1), ("2000-02", 2), ("__HIVE_DEFAULT_PARTITION__", 5), ("2000-01", 2)]
    df = spark.createDataFrame(rows, "_month string, v int").repartition(3)
    counts, _ = publish_partitions(storage, df, "_month", ["1999-12"], dest, when_empty="delete",
                                   sort_within=("v",), any_key=True)
    assert counts == {"1999-12": 0, "2000-01": 3, "2000-02": 1, "__HIVE_DEFAULT_PARTITION__": 1}
    assert not storage.exists(dest("1999-12"))
    assert read(storage, dest("2000-01")) == [{"v": 1}, {"v": 2}, {"v": 3}]
    assert read(storage, dest("__HIVE_DEFAULT_PARTITION__")) == [{"v": 5}]
    # Without any_key, a row outside the keys fails the write before anything is published.
    with pytest.raises(ValueError, match="fall outside"):
        publish_partitions(storage, df, "_month", ["2000-01"], lambda k: f"u/{k}.parquet")
    assert not storage.list_files("u")


def test_publish_without_a_shuffle_merges_each_keys_parts_into_one_file_as_spark_wrote_them(lake_root, spark):
    """``shuffle=False``: every task writes its part of each key (no shuffle to one task per key), and a
    key's parts become one file, published whole: every row once, in order across the parts (each a
    contiguous run of lines), with Spark's schema in the footer, the codec asked for, and decimals,
    dates and timestamps read back unchanged by Spark."""
    import datetime as dt
    from decimal import Decimal

    from lake_assets.io_managers import publish_partitions, stored_schema

    storage = LakeStorage(lake_root)
    schema = "k string, line bigint, price decimal(7,2), day date, at timestamp"
    at = dt.datetime(2024, 3, 1, 12, 30, tzinfo=dt.timezone.utc)
    rows = [("a" if i % 4 else "b", i, Decimal(i) / 100, dt.date(2024, 3, 1) + dt.timedelta(days=i % 9), at)
            for i in range(1, 401)]
    # Four tasks, each a contiguous run of lines (as a task reads its split of a file).
    df = spark.createDataFrame(rows, schema).repartitionByRange(4, "line")
    assert df.rdd.getNumPartitions() == 4
    counts, _ = publish_partitions(storage, df, "k", ["a", "b"], lambda k: f"m/{k}.parquet",
                                   sort_within=("line",), compression="snappy", shuffle=False)
    assert counts == {"a": 300, "b": 100}
    assert sorted(f.path for f in storage.list_files("m")) == ["m/a.parquet", "m/b.parquet"]
    meta = pq.ParquetFile(os.path.join(lake_root, "m/a.parquet")).metadata
    assert meta.num_row_groups == 4  # one per part, each kept whole
    assert {meta.row_group(0).column(j).compression for j in range(meta.num_columns)} == {"SNAPPY"}
    assert stored_schema(storage, "m/a.parquet") == spark.createDataFrame([], schema).drop("k").schema
    back = spark.read.parquet(os.path.join(lake_root, "m/a.parquet")).collect()
    assert [r.line for r in back] == [i for i in range(1, 401) if i % 4]
    assert {(r.line, r.price, r.day, r.at) for r in back} == {
        (r.line, r.price, r.day, r.at) for r in df.where("k = 'a'").collect()}


def test_a_whole_tables_fingerprint_is_its_rows_in_any_order(spark):
    """The fingerprint a whole table's materialization carries (``lake run`` leaves what was built from
    a table alone when it comes back with the same one): the same rows in another order give the same,
    a changed value, an added row or another schema another; a map column gives none."""
    from lake_assets.io_managers import fingerprinted

    def of(rows, schema="k string, n int"):
        observed, value = fingerprinted(spark.createDataFrame(rows, schema))
        observed.write.format("noop").mode("overwrite").save()  # the write's own pass
        return value()

    rows = [("a", 1), ("b", 2), ("c", None)]
    same = of(rows)
    assert same == of(list(reversed(rows))) and same.startswith("3:")
    assert of([("a", 1), ("b", 3), ("c", None)]) != same
    assert of(rows + [("a", 1)]) != same
    assert of([("a", 1), ("b", 2), ("c", None)], "k string, n bigint") != same
    assert of([], "k string, n int") == of([], "k string, n int") != same
    observed, value = fingerprinted(spark.createDataFrame([({"x": 1},)], "m map<string,int>"))
    assert value() is None


def test_publish_without_a_shuffle_on_an_s3_lake(s3_lake, spark):
    """The same on S3 (moto): a key's parts merged into one object, every row once, in line order."""
    from lake_assets.io_managers import publish_partitions

    df = spark.createDataFrame([("a" if i % 3 else "b", i) for i in range(1, 301)], "k string, line bigint") \
        .repartitionByRange(3, "line")
    counts, _ = publish_partitions(s3_lake, df, "k", ["a", "b"], lambda k: f"m/{k}.parquet",
                                   sort_within=("line",), shuffle=False)
    assert counts == {"a": 200, "b": 100}
    assert sorted(f.path for f in s3_lake.list_files("m")) == ["m/a.parquet", "m/b.parquet"]
    with s3_lake.open_random("m/a.parquet") as fh:
        assert pq.read_table(fh).column("line").to_pylist() == [i for i in range(1, 301) if i % 3]
