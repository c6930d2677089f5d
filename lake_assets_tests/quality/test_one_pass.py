"""The checks' one pass (``measure``) and the IO manager's schema from the footer: the same answers as
the plain Spark queries they replace, in the number of Spark jobs they promise."""
from __future__ import annotations

import contextlib
import uuid

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.catalog.tables import Table
from lake_assets.io_managers import lake_table, partition_file, read_table, stored_schema, write_table
from lake_assets.lake import LakeStorage
from lake_assets.quality.checks import (
    count_and_sample,
    key_violations,
    measure,
    pandera_schema,
    validate_tables,
)


@contextlib.contextmanager
def spark_jobs(spark):
    """The Spark jobs the block ran (``found[0]`` once it ends)."""
    sc, group, found = spark.sparkContext, f"test-{uuid.uuid4().hex}", []
    sc.setJobGroup(group, "counted")
    try:
        yield found
    finally:
        sc._jsc.clearJobGroup()
        found.append(len(sc.statusTracker().getJobIdsForGroup(group)))


def parquet(spark, tmp_path, rows, schema, parts: int = 3):
    """``rows`` as stored: Parquet files read back (a scan, as checks see tables)."""
    path = str(tmp_path / uuid.uuid4().hex)
    spark.createDataFrame(rows, schema).repartition(parts).write.parquet(path)
    return spark.read.parquet(path)


def plain_duplicates(df, keys, sample):
    """What the check reported before its one pass: a group by, an ordered take, a count."""
    dup = df.groupBy(*keys).count().where(F.col("count") > 1).select(*keys)
    return dup.count(), ["/".join(str(r[k]) for k in keys) for r in dup.orderBy(*keys).limit(sample).collect()]


def plain_orphans(df, column, ref, ref_column, sample):
    missing = df.where(F.col(column).isNotNull()).select(column).distinct().join(
        ref.select(F.col(ref_column).alias(column)).distinct(), column, "left_anti")
    return missing.count(), [str(r[column]) for r in missing.orderBy(column).limit(sample).collect()]


ITEMS = T.StructType([T.StructField("a", T.StringType()), T.StructField("b", T.LongType()),
                      T.StructField("country", T.StringType()), T.StructField("status", T.StringType())])
ITEM_ROWS = [
    ("x", 1, "FR", "ok"), ("x", 1, "FR", "ok"),        # a duplicated key
    ("x", None, "ZZ", "ok"), ("x", None, "ZZ", "ok"),  # a duplicated key with a null part; an orphan
    (None, None, None, None), (None, None, "YY", "gone"),  # another one, all null; orphans
    ("y", 2, "DE", None), ("z", 3, "AA", "new"), ("w", 4, "DE", "ok"),
    *[(f"k{i:02d}", i, "FR", "ok") for i in range(20)], *[(f"k{i:02d}", i, "DE", "ok") for i in range(0, 20, 3)],
]
COUNTRIES = [("FR",), ("DE",), (None,)]  # a null reference matches nothing
STATUSES = [("ok", "live"), ("new", "live")]


def test_key_violations_are_what_the_plain_queries_found(spark, tmp_path):
    items = parquet(spark, tmp_path, ITEM_ROWS, ITEMS)
    countries = parquet(spark, tmp_path, COUNTRIES, "country string", parts=1)
    statuses = parquet(spark, tmp_path, STATUSES, "status string, kind string", parts=1)
    for sample in (1, 3, 50):
        with spark_jobs(spark) as jobs:
            found = key_violations(items, ["a", "b"], [("country", countries, "country"),
                                                      ("status", statuses, "status")], sample)
        assert found == [plain_duplicates(items, ["a", "b"], sample),
                         plain_orphans(items, "country", countries, "country", sample),
                         plain_orphans(items, "status", statuses, "status", sample)]
        # One action: the key grouping's shuffle, and each reference's broadcast and shuffle, then
        # the one stage writing every result (fewer when Spark reuses a stage).
        assert 1 <= jobs[0] <= 2 + 2 * 2
    assert found[0][0] == 10 and found[0][1][:3] == ["None/None", "k00/0", "k03/3"]
    assert found[1] == (3, ["AA", "YY", "ZZ"]) and found[2] == (1, ["gone"])


def test_key_violations_without_references_or_without_a_key(spark, tmp_path):
    items = parquet(spark, tmp_path, ITEM_ROWS, ITEMS)
    countries = parquet(spark, tmp_path, COUNTRIES, "country string", parts=1)
    assert key_violations(items, ["a"], sample=4) == [plain_duplicates(items, ["a"], 4)]
    assert key_violations(items, refs=[("country", countries, "country")], sample=2) == [
        plain_orphans(items, "country", countries, "country", 2)]
    clean = parquet(spark, tmp_path, [("a", 1, "FR", "ok"), ("b", 2, None, "ok")], ITEMS)
    assert key_violations(clean, ["a"], [("country", countries, "country")]) == [(0, []), (0, [])]
    empty = parquet(spark, tmp_path, [], ITEMS)
    assert key_violations(empty, ["a", "b"], [("country", countries, "country")]) == [(0, []), (0, [])]


def test_a_reference_of_another_type_is_compared_in_the_widened_type(spark, tmp_path):
    facts = parquet(spark, tmp_path, [(1, 10), (2, 20), (3, 30), (3, None)], "k int, item int")
    items = parquet(spark, tmp_path, [(10,), (30,), (2 ** 40,)], "item_sk bigint", parts=1)
    assert key_violations(facts, ["k"], [("item", items, "item_sk")]) == [(1, ["3"]), (1, ["20"])]


def test_key_groupings_skip_partial_aggregation_only_inside_the_check(spark, tmp_path):
    from lake_assets.quality.checks import BYPASS_PARTIAL_AGGREGATION, unreduced_groupings

    facts = parquet(spark, tmp_path, [(1, 10), (1, 10)], "k int, item int")
    plans = []
    with unreduced_groupings(spark):
        plans.append(facts.groupBy("k").count()._jdf.queryExecution().executedPlan().toString())
    plans.append(facts.groupBy("k").count()._jdf.queryExecution().executedPlan().toString())
    assert "partial_count" not in plans[0] and "partial_count" in plans[1]
    assert spark.conf.get(BYPASS_PARTIAL_AGGREGATION, None) is None  # unset again
    spark.conf.set(BYPASS_PARTIAL_AGGREGATION, "false")
    try:
        assert key_violations(facts, ["k"]) == [(1, ["1"])]
        assert spark.conf.get(BYPASS_PARTIAL_AGGREGATION) == "false"  # a session's own value kept
    finally:
        spark.conf.unset(BYPASS_PARTIAL_AGGREGATION)


def test_count_and_sample_is_one_job_past_the_sample_size(spark, tmp_path):
    rows = parquet(spark, tmp_path, [(f"r{i:03d}", i % 7) for i in range(200)], "x string, y int", parts=4)
    with spark_jobs(spark) as jobs:
        assert count_and_sample(rows, 3) == (200, ["r000/0", "r001/1", "r002/2"])
    assert jobs[0] == 1
    with spark_jobs(spark) as jobs:
        assert count_and_sample(rows.where(F.col("y") > 7), 3) == (0, [])
    assert jobs[0] == 1


def test_schema_checks_of_several_tables_are_one_job(spark, tmp_path):
    import pandera.pyspark as pa

    struct = T.StructType([T.StructField("k", T.StringType(), False), T.StructField("n", T.LongType(), True)])
    loose = T.StructType([T.StructField(f.name, f.dataType, True) for f in struct.fields])
    schema = pandera_schema(struct, {"n": [pa.Check.ge(0)]})
    good = parquet(spark, tmp_path, [("a", 1), ("b", None)], loose)
    bad = parquet(spark, tmp_path, [("a", -1), (None, 2), (None, -3)], loose)
    with spark_jobs(spark) as jobs:
        found = validate_tables({"good": (schema, good), "bad": (schema, bad), "again": (schema, bad)})
    assert jobs[0] == 1
    errors = {"DATA": [{"column": "k", "check": "not_nullable", "failure_cases": 2},
                       {"column": "n", "check": "greater_than_or_equal_to", "failure_cases": 2}]}
    assert found == {"good": {}, "bad": errors, "again": errors}
    # A table of the wrong shape is reported by pandera alone, and the others still measured.
    wrong = parquet(spark, tmp_path, [("a", "1")], "k string, n string")
    found = validate_tables({"wrong": (schema, wrong), "bad": (schema, bad)})
    assert "DATA" not in found["wrong"] and found["wrong"] and found["bad"] == errors


def test_measure_runs_nothing_for_nothing(spark):
    with spark_jobs(spark) as jobs:
        assert measure() == []
    assert jobs[0] == 0


def test_read_table_takes_the_schema_spark_stored_without_a_job(spark, tmp_path):
    schema = T.StructType([T.StructField("event_date", T.DateType(), False), T.StructField("id", T.StringType(), False),
                           T.StructField("amount", T.DecimalType(18, 2), True),
                           T.StructField("at", T.TimestampType(), True),
                           T.StructField("tags", T.ArrayType(T.StringType()), True)])
    meta = lake_table(Table("test", "things", "processed", "test/things", schema, "things", "things"))
    storage = LakeStorage(str(tmp_path / "lake"))
    df = spark.sql("SELECT DATE'2024-03-02' AS event_date, 'a' AS id, CAST(1.5 AS DECIMAL(18,2)) AS amount, "
                   "TIMESTAMP'2024-03-02 10:00:00' AS at, array('x') AS tags")
    write_table(storage, meta, df, ["2024-03-02", "2024-03-03"], asset="things", run_id="r")  # 03-03: empty
    inferred = spark.read.parquet(storage.spark_uri(partition_file(meta, "2024-03-02"))).schema
    assert stored_schema(storage, partition_file(meta, "2024-03-02")) is not None
    with spark_jobs(spark) as jobs:
        read = read_table(spark, storage, meta, ["2024-03-02", "2024-03-03"])
    assert jobs[0] == 0 and read.schema == inferred
    assert [tuple(r) for r in read.select("id", "tags").collect()] == [("a", ["x"])]
    # The empty partition was written by Arrow: no Spark schema stored, Spark infers it as before.
    assert stored_schema(storage, partition_file(meta, "2024-03-03")) is None
    alone = read_table(spark, storage, meta, ["2024-03-03"])
    assert alone.count() == 0 and alone.columns == read.columns


@pytest.mark.parametrize("drifted", [T.LongType(), T.StringType()])
def test_read_table_shows_a_drifted_file_as_stored(spark, tmp_path, drifted):
    schema = T.StructType([T.StructField("event_date", T.DateType(), False), T.StructField("n", T.IntegerType())])
    meta = lake_table(Table("test", "drift", "processed", "test/drift", schema, "drift", "drift"))
    storage = LakeStorage(str(tmp_path / "lake"))
    df = spark.sql("SELECT DATE'2024-03-02' AS event_date").withColumn("n", F.lit(7).cast(drifted))
    write_table(storage, meta, df, ["2024-03-02"], asset="drift", run_id="r")
    assert read_table(spark, storage, meta, ["2024-03-02"]).schema["n"].dataType == drifted
