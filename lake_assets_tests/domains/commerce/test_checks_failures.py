"""The commerce lake's blocking gold checks failing on crafted tables: SCD2 sanity of dim_users,
duplicate keys and orphan references to the dims; what they guard is not built in the same run."""
from __future__ import annotations

import datetime as dt

from dagster import AssetSpec, BackfillPolicy, MaterializeResult, asset, materialize
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import types as T

from lake_assets.catalog.resource import CatalogResource
from lake_assets.domains.commerce import gold
from lake_assets.domains.commerce.assets import GOLD_TABLES
from lake_assets.domains.commerce.checks import COMMERCE_CHECKS
from lake_assets.io_managers import LakeParquetIOManager, write_table
from lake_assets.lake import LakeStorage
from lake_assets.partitions import daily_partitions as _daily
from lake_assets.settings import LakeSettings
from lake_assets.quality import metrics
from lake_assets.resources import LakeResource
from lake_assets.spark import spark_resource_from_env

#: The partitions the checks under test were built with (the environment's settings).
daily_partitions = _daily(LakeSettings.from_env().start_date)

DAY = "2024-03-02"
TS = dt.datetime


def resources(root: str) -> dict:
    lake, spark, catalog = LakeResource(root=root), spark_resource_from_env(), CatalogResource(kind="none")
    return {"lake": lake, "spark": spark, "catalog": catalog,
            "lake_io_manager": LakeParquetIOManager(lake=lake, spark=spark, catalog=catalog)}


def check(name: str):
    [found] = [c for c in COMMERCE_CHECKS if name in [s.name for s in c.check_specs]]
    return found


def evaluation(result, name: str):
    [found] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return found


def meta(evaluation) -> dict:
    return {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}


def check_row(root: str, result, asset: str, name: str, partition: str | None = None) -> dict:
    path = metrics.metrics_path("gold", asset, partition, result.run_id)
    return metrics.read_metrics(LakeStorage(root), path)[f"check.{name}"]


def user(key, user_id, country="FR", status="active", valid_from=TS(2024, 1, 1), valid_to=None, current=True):
    return (key, user_id, f"{user_id}@x", country, status, valid_from, valid_to, current)


#: The dim_users the next run's stand-in writes.
DIM_USERS: list[tuple] = []


@asset(name="dim_users", io_manager_key="lake_io_manager", metadata=GOLD_TABLES["dim_users"])
def crafted_dim_users(spark: LazyPySparkResource):
    return spark.spark_session.createDataFrame(DIM_USERS, gold.DIM_USERS)


def guarded(built: list, *deps, partitioned: bool = False):
    """An asset reading ``deps``: built only if their blocking checks pass."""
    kw = {"partitions_def": daily_partitions, "backfill_policy": BackfillPolicy.single_run()} if partitioned else {}

    @asset(deps=list(deps), **kw)
    def mart() -> MaterializeResult:
        built.append("mart")
        return MaterializeResult()

    return mart


def test_dim_users_scd2_fails_on_overlapping_windows_two_current_rows_and_no_unknown_member(lake_root, instance, spark):
    DIM_USERS[:] = [
        # u1: the first version's window runs past the second's start (overlap).
        user(1, "u1", valid_from=TS(2024, 1, 1), valid_to=TS(2024, 1, 10), current=False),
        user(2, "u1", valid_from=TS(2024, 1, 5)),
        # u2: two current rows (windows fine).
        user(3, "u2", valid_from=TS(2024, 1, 1), valid_to=TS(2024, 1, 5)),
        user(4, "u2", valid_from=TS(2024, 1, 5)),
        # u3: an empty window (valid_to == valid_from), then its current row.
        user(5, "u3", valid_from=TS(2024, 2, 1), valid_to=TS(2024, 2, 1), current=False),
        user(6, "u3", valid_from=TS(2024, 2, 2)),
        # ...and no unknown member (key -1).
    ]
    built: list = []
    result = materialize([crafted_dim_users, guarded(built, "dim_users"), check("dim_users_scd2")],
                         resources=resources(lake_root), instance=instance, raise_on_error=False)
    ev = evaluation(result, "dim_users_scd2")
    assert not ev.passed
    assert meta(ev) == {"overlapping_or_empty_windows": 2, "users_without_exactly_one_current_row": 1,
                        "unknown_member_rows": 0}
    assert built == [] and not result.success
    row = check_row(lake_root, result, "dim_users", "dim_users_scd2")
    assert (row["outcome"], row["value"]) == ("failed", "4")

    DIM_USERS[:] = [user(gold.UNKNOWN_USER_KEY, None, None, None, None, None, None),
                    user(1, "u1", valid_to=TS(2024, 1, 10), current=False), user(2, "u1", valid_from=TS(2024, 1, 10))]
    ok = materialize([crafted_dim_users, guarded(built, "dim_users"), check("dim_users_scd2")],
                     resources=resources(lake_root), instance=instance, raise_on_error=False)
    assert evaluation(ok, "dim_users_scd2").passed and built == ["mart"]


def write_dims(root: str, spark) -> None:
    """dim_country and dim_status as a previous run left them."""
    storage = LakeStorage(root)
    write_table(storage, GOLD_TABLES["dim_country"], spark.createDataFrame(
        [("FR", "France", "EU"), ("US", "United States", "NA")], gold.DIM_COUNTRY), [None], asset="dim_country",
        run_id="seed")
    write_table(storage, GOLD_TABLES["dim_status"], spark.createDataFrame(
        [("user", "active", "a"), ("event", "view", "v"), ("transaction", "paid", "p")], gold.DIM_STATUS), [None],
        asset="dim_status", run_id="seed")


def test_dim_users_keys_fail_on_a_duplicate_key_and_orphan_country_and_status(lake_root, instance, spark):
    write_dims(lake_root, spark)
    DIM_USERS[:] = [user(gold.UNKNOWN_USER_KEY, None, None, None, None, None, None),
                    user(1, "u1"), user(1, "u2"),                 # user_key 1 twice
                    user(2, "u3", country="XX"), user(3, "u4", country="YY", status="gone")]
    built: list = []
    result = materialize([AssetSpec("dim_country"), AssetSpec("dim_status"), crafted_dim_users,
                          guarded(built, "dim_users"), check("dim_users_keys")],
                         resources=resources(lake_root), instance=instance, raise_on_error=False)
    ev = evaluation(result, "dim_users_keys")
    assert not ev.passed
    assert meta(ev) == {"violations": 4, "details": {
        "duplicate_keys": {"key": ["user_key"], "count": 1, "sample": ["1"]},
        "country_not_in_dim_country": {"count": 2, "sample": ["XX", "YY"]},
        "status_not_in_dim_status": {"count": 1, "sample": ["gone"]}}}
    assert built == []
    row = check_row(lake_root, result, "dim_users", "dim_users_keys")
    assert (row["outcome"], row["value"]) == ("failed", "4")


def test_fact_events_keys_fail_on_a_user_key_missing_from_dim_users(lake_root, instance, spark):
    write_dims(lake_root, spark)
    write_table(LakeStorage(lake_root), GOLD_TABLES["dim_users"], spark.createDataFrame(
        [user(gold.UNKNOWN_USER_KEY, None, None, None, None, None, None), user(1, "u1")], gold.DIM_USERS),
        [None], asset="dim_users", run_id="seed")
    day = dt.date.fromisoformat(DAY)

    @asset(name="fact_events", partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(),
           io_manager_key="lake_io_manager", metadata=GOLD_TABLES["fact_events"])
    def crafted_fact_events(spark: LazyPySparkResource):
        rows = [("e1", "u1", 1, "view", TS(2024, 3, 2, 8), None, None, day),
                ("e2", "u9", 9, "view", TS(2024, 3, 2, 9), None, None, day),      # user_key 9: no such user
                ("e3", "u1", 1, "teleport", TS(2024, 3, 2, 9), None, None, day)]  # no such event type
        schema = T.StructType([*gold.FACT_EVENTS.fields, T.StructField("_event_date", T.DateType())])  # a copy
        return spark.spark_session.createDataFrame(rows, schema)

    built: list = []
    result = materialize([AssetSpec("dim_users"), AssetSpec("dim_status"), crafted_fact_events,
                          guarded(built, "fact_events", partitioned=True), check("fact_events_keys")],
                         resources=resources(lake_root), instance=instance, partition_key=DAY, raise_on_error=False)
    ev = evaluation(result, "fact_events_keys")
    assert not ev.passed
    assert meta(ev) == {"violations": 2, "details": {
        "duplicate_keys": {"key": ["event_id"], "count": 0, "sample": []},
        "user_key_not_in_dim_users": {"count": 1, "sample": ["9"]},
        "event_type_not_in_dim_status": {"count": 1, "sample": ["teleport"]}}}
    assert built == []
    row = check_row(lake_root, result, "fact_events", "fact_events_keys", DAY)
    assert (row["outcome"], row["value"]) == ("failed", "2")
