"""The commerce lake's blocking silver checks failing on the real silver build: raw records go through
the real ingestion and the real ``build_silver_<dataset>`` multi-asset, with one fault injected where
the asset produces its silver rows (``silver.silver_rows`` wrapped): a value breaking the pandera schema,
a key written twice, a row lost. The check reads silver as stored, fails with exact metadata, records
``failed`` in the metrics zone, and what reads silver is not built in the same run; the other silver
checks of the same run pass (each fault breaks one thing only)."""
from __future__ import annotations

import json

from dagster import AssetKey, BackfillPolicy, MaterializeResult, asset, materialize
from pyspark.sql import functions as F

from lake_assets.catalog.resource import CatalogResource
from lake_assets.domains.commerce import silver
from lake_assets.domains.commerce.assets import BRONZE, LANDING, SILVER_ASSETS
from lake_assets.domains.commerce.checks import COMMERCE_CHECKS
from lake_assets.ingest.jobs import ingest_paths
from lake_assets.io_managers import LakeParquetIOManager
from lake_assets.lake import LakeStorage
from lake_assets.partitions import daily_partitions as _daily
from lake_assets.quality import metrics
from lake_assets.resources import LakeResource
from lake_assets.settings import LakeSettings
from lake_assets.spark import spark_resource_from_env

#: The settings the assets and checks under test were built with (the environment's).
SETTINGS = LakeSettings.from_env()
daily_partitions = _daily(SETTINGS.start_date)

DAY = "2024-03-02"


def resources(root: str) -> dict:
    lake, spark, catalog = LakeResource(root=root), spark_resource_from_env(), CatalogResource(kind="none")
    return {"lake": lake, "spark": spark, "catalog": catalog,
            "lake_io_manager": LakeParquetIOManager(lake=lake, spark=spark, catalog=catalog)}


def land(root: str, dataset: str, records: list[dict]) -> None:
    """Raw records of ``dataset`` through the real ingestion: all of them routed to DAY."""
    storage = LakeStorage(root)
    path = f"raw/{dataset}/{DAY}_001.ndjson"
    storage.write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    [done] = ingest_paths(LANDING, storage, [path], run_id="ingest", start=SETTINGS.start_date)
    assert (done.status, done.records_by_date) == ("ingested", {DAY: len(records)})


def inject(monkeypatch, fault) -> None:
    """The silver asset writes ``fault(rows)`` instead of the rows ``silver.silver_rows`` gives it."""
    real = silver.silver_rows
    monkeypatch.setattr(silver, "silver_rows", lambda parsed, spec, loaded_at: fault(real(parsed, spec, loaded_at)))


def silver_checks(dataset: str) -> list:
    key = AssetKey(f"silver_{dataset}")
    found = [c for c in COMMERCE_CHECKS if {s.asset_key for s in c.check_specs} == {key}]
    assert sorted(s.name for c in found for s in c.check_specs) == sorted(
        f"silver_{dataset}_{n}" for n in ("schema", "keys", "every_row_accounted", "quarantine_rate"))
    return found


def run_silver(root: str, instance, dataset: str, built: list):
    """One run over DAY: silver_<dataset> (+ quarantine), its checks, and an asset reading silver."""

    @asset(partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(), deps=[f"silver_{dataset}"])
    def reads_silver(context) -> MaterializeResult:
        built.append(context.partition_key)
        return MaterializeResult()

    return materialize([BRONZE[dataset], SILVER_ASSETS[dataset], reads_silver, *silver_checks(dataset)],
                       resources=resources(root), instance=instance, partition_key=DAY, raise_on_error=False)


def evaluations(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def meta(evaluation) -> dict:
    return {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}


def metrics_rows(root: str, result, dataset: str) -> dict:
    """The run's metrics file of silver_<dataset> for DAY (the IO manager's measures and the checks')."""
    path = metrics.metrics_path(dataset, f"silver_{dataset}", DAY, result.run_id)
    return metrics.read_metrics(LakeStorage(root), path)


def assert_blocked(result, dataset: str, built: list) -> None:
    """Silver was written (the check read it as stored), what reads it was not built."""
    materialized = {m.asset_key.path[-1] for m in result.get_asset_materialization_events()}
    assert materialized == {f"silver_{dataset}", f"quarantine_{dataset}"}
    assert built == [] and not result.success


def transaction(i: int, **changes) -> dict:
    return {"transaction_id": f"t{i}", "user_id": f"u{i}", "amount": f"{10 + i}.50", "currency": "EUR",
            "status": "completed", "created_at": f"{DAY}T1{i}:00:00Z", **changes}


def test_silver_schema_fails_on_a_null_user_id_a_negative_amount_and_an_unknown_status(
        lake_root, instance, spark, monkeypatch):
    land(lake_root, "transactions", [transaction(i) for i in range(1, 6)])

    def fault(rows):  # values no rule would have let through to silver
        tid = F.col("transaction_id")
        return (rows.withColumn("user_id", F.when(tid == "t1", F.lit(None)).otherwise(F.col("user_id")))
                .withColumn("amount", F.when(tid == "t2", -F.col("amount")).otherwise(F.col("amount")))
                .withColumn("status", F.when(tid == "t3", F.lit("lost")).otherwise(F.col("status"))))

    inject(monkeypatch, fault)
    built: list = []
    result = run_silver(lake_root, instance, "transactions", built)
    evals = evaluations(result)
    assert {n: e.passed for n, e in evals.items()} == {
        "silver_transactions_schema": False, "silver_transactions_keys": True,
        "silver_transactions_every_row_accounted": True, "silver_transactions_quarantine_rate": True}
    schema = evals["silver_transactions_schema"]
    assert schema.blocking and schema.severity.value == "ERROR"
    assert meta(schema) == {"errors": {"DATA": [
        {"column": "user_id", "check": "not_nullable", "failure_cases": 1},
        {"column": "amount", "check": "greater_than_or_equal_to", "failure_cases": 1},
        {"column": "status", "check": "isin", "failure_cases": 1}]}}
    assert_blocked(result, "transactions", built)
    rows = metrics_rows(lake_root, result, "transactions")
    assert rows["rows"]["value"] == "5"
    assert (rows["check.silver_transactions_schema"]["outcome"], rows["check.silver_transactions_schema"]["value"]) \
        == ("failed", "3")
    assert rows["check.silver_transactions_keys"]["outcome"] == "passed"


def event(i: int, **changes) -> dict:
    return {"event_id": f"e{i}", "user_id": "u1", "event_type": "page_view", "ts": f"{DAY}T08:0{i}:00Z",
            "session_id": "s1", **changes}


def test_silver_keys_fail_on_an_event_id_written_twice(lake_root, instance, spark, monkeypatch):
    land(lake_root, "events", [event(i) for i in range(1, 6)])
    # e5 replaced by a second copy of e1: as many rows as records, one key twice.
    inject(monkeypatch, lambda rows: rows.where(F.col("event_id") != "e5")
           .unionByName(rows.where(F.col("event_id") == "e1")))
    built: list = []
    result = run_silver(lake_root, instance, "events", built)
    evals = evaluations(result)
    assert {n: e.passed for n, e in evals.items()} == {
        "silver_events_schema": True, "silver_events_keys": False,
        "silver_events_every_row_accounted": True, "silver_events_quarantine_rate": True}
    keys = evals["silver_events_keys"]
    assert keys.blocking and keys.severity.value == "ERROR"
    assert meta(keys) == {"violations": 1, "details": {
        "duplicate_keys": {"key": ["event_id"], "count": 1, "sample": ["e1"]}}}
    assert_blocked(result, "events", built)
    rows = metrics_rows(lake_root, result, "events")
    assert rows["rows"]["value"] == "5"
    assert (rows["check.silver_events_keys"]["outcome"], rows["check.silver_events_keys"]["value"]) == ("failed", "1")
    assert rows["check.silver_events_every_row_accounted"]["outcome"] == "passed"


def user(i: int, **changes) -> dict:
    return {"user_id": f"u{i}", "email": f"u{i}@example.com", "country": "FR", "status": "active",
            "created_at": "2024-01-05T10:00:00Z", "updated_at": f"{DAY}T09:{i:02d}:00Z", **changes}


def test_silver_every_row_accounted_fails_when_a_valid_row_is_lost(lake_root, instance, spark, monkeypatch):
    # 11 valid users and one quarantined (no @ in its email): 1 of 11 dated rows, under the WARN rate.
    land(lake_root, "users", [user(i) for i in range(1, 12)] + [user(12, email="nobody")])
    inject(monkeypatch, lambda rows: rows.where(F.col("user_id") != "u5"))  # lost on the way to silver
    built: list = []
    result = run_silver(lake_root, instance, "users", built)
    evals = evaluations(result)
    assert {n: e.passed for n, e in evals.items()} == {
        "silver_users_schema": True, "silver_users_keys": True,
        "silver_users_every_row_accounted": False, "silver_users_quarantine_rate": True}
    accounted = evals["silver_users_every_row_accounted"]
    assert accounted.blocking and accounted.severity.value == "ERROR"
    assert meta(accounted) == {"records_read": 12, "silver": 10, "quarantined": 1, "mismatched_partitions": {
        DAY: {"records_read": 12, "silver": 10, "quarantined": 1, "undated_quarantined": 0}}}
    assert_blocked(result, "users", built)
    rows = metrics_rows(lake_root, result, "users")
    assert (rows["rows"]["value"], rows["quarantined_rows"]["value"]) == ("10", "1")
    row = rows["check.silver_users_every_row_accounted"]
    assert (row["outcome"], row["value"]) == ("failed", "1")
