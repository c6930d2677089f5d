"""The logs lake's blocking checks failing: count conservation on the real pipeline with a record lost
between ingestion and processed, and daily_activity's schema and key checks on a crafted table."""
from __future__ import annotations

import datetime as dt
import functools
import json

from dagster import BackfillPolicy, MaterializeResult, asset, materialize
from dagster_pyspark import LazyPySparkResource

from lake_assets.domains.logs import contract
from lake_assets.domains.logs.assets import DAILY_ACTIVITY_TABLE, daily_activity, processed_logs, validated_logs
from lake_assets.domains.logs.checks import LOGS_CHECKS
from lake_assets.ingest.router import Zones, ingest_file, manifest_path
from lake_assets.lake import LakeStorage
from lake_assets.partitions import daily_partitions as _daily
from lake_assets.settings import LakeSettings
from lake_assets.quality import metrics

#: The partitions the checks under test were built with (the environment's settings).
daily_partitions = _daily(LakeSettings.from_env().start_date)

DAY = "2024-03-02"
INGESTED = dt.datetime(2024, 3, 2, 12, tzinfo=dt.timezone.utc)


def evaluations(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def check_row(storage: LakeStorage, result, asset: str, name: str) -> dict:
    return metrics.read_metrics(storage, metrics.metrics_path("logs", asset, DAY, result.run_id))[f"check.{name}"]


def test_count_conservation_fails_when_processed_lost_a_record_and_gold_is_not_built(
        lake_root, instance, spark, check_resources, check_metadata):
    storage = LakeStorage(lake_root)
    records = [{"timestamp": f"{DAY}T08:00:0{i}Z", "service": "web", "request_id": f"r{i}", "method": "GET",
                "path": "/", "status": 200} for i in range(4)]
    records.append({"timestamp": f"{DAY}T09:00:00Z", "service": "web", "request_id": "bad", "method": "GET",
                    "path": "/", "status": 999})  # rejected: invalid_status
    storage.write_text("raw/ndjson/f.ndjson", "".join(json.dumps(r) + "\n" for r in records))
    fmt = contract.FORMATS["ndjson"]
    done = ingest_file(storage, "raw/ndjson/f.ndjson", fmt, functools.partial(contract.routing_date, start=dt.date(2024, 1, 1)),
                       run_id="ingest", now=INGESTED)
    assert done.records_by_date == {DAY: 5}
    # The manifest now claims one record more than the validated file holds: one lost on the way.
    path = manifest_path(Zones(), fmt, done.sha256)
    manifest = json.loads(storage.read_text(path))
    manifest["records_by_date"][DAY] += 1
    storage.write_text(path, json.dumps(manifest))

    result = materialize([validated_logs, processed_logs, daily_activity, *LOGS_CHECKS], resources=check_resources(lake_root),
                         instance=instance, partition_key=DAY, raise_on_error=False)
    evals = evaluations(result)
    ev = evals["processed_logs_count_conservation"]
    assert not ev.passed
    assert check_metadata(ev) == {"records_read": 6, "valid_access": 4, "valid_error": 0, "rejected": 1, "mismatched_partitions": {
        DAY: {"records_read": 6, "valid_access": 4, "valid_error": 0, "rejected": 1, "undated_rejected": 0}}}
    # 1 of 5 dated records rejected: the rate warns (not blocking); conservation is what blocks.
    assert evals["processed_logs_schema"].passed and evals["processed_logs_reject_rate"].severity.value == "WARN"
    # Gold guarded: daily_activity was not materialized, and nothing was written for it.
    assert not result.success
    assert [m for m in result.get_asset_materialization_events() if m.asset_key == daily_activity.key] == []
    assert not storage.list_files("analytics/daily_activity")
    row = check_row(storage, result, "processed_logs", "processed_logs_count_conservation")
    assert (row["outcome"], row["value"]) == ("failed", "1")


@asset(name="daily_activity", partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(),
       io_manager_key="lake_io_manager", metadata=DAILY_ACTIVITY_TABLE)
def crafted_daily_activity(spark: LazyPySparkResource):
    """daily_activity as a bug might write it: a (date, service) twice, negative counts."""
    def row(service: str, requests: int, bytes_sent: int) -> tuple:
        values = {"date": dt.date.fromisoformat(DAY), "service": service, "requests": requests,
                  "bytes_sent": bytes_sent}
        return tuple(values.get(f.name, None if f.nullable else 0) for f in contract.DAILY_ACTIVITY_SCHEMA.fields)

    rows = [row("web", 10, 100), row("web", 5, 50), row("api", -3, -1)]
    return spark.spark_session.createDataFrame(rows, contract.DAILY_ACTIVITY_SCHEMA)


def test_daily_activity_schema_and_key_checks_fail_on_a_crafted_table(lake_root, instance, spark, check_resources,
                                                                       check_metadata):
    built = []

    @asset(partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(), deps=["daily_activity"])
    def report(context) -> MaterializeResult:
        built.append(context.partition_key)
        return MaterializeResult()

    checks = [c for c in LOGS_CHECKS if {s.asset_key.path[-1] for s in c.check_specs} == {"daily_activity"}]
    assert sorted(s.name for c in checks for s in c.check_specs) == ["daily_activity_schema",
                                                                      "daily_activity_unique_date_service"]
    result = materialize([crafted_daily_activity, report, *checks], resources=check_resources(lake_root),
                         instance=instance, partition_key=DAY, raise_on_error=False)
    evals = evaluations(result)
    schema = evals["daily_activity_schema"]
    assert not schema.passed
    assert check_metadata(schema) == {"tables": ["daily_activity"], "errors": {"daily_activity": {"DATA": [
        {"column": "requests", "check": "greater_than_or_equal_to", "failure_cases": 1},
        {"column": "bytes_sent", "check": "greater_than_or_equal_to", "failure_cases": 1}]}}}
    unique = evals["daily_activity_unique_date_service"]
    assert not unique.passed
    assert check_metadata(unique) == {"key": ["date", "service"], "duplicate_keys": 1, "duplicate_keys_sample": [f"{DAY}/web"]}
    assert built == []  # blocking: what reads daily_activity is not built
    storage = LakeStorage(lake_root)
    assert (check_row(storage, result, "daily_activity", "daily_activity_schema")["value"],
            check_row(storage, result, "daily_activity", "daily_activity_unique_date_service")["value"]) == ("2", "1")
