"""The schema-drift check: files written against the catalog's columns, through real materializations."""
import pytest
from dagster import AssetCheckSeverity, AssetIn, AssetKey, DailyPartitionsDefinition, asset, materialize
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.catalog.checks import schema_drift_checks
from lake_assets.catalog.tables import Table
from lake_assets.definitions import build_resources
from lake_assets.io_managers import lake_table

PARTS = DailyPartitionsDefinition(start_date="2024-03-01", end_date="2024-03-10")
EVENTS = Table("test", "events", "silver", "test/events", T.StructType(
    [T.StructField("event_date", T.DateType()), T.StructField("value", T.IntegerType())]), "events", "events")
DAILY = Table("test", "daily", "gold", "test/daily", T.StructType(
    [T.StructField("date", T.DateType()), T.StructField("total", T.LongType())]), "totals", "daily",
    partitioning="date")
#: How the next `events` deviates from its declaration: None, "added", "removed" or "retyped".
MODE: list = [None]


@asset(partitions_def=PARTS, io_manager_key="lake_io_manager", metadata=lake_table(EVENTS))
def events(spark: LazyPySparkResource):
    df = spark.spark_session.createDataFrame([("2024-03-02", 1), ("2024-03-02", 2)], "d string, value int")
    df = df.select(F.to_date("d").alias("event_date"), "value")
    return {None: df, "added": df.withColumn("note", F.lit("x")), "removed": df.drop("value"),
            "retyped": df.withColumn("value", F.col("value").cast("string"))}[MODE[0]]


@asset(partitions_def=PARTS, io_manager_key="lake_io_manager", ins={"events": AssetIn()},
       metadata=lake_table(DAILY, date_column="date"))
def daily(events):
    return events.groupBy(F.col("event_date").alias("date")).agg(F.count(F.lit(1)).alias("total"))


def run(lake_root, instance, mode):
    MODE[0] = mode
    return materialize([events, daily, *schema_drift_checks([events, daily])], resources=build_resources(lake_root),
                       instance=instance, partition_key="2024-03-02", raise_on_error=False)


def drift_of(result, asset: str):
    [ev] = [e for e in result.get_asset_check_evaluations() if e.asset_key == AssetKey(asset)]
    return ev


def test_matching_files_pass_and_the_check_is_built_per_table_writing_asset(lake_root, spark, instance):
    result = run(lake_root, instance, None)
    assert result.success
    assert drift_of(result, "events").passed and drift_of(result, "daily").passed
    assert {c.check_key.name for c in schema_drift_checks([events, daily])} == {"schema_drift"}


def test_an_added_column_warns_and_blocks_nothing(lake_root, spark, instance):
    result = run(lake_root, instance, "added")
    ev = drift_of(result, "events")
    assert not ev.passed and ev.severity == AssetCheckSeverity.WARN
    [(_, found)] = ev.metadata["drift"].value.items()
    assert found == {"added": ["note"], "removed": [], "retyped": []}
    assert result.success  # a warning: gold was built
    # The outcome is in the metrics zone beside the table's numbers (its domain's dataset here).
    from lake_assets.lake import LakeStorage
    from lake_assets.quality.metrics import read_metrics

    m = read_metrics(LakeStorage(lake_root), f"metrics/test/events/event_date=2024-03-02/{result.run_id}.csv")
    assert (m["check.schema_drift"]["outcome"], float(m["check.schema_drift"]["value"])) == ("failed", 1.0)
    assert [m.asset_key for m in result.get_asset_materialization_events()
            if m.asset_key == AssetKey("daily")]


@pytest.mark.parametrize("mode,expected", [
    ("removed", {"added": [], "removed": ["value"], "retyped": []}),
    ("retyped", {"added": [], "removed": [], "retyped": ["value: int -> string"]}),
])
def test_a_removed_or_retyped_column_is_an_error_that_blocks_gold(lake_root, spark, instance, mode, expected):
    result = run(lake_root, instance, mode)
    ev = drift_of(result, "events")
    assert not ev.passed and ev.severity == AssetCheckSeverity.ERROR
    [(_, found)] = ev.metadata["drift"].value.items()
    assert found == expected
    assert not result.success  # the blocking check stopped the run before gold
    assert not [m for m in result.get_asset_materialization_events() if m.asset_key == AssetKey("daily")]
