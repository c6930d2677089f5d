"""processed_logs_schema failing on the real pipeline: access records go through the real ingestion and
the real processed_logs step, whose valid access rows get values no contract rule would have let through
(``contract.valid_rows`` wrapped). The pandera check on processed as stored fails with its metadata,
daily_activity is neither materialized nor written, and the metrics zone records the failure."""
from __future__ import annotations

import datetime as dt
import functools
import json

from dagster import materialize
from pyspark.sql import functions as F

from lake_assets.domains.logs import contract
from lake_assets.domains.logs.assets import daily_activity, processed_logs, validated_logs
from lake_assets.domains.logs.checks import LOGS_CHECKS
from lake_assets.ingest.router import ingest_file
from lake_assets.lake import LakeStorage
from lake_assets.quality import metrics

DAY = "2024-03-02"
INGESTED = dt.datetime(2024, 3, 2, 12, tzinfo=dt.timezone.utc)


def test_processed_logs_schema_fails_on_values_out_of_contract_and_gold_is_not_built(
        lake_root, instance, spark, monkeypatch, check_resources, check_metadata):
    storage = LakeStorage(lake_root)
    records = [{"timestamp": f"{DAY}T08:00:0{i}Z", "service": "web", "request_id": f"r{i}", "method": "GET",
                "path": "/", "status": 200, "bytes_sent": 10, "latency_ms": 1.5} for i in range(5)]
    storage.write_text("raw/ndjson/f.ndjson", "".join(json.dumps(r) + "\n" for r in records))
    done = ingest_file(storage, "raw/ndjson/f.ndjson", contract.FORMATS["ndjson"],
                       functools.partial(contract.routing_date, start=dt.date(2024, 1, 1)),
                       run_id="ingest", now=INGESTED)
    assert done.records_by_date == {DAY: 5}

    real = contract.valid_rows

    def valid_rows(parsed, schema):
        rows = real(parsed, schema)
        if schema is not contract.ACCESS_SCHEMA:
            return rows
        rid = F.col("request_id")
        # What a bug past the rules would write: an unknown method, a null path, a status out of
        # range, a negative byte count (one row each, so nothing is rejected and counts still match).
        return (rows.withColumn("method", F.when(rid == "r0", F.lit("FETCH")).otherwise(F.col("method")))
                .withColumn("path", F.when(rid == "r1", F.lit(None)).otherwise(F.col("path")))
                .withColumn("status", F.when(rid == "r2", F.lit(999)).otherwise(F.col("status")))
                .withColumn("bytes_sent", F.when(rid == "r3", F.lit(-5).cast("bigint")).otherwise(F.col("bytes_sent"))))

    monkeypatch.setattr(contract, "valid_rows", valid_rows)
    result = materialize([validated_logs, processed_logs, daily_activity, *LOGS_CHECKS], resources=check_resources(lake_root),
                         instance=instance, partition_key=DAY, raise_on_error=False)
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    ev = evals["processed_logs_schema"]
    assert not ev.passed and ev.blocking and ev.severity.value == "ERROR"
    assert check_metadata(ev) == {"tables": ["access", "error"], "errors": {"access": {"DATA": [
        {"column": "method", "check": "isin", "failure_cases": 1},
        {"column": "path", "check": "not_nullable", "failure_cases": 1},
        {"column": "status", "check": "in_range", "failure_cases": 1},
        {"column": "bytes_sent", "check": "greater_than_or_equal_to", "failure_cases": 1}]}}}
    # Only the schema is broken: every record is accounted for, none rejected.
    assert evals["processed_logs_count_conservation"].passed and evals["processed_logs_reject_rate"].passed
    assert check_metadata(evals["processed_logs_count_conservation"])["valid_access"] == 5
    # Gold guarded: daily_activity was not materialized, and nothing was written for it.
    assert not result.success
    assert {m.asset_key.path[-1] for m in result.get_asset_materialization_events()} == {
        "processed_logs", "rejected_log_records"}
    assert not storage.list_files("analytics/daily_activity")
    found = metrics.read_metrics(storage, metrics.metrics_path("logs", "processed_logs", DAY, result.run_id))
    assert (found["check.processed_logs_schema"]["outcome"], found["check.processed_logs_schema"]["value"]) == (
        "failed", "4")
    assert found["check.processed_logs_count_conservation"]["outcome"] == "passed"
