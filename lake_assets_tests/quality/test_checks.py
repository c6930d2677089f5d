"""The shared check factories on crafted data: each blocking kind fails with its metadata, its outcome
lands in the metrics zone, and a blocking failure keeps the guarded downstream asset from being built."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    BackfillPolicy,
    DailyPartitionsDefinition,
    MaterializeResult,
    asset,
    materialize,
)
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import types as T

from lake_assets.catalog.resource import CatalogResource
from lake_assets.catalog.tables import Table
from lake_assets.ingest.formats import NDJSON
from lake_assets.ingest.router import Zones, manifest_path
from lake_assets.io_managers import LakeParquetIOManager, lake_table, write_table
from lake_assets.lake import LakeStorage, partition_path
from lake_assets.lake.layout import join
from lake_assets.quality import metrics
from lake_assets.quality.checks import (
    Accounting,
    RateThresholds,
    Reference,
    accounting_check,
    count_and_sample,
    error_count,
    keys_check,
    pandera_schema,
    rate_check,
    schema_check,
    unique_key_check,
    unique_key_result,
)
from lake_assets.resources import LakeResource
from lake_assets.spark import spark_resource_from_env

DAY = "2024-03-02"
PARTS = DailyPartitionsDefinition(start_date="2024-03-01", end_date="2024-03-10")

ITEMS_SCHEMA = T.StructType([T.StructField("event_date", T.DateType(), False), T.StructField("id", T.StringType(), False),
                             T.StructField("n", T.LongType(), True), T.StructField("ref", T.StringType(), True)])
ITEMS = lake_table(Table("test", "items", "processed", "test/items", ITEMS_SCHEMA, "items", "items"), metrics="test")
REJECTS = lake_table(Table("test", "item_rejects", "rejected", "test/item_rejects", T.StructType(
    [T.StructField("event_date", T.DateType(), False), T.StructField("record", T.StringType(), False)]),
    "rejected items", "item_rejects"))
REFS_SCHEMA = T.StructType([T.StructField("ref", T.StringType(), False)])
REFS = lake_table(Table("test", "refs", "analytics", "test/refs", REFS_SCHEMA, "refs", "refs", partitioning=None))

#: What the next run's ``items`` and ``item_rejects`` write: rows of ITEMS_SCHEMA (dates as strings), records.
DATA: dict[str, list] = {"items": [], "rejects": []}
BUILT: list[str] = []


@asset(partitions_def=PARTS, backfill_policy=BackfillPolicy.single_run(), io_manager_key="lake_io_manager",
       metadata=REJECTS)
def item_rejects(context, spark: LazyPySparkResource):
    rows = [(dt.date.fromisoformat(context.partition_key), r) for r in DATA["rejects"]]
    return spark.spark_session.createDataFrame(rows, "event_date date, record string")


@asset(partitions_def=PARTS, backfill_policy=BackfillPolicy.single_run(), io_manager_key="lake_io_manager",
       metadata=ITEMS, deps=[item_rejects])
def items(context, spark: LazyPySparkResource):
    day = dt.date.fromisoformat(context.partition_key)
    return spark.spark_session.createDataFrame([(day, *r) for r in DATA["items"]], ITEMS_SCHEMA)


@asset(partitions_def=PARTS, backfill_policy=BackfillPolicy.single_run(), deps=[items])
def downstream(context) -> MaterializeResult:
    """What a blocking check on ``items`` guards."""
    BUILT.append(context.partition_key)
    return MaterializeResult()


def resources(root: str) -> dict:
    lake, spark, catalog = LakeResource(root=root), spark_resource_from_env(), CatalogResource(kind="none")
    return {"lake": lake, "spark": spark, "catalog": catalog,
            "lake_io_manager": LakeParquetIOManager(lake=lake, spark=spark, catalog=catalog)}


def run(root, instance, *checks, extra=()):
    """One run over DAY: rejects, items, the checks on items, and the asset they guard."""
    BUILT.clear()
    return materialize([item_rejects, items, downstream, *extra, *checks], resources=resources(root),
                       instance=instance, partition_key=DAY, raise_on_error=False)


def evaluation(result, name):
    [found] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return found


def meta(evaluation) -> dict:
    return {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}


def recorded(root: str, result, asset: str, name: str, dataset: str = "test", partition: str | None = DAY) -> dict:
    """The check's row in the run's metrics file."""
    storage = LakeStorage(root)
    return metrics.read_metrics(storage, metrics.metrics_path(dataset, asset, partition, result.run_id))[f"check.{name}"]


def write_manifest(storage: LakeStorage, records: int, undated: int = 0, sha: str = "abc") -> None:
    """What ingestion leaves for one validated file routed to DAY: the file and its manifest."""
    zones = Zones()
    storage.write_text(join(zones.validated_dir(NDJSON.name), partition_path("ymd", DAY), sha + NDJSON.extension), "")
    storage.write_text(manifest_path(zones, NDJSON, sha), json.dumps({
        "source_path": "raw/ndjson/x.ndjson", "ingest_run_id": "r1", "ingest_ts": "2024-03-02T10:00:00+00:00",
        "records_by_date": {DAY: records}, "undated_by_date": {DAY: undated} if undated else {}}))


ACCOUNTING = Accounting(formats=(NDJSON,), valid={"valid": (ITEMS, None)}, rejected=("rejected", REJECTS),
                        undated="undated_rejected")


# -- pure helpers ------------------------------------------------------------------------------------------
def test_unique_key_result_reports_the_real_number_of_duplicated_keys(spark):
    rows = [(f"k{i:02d}",) for i in range(25) for _ in range(2)] + [("solo",)]
    result = unique_key_result(spark.createDataFrame(rows, "id string"), ["id"], sample=10)
    assert not result.passed
    assert result.metadata["duplicate_keys"].value == 25  # not the sample's size
    assert result.metadata["duplicate_keys_sample"].value == [f"k{i:02d}" for i in range(10)]
    assert result.metadata["key"].value == ["id"]
    ok = unique_key_result(spark.createDataFrame([("a",), ("b",)], "id string"), ["id"])
    assert ok.passed and ok.metadata["duplicate_keys"].value == 0 and ok.metadata["duplicate_keys_sample"].value == []


def test_count_and_sample_is_one_job_with_composite_keys(spark):
    df = spark.createDataFrame([("b", 2), ("a", None), ("a", 1)], "x string, y int")
    assert count_and_sample(df, 2) == (3, ["a/None", "a/1"])
    assert count_and_sample(df.limit(0), 5) == (0, [])


def test_error_count_counts_data_cases_and_schema_errors():
    assert error_count({}) == 0
    assert error_count({"DATA": [{"column": "a", "check": "isin", "failure_cases": 3},
                                 {"column": "b", "check": "not_nullable", "failure_cases": 2}]}) == 5
    assert error_count({"SCHEMA": {"WRONG_DATATYPE": [{}, {}], "COLUMN_NOT_IN_DATAFRAME": [{}]}}) == 3


def test_a_table_without_a_metrics_dataset_needs_one():
    with pytest.raises(ValueError, match="metrics dataset"):
        schema_check("item_rejects", REJECTS, pandera_schema(T.StructType([])), partitions_def=PARTS)
    with pytest.raises(ValueError, match="partitions_def"):
        accounting_check("items", ACCOUNTING, name="x", dataset="test", description="", partitions_def=None)


# -- each blocking kind, failing, in a run -----------------------------------------------------------------
def test_schema_check_passes_then_fails_and_blocks(lake_root, instance, spark):
    import pandera.pyspark as pa

    schema = pandera_schema(ITEMS_SCHEMA, {"n": [pa.Check.ge(0)], "ref": [pa.Check.isin(["r1", "r2"])]})
    check = schema_check("items", ITEMS, schema, partitions_def=PARTS)
    assert [s.name for s in check.check_specs] == ["items_schema"]

    DATA["items"] = [("a", 1, "r1"), ("b", 2, None)]
    ok = run(lake_root, instance, check)
    assert evaluation(ok, "items_schema").passed and BUILT == [DAY]
    row = recorded(lake_root, ok, "items", "items_schema")
    assert (row["outcome"], row["value"]) == ("passed", "0")

    DATA["items"] = [("a", -1, "r1"), ("b", -2, "nope"), ("c", 3, "r2")]
    bad = run(lake_root, instance, check)
    ev = evaluation(bad, "items_schema")
    assert not ev.passed and ev.severity == AssetCheckSeverity.ERROR
    assert meta(ev) == {"errors": {"DATA": [{"column": "n", "check": "greater_than_or_equal_to", "failure_cases": 2},
                                            {"column": "ref", "check": "isin", "failure_cases": 1}]}}
    assert BUILT == []  # the blocking check kept downstream from being built
    assert not bad.success
    row = recorded(lake_root, bad, "items", "items_schema")
    assert (row["outcome"], row["value"]) == ("failed", "3")


def test_schema_check_by_table_name_and_non_blocking(lake_root, instance, spark):
    import pandera.pyspark as pa

    schema = pandera_schema(ITEMS_SCHEMA, {"n": [pa.Check.le(10)]})
    check = schema_check("items", ITEMS, {"items": schema}, name="items_named_schema", dataset="other",
                         partitions_def=PARTS, blocking=False, description="named")
    DATA["items"] = [("a", 11, None)]
    result = run(lake_root, instance, check)
    ev = evaluation(result, "items_named_schema")
    assert not ev.passed
    assert meta(ev) == {"tables": ["items"], "errors": {"items": {"DATA": [
        {"column": "n", "check": "less_than_or_equal_to", "failure_cases": 1}]}}}
    assert BUILT == [DAY]  # not blocking: downstream built anyway
    assert recorded(lake_root, result, "items", "items_named_schema", dataset="other")["outcome"] == "failed"


def test_unique_key_check_fails_with_the_real_count_and_blocks(lake_root, instance, spark):
    check = unique_key_check("items", ITEMS, ["id"], partitions_def=PARTS)
    assert [s.name for s in check.check_specs] == ["items_unique_id"]
    DATA["items"] = [(f"k{i:02d}", i, None) for i in range(12) for _ in range(2)] + [("solo", 0, None)]
    result = run(lake_root, instance, check)
    ev = evaluation(result, "items_unique_id")
    assert not ev.passed
    assert meta(ev) == {"key": ["id"], "duplicate_keys": 12, "duplicate_keys_sample": [f"k{i:02d}" for i in range(10)]}
    assert BUILT == []
    row = recorded(lake_root, result, "items", "items_unique_id")
    assert (row["outcome"], row["value"]) == ("failed", "12")


@pytest.fixture
def refs(lake_root, spark):
    """The referenced table, written once (r1, r2), and its asset (declared for the checks' dependency)."""
    write_table(LakeStorage(lake_root), REFS, spark.createDataFrame([("r1",), ("r2",)], REFS_SCHEMA), [None],
                asset="refs", run_id="seed")

    @asset(metadata=REFS, io_manager_key="lake_io_manager")
    def refs():  # written above, not by the runs
        raise AssertionError("not materialized in these runs")

    return refs


def test_keys_check_finds_duplicates_and_orphans_and_blocks(lake_root, instance, spark, refs):
    check = keys_check("items", ITEMS, ["id"], refs=[Reference("ref", REFS, "refs", "ref")], partitions_def=PARTS)
    assert check.check_specs and {d.asset_key for s in check.check_specs for d in s.additional_deps} == {
        AssetKey("refs")}
    DATA["items"] = [("a", 1, "r1"), ("a", 2, "r2"), ("b", 3, "zz"), ("c", 4, "zz"), ("d", 5, "yy"), ("e", 6, None)]
    result = materialize([item_rejects, items, downstream, refs, check], resources=resources(lake_root),
                         instance=instance, partition_key=DAY, raise_on_error=False,
                         selection=[item_rejects.key, items.key, downstream.key])
    ev = evaluation(result, "items_keys")
    assert not ev.passed
    assert meta(ev) == {"violations": 3, "details": {
        "duplicate_keys": {"key": ["id"], "count": 1, "sample": ["a"]},
        "ref_not_in_refs": {"count": 2, "sample": ["yy", "zz"]}}}
    assert BUILT == []
    row = recorded(lake_root, result, "items", "items_keys")
    assert (row["outcome"], row["value"]) == ("failed", "3")


def test_table_checks_are_the_schema_and_keys_checks_in_one_step_and_one_pass(lake_root, instance, spark, refs):
    """The same two checks by the same names and metadata, blocking alike, selectable apart; one step;
    the schema's aggregates ride the keys check's Spark jobs (no job of their own)."""
    import pandera.pyspark as pa
    from dagster import AssetCheckKey, AssetSelection

    from lake_assets.quality.checks import table_checks

    reference = [Reference("ref", REFS, "refs", "ref")]
    schema = pandera_schema(ITEMS_SCHEMA, {"n": [pa.Check.le(4)]})
    both = table_checks("items", ITEMS, schema, ["id"], refs=reference, partitions_def=PARTS)
    assert [(s.name, s.blocking) for s in both.check_specs] == [("items_schema", True), ("items_keys", True)]
    assert {d.asset_key for s in both.check_specs for d in s.additional_deps} == {AssetKey("refs")}
    DATA["items"] = [("a", 1, "r1"), ("a", 2, "r2"), ("b", 5, "zz"), ("c", 6, "zz"), ("d", 3, "yy")]
    BUILT.clear()
    result = materialize([item_rejects, items, downstream, refs, both], resources=resources(lake_root),
                         instance=instance, partition_key=DAY, raise_on_error=False,
                         selection=AssetSelection.assets(item_rejects, items, downstream))
    schema_ev, keys_ev = evaluation(result, "items_schema"), evaluation(result, "items_keys")
    assert not schema_ev.passed and not keys_ev.passed and BUILT == []  # both blocking, both failed
    assert meta(schema_ev) == {"errors": {"DATA": [
        {"column": "n", "check": "less_than_or_equal_to", "failure_cases": 2}]}}
    assert meta(keys_ev) == {"violations": 3, "details": {
        "duplicate_keys": {"key": ["id"], "count": 1, "sample": ["a"]},
        "ref_not_in_refs": {"count": 2, "sample": ["yy", "zz"]}}}
    steps = {e.step_key for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert steps == {"items_schema_and_keys"}
    assert (recorded(lake_root, result, "items", "items_schema")["value"],
            recorded(lake_root, result, "items", "items_keys")["value"]) == ("2", "3")

    # Spark jobs: items rebuilt with both checks costs what it costs with the keys check alone (the
    # schema's aggregates add no job); and each check can run alone.
    from lake_assets_tests.quality.test_one_pass import spark_jobs

    def checks_only(*names):
        with spark_jobs(spark) as jobs:
            out = materialize([item_rejects, items, both], resources=resources(lake_root), instance=instance,
                              partition_key=DAY, raise_on_error=False,
                              selection=AssetSelection.assets(items).without_checks() | AssetSelection.checks(
                                  *[AssetCheckKey(AssetKey("items"), n) for n in names]))
        return sorted(e.check_name for e in out.get_asset_check_evaluations()), jobs[0]

    (together, jobs_both), (alone, jobs_keys) = checks_only("items_schema", "items_keys"), checks_only("items_keys")
    assert together == ["items_keys", "items_schema"] and alone == ["items_keys"]
    assert jobs_both == jobs_keys > 0
    assert checks_only("items_schema")[0] == ["items_schema"]


def test_accounting_check_fails_when_a_record_is_lost_and_blocks(lake_root, instance, spark):
    check = accounting_check("items", ACCOUNTING, name="items_accounted", dataset="test", description="d",
                             partitions_def=PARTS)
    write_manifest(LakeStorage(lake_root), records=5, undated=1)
    DATA["items"], DATA["rejects"] = [("a", 1, None), ("b", 2, None), ("c", 3, None)], ["bad"]
    result = run(lake_root, instance, check)
    ev = evaluation(result, "items_accounted")
    assert not ev.passed and ev.severity == AssetCheckSeverity.ERROR
    assert meta(ev) == {"records_read": 5, "valid": 3, "rejected": 1, "mismatched_partitions": {
        DAY: {"records_read": 5, "valid": 3, "rejected": 1, "undated_rejected": 1}}}
    assert BUILT == []
    row = recorded(lake_root, result, "items", "items_accounted")
    assert (row["outcome"], row["value"]) == ("failed", "1")  # one record lost

    DATA["rejects"] = ["bad", "worse"]  # every record accounted for now
    again = run(lake_root, instance, check)
    assert evaluation(again, "items_accounted").passed and BUILT == [DAY]


@pytest.mark.parametrize("rejected, passed, severity, built", [
    (1, True, AssetCheckSeverity.WARN, True),    # 1/10 dated: at the warn threshold
    (3, False, AssetCheckSeverity.WARN, True),   # 3/12: warns, blocks nothing
    (6, False, AssetCheckSeverity.ERROR, False),  # 6/15: an error, downstream not built
])
def test_rate_check_warns_then_blocks(lake_root, instance, spark, rejected, passed, severity, built):
    check = rate_check("items", ACCOUNTING, lambda: RateThresholds(warn=0.1, error=0.3), name="items_reject_rate",
                       dataset="test", description="d", partitions_def=PARTS)
    # One more rejected record has no usable date: reported apart, counted in neither share.
    write_manifest(LakeStorage(lake_root), records=9 + rejected + 1, undated=1)
    DATA["items"] = [(f"i{i}", i, None) for i in range(9)]
    DATA["rejects"] = [f"bad{i}" for i in range(rejected + 1)]
    result = run(lake_root, instance, check)
    ev = evaluation(result, "items_reject_rate")
    assert ev.passed is passed and (passed or ev.severity == severity)
    assert meta(ev) == {"rejected": rejected, "total": 9 + rejected, "reject_rate": round(rejected / (9 + rejected), 6),
                        "warn_threshold": 0.1, "error_threshold": 0.3, "undated_rejected": 1}
    assert (BUILT == [DAY]) is built
    row = recorded(lake_root, result, "items", "items_reject_rate")
    assert (row["outcome"], row["value"]) == ("passed" if passed else "failed", str(rejected))
