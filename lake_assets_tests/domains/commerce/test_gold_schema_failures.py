"""The commerce lake's blocking gold schema checks (``<table>_schema``, pandera on the table as stored)
failing on crafted tables: every dim, fact and mart written by a stand-in asset (its real key and table
metadata, through the lake IO manager) with a row breaking its schema: a null in a non-nullable column,
a negative count or amount, a column of the wrong type. One run builds them all with their schema
checks and an asset reading each; each table's test then reads that run's outcome."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from dagster import (AssetCheckKey, AssetKey, AssetSelection, BackfillPolicy, DagsterInstance, MaterializeResult, asset,
                     materialize)
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import types as T

from lake_assets.catalog.resource import CatalogResource
from lake_assets.domains.commerce import gold, tables
from lake_assets.domains.commerce.assets import GOLD_TABLES
from lake_assets.domains.commerce.checks import COMMERCE_CHECKS
from lake_assets.io_managers import LakeParquetIOManager
from lake_assets.lake import LakeStorage
from lake_assets.partitions import daily_partitions as _daily
from lake_assets.quality import metrics
from lake_assets.resources import LakeResource
from lake_assets.settings import LakeSettings
from lake_assets.spark import spark_resource_from_env

#: The partitions the checks under test were built with (the environment's settings).
daily_partitions = _daily(LakeSettings.from_env().start_date)

DAY = "2024-03-02"
DATE = dt.date.fromisoformat(DAY)
GE = "greater_than_or_equal_to"

#: A valid value of each type (the rows below change only what breaks the schema).
VALID = {T.StringType(): "x", T.TimestampType(): dt.datetime(2024, 3, 2, 8), T.DateType(): DATE,
         T.LongType(): 1, T.IntegerType(): 1, T.BooleanType(): False}


def value(field: T.StructField):
    return Decimal("1.00") if isinstance(field.dataType, T.DecimalType) else VALID[field.dataType]


def _event_date(table: str) -> bool:
    """Facts dated by a column they do not keep carry ``_event_date`` (the IO manager drops it)."""
    return GOLD_TABLES[table]["lake/date_column"] == "_event_date" and tables.GOLD[table].partitioning is not None


def frame_schema(table: str, struct: T.StructType, **types) -> T.StructType:
    """The table's columns, all nullable (to hold the crafted nulls), some retyped, plus ``_event_date``."""
    fields = [T.StructField(f.name, types.get(f.name, f.dataType), True) for f in struct.fields]
    return T.StructType(fields + ([T.StructField("_event_date", T.DateType())] if _event_date(table) else []))


def row(table: str, struct: T.StructType, **changes) -> tuple:
    out = tuple(changes.get(f.name, value(f)) for f in struct.fields)
    return out + ((DATE,) if _event_date(table) else ())


#: table -> (struct, retyped columns, rows, the errors its schema check reports, cases counted).
CASES = {
    "dim_users": (gold.DIM_USERS, {}, [{"user_key": -1}, {"user_key": None}],
                  {"DATA": [{"column": "user_key", "check": "not_nullable", "failure_cases": 1}]}, 1),
    "dim_country": (gold.DIM_COUNTRY, {}, [{"country": "FR"}, {"country": None, "name": None}],
                    {"DATA": [{"column": "country", "check": "not_nullable", "failure_cases": 1},
                              {"column": "name", "check": "not_nullable", "failure_cases": 1}]}, 2),
    "dim_status": (gold.DIM_STATUS, {}, [{"description": None}],
                   {"DATA": [{"column": "description", "check": "not_nullable", "failure_cases": 1}]}, 1),
    # A column of the wrong type: pandera's schema-level report (data checks are not run then).
    "dim_date": (gold.DIM_DATE, {"year": T.StringType()}, [{"year": "2024"}],
                 {"SCHEMA": {"WRONG_DATATYPE": [{
                     "schema": None, "column": "year", "check": "dtype('IntegerType()')",
                     "error": "expected column 'year' to have type IntegerType(), got StringType()"}]}}, 1),
    "fact_events": (gold.FACT_EVENTS, {}, [{"event_id": "e1"}, {"event_id": "e2", "user_key": None}],
                    {"DATA": [{"column": "user_key", "check": "not_nullable", "failure_cases": 1}]}, 1),
    "fact_transactions": (gold.FACT_TRANSACTIONS, {}, [{"amount": None}, {"amount": None, "status": None}],
                          {"DATA": [{"column": "amount", "check": "not_nullable", "failure_cases": 2},
                                    {"column": "status", "check": "not_nullable", "failure_cases": 1}]}, 3),
    "fact_user_activity": (gold.FACT_USER_ACTIVITY, {}, [{"events": -1, "purchases": -2}],
                           {"DATA": [{"column": "events", "check": GE, "failure_cases": 1},
                                     {"column": "purchases", "check": GE, "failure_cases": 1}]}, 2),
    "daily_revenue": (gold.DAILY_REVENUE, {}, [{"country": "FR"}, {"country": "US", "revenue": Decimal("-5.00")}],
                      {"DATA": [{"column": "revenue", "check": GE, "failure_cases": 1}]}, 1),
    "daily_active_users": (gold.DAILY_ACTIVE_USERS, {}, [{"active_users": -1}],
                           {"DATA": [{"column": "active_users", "check": GE, "failure_cases": 1}]}, 1),
    "user_ltv": (gold.USER_LTV, {}, [{"orders": -1, "lifetime_revenue": None}],
                 {"DATA": [{"column": "orders", "check": GE, "failure_cases": 1},
                           {"column": "lifetime_revenue", "check": "not_nullable", "failure_cases": 1}]}, 2),
}


def partitioned(table: str) -> bool:
    return tables.GOLD[table].partitioning is not None


def crafted(table: str):
    """``table`` as a bug might write it: the real key and table metadata, the case's rows."""
    struct, types, rows, _, _ = CASES[table]
    kw = {"partitions_def": daily_partitions, "backfill_policy": BackfillPolicy.single_run()} \
        if partitioned(table) else {}

    @asset(name=table, io_manager_key="lake_io_manager", metadata=GOLD_TABLES[table], **kw)
    def _crafted(spark: LazyPySparkResource):
        return spark.spark_session.createDataFrame([row(table, struct, **r) for r in rows],
                                                   frame_schema(table, struct, **types))

    return _crafted


def reader(table: str, built: list):
    """An asset reading ``table``: built only if its blocking checks pass."""
    kw = {"partitions_def": daily_partitions, "backfill_policy": BackfillPolicy.single_run()} \
        if partitioned(table) else {}

    @asset(name=f"reads_{table}", deps=[table], **kw)
    def _reader() -> MaterializeResult:
        built.append(table)
        return MaterializeResult()

    return _reader


def check(name: str):
    [found] = [c for c in COMMERCE_CHECKS if name in [s.name for s in c.check_specs]]
    return found


def meta(evaluation) -> dict:
    return {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory, spark):
    """One run over DAY: every crafted gold table, its schema check and its reader."""
    assert sorted(CASES) == sorted(GOLD_TABLES)  # every gold table has its case
    root = str(tmp_path_factory.mktemp("gold_schema") / "lake")
    lake, spark_res, catalog = LakeResource(root=root), spark_resource_from_env(), CatalogResource(kind="none")
    built: list = []
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [*(crafted(t) for t in CASES), *(reader(t, built) for t in CASES), *(check(f"{t}_schema") for t in CASES)],
            # The schema checks alone (each shares a step with its table's keys check, selectable apart).
            selection=AssetSelection.all().without_checks() | AssetSelection.checks(
                *[AssetCheckKey(AssetKey(t), f"{t}_schema") for t in CASES]),
            resources={"lake": lake, "spark": spark_res, "catalog": catalog,
                       "lake_io_manager": LakeParquetIOManager(lake=lake, spark=spark_res, catalog=catalog)},
            instance=instance, partition_key=DAY, raise_on_error=False)
    return {"result": result, "root": root, "built": built,
            "evaluations": {e.check_name: e for e in result.get_asset_check_evaluations()},
            "materialized": {m.asset_key.path[-1] for m in result.get_asset_materialization_events()}}


def test_every_crafted_table_was_written_and_no_reader_was_built(run):
    assert run["materialized"] == set(CASES)
    assert sorted(run["evaluations"]) == sorted(f"{t}_schema" for t in CASES)
    assert run["built"] == [] and not run["result"].success


@pytest.mark.parametrize("table", sorted(CASES))
def test_gold_schema_check_fails_naming_the_column_and_check(run, table):
    _, _, _, errors, count = CASES[table]
    ev = run["evaluations"][f"{table}_schema"]
    assert not ev.passed and ev.blocking and ev.severity.value == "ERROR"
    assert meta(ev) == {"errors": errors}
    assert table in run["materialized"] and table not in run["built"]  # written, its reader blocked
    path = metrics.metrics_path("gold", table, DAY if partitioned(table) else None, run["result"].run_id)
    row = metrics.read_metrics(LakeStorage(run["root"]), path)[f"check.{table}_schema"]
    assert (row["outcome"], row["value"]) == ("failed", str(count))
