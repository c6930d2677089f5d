"""Late files, re-runs, re-ingestion and crash retries: no count in analytics/ changes unless data did."""
from __future__ import annotations

import json
import os

import pytest
from dagster import AssetKey, evaluate_automation_conditions

from lake_assets.definitions import build_defs
from lake_assets.lake import LakeStorage

D1, D2, D3 = "2024-03-04", "2024-03-05", "2024-03-06"


def access(day: str, rid: str, status: int = 200, service: str = "web") -> dict:
    return {"timestamp": f"{day}T12:00:00Z", "service": service, "request_id": rid, "method": "GET",
            "path": "/", "status": status, "latency_ms": 5}


def drop(storage: LakeStorage, name: str, records: list[dict]) -> None:
    storage.write_text(f"raw/ndjson/{name}", "".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def gold(read_parquet):
    """``gold(storage)``: daily_activity as (date, service) -> (requests, server_errors)."""

    def _gold(storage: LakeStorage) -> dict:
        return {(r["date"].isoformat(), r["service"]): (r["requests"], r["server_errors"])
                for r in read_parquet(storage, "analytics/daily_activity").to_pylist()}

    return _gold


def partition_mtimes(storage: LakeStorage) -> dict[str, int]:
    return {f.path: f.mtime_ns for f in storage.list_files("processed") + storage.list_files("analytics")}


def test_late_file_rebuilds_only_its_day_and_automation_requests_it(lake_root, spark, instance, gold, run_lake):
    defs = build_defs(lake_root)
    storage = LakeStorage(lake_root)
    drop(storage, "day1.ndjson", [access(D1, "a"), access(D1, "b")])
    drop(storage, "day2-3.ndjson", [access(D2, "c"), access(D3, "d")])
    first = run_lake(defs, instance, "logs")
    assert first.success and first.touched == [D1, D2, D3]
    assert gold(storage) == {(D1, "web"): (2, 0), (D2, "web"): (1, 0), (D3, "web"): (1, 0)}

    # The automation sensor's view before the late file: nothing to do.
    tick0 = evaluate_automation_conditions(defs=defs, instance=instance)
    assert tick0.total_requested == 0

    # A late file for day 1 arrives: ingestion records that only D1 changed ...
    drop(storage, "late.ndjson", [access(D1, "e", status=503), access(D1, "a")])  # "a" is a re-delivery
    ingest = defs.resolve_job_def("ingest_logs_job").execute_in_process(instance=instance)
    assert ingest.success
    # ... and the automation condition requests D1 of processed, old as it is (eager() would not).
    tick1 = evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick0.cursor)
    assert tick1.get_requested_partitions(AssetKey("processed_logs")) == {D1}
    assert tick1.get_requested_partitions(AssetKey("rejected_log_records")) == {D1}
    # Gold follows in the same request (its upstream will be requested): one run rebuilds both.
    assert tick1.get_requested_partitions(AssetKey("daily_activity")) == {D1}

    # Building what was requested changes D1 and leaves D2 and D3 untouched.
    before = partition_mtimes(storage)
    build = defs.resolve_job_def("logs_pipeline_job").execute_in_process(instance=instance, partition_key=D1)
    assert build.success
    after = partition_mtimes(storage)
    changed = {p for p in after if after[p] != before.get(p)}
    assert changed and all("day=04" in p or "date=2024-03-04" in p for p in changed)
    assert gold(storage) == {(D1, "web"): (3, 1), (D2, "web"): (1, 0), (D3, "web"): (1, 0)}


def test_rerun_reingest_and_crash_retry_change_no_count(lake_root, spark, instance, monkeypatch, gold, run_lake,
                                                        read_parquet):
    defs = build_defs(lake_root)
    storage = LakeStorage(lake_root)
    records = [access(D1, "a"), access(D1, "b", status=500), access(D2, "c"), {"timestamp": "bad"}]
    drop(storage, "f.ndjson", records)

    # A crash after the validated files are published, before the raw file is deleted.
    real_delete = LakeStorage.delete

    def crash_on_raw(self, rel):
        if rel.startswith("raw/"):
            raise OSError("simulated crash before deleting the raw file")
        return real_delete(self, rel)

    monkeypatch.setattr(LakeStorage, "delete", crash_on_raw)
    crashed = run_lake(defs, instance, "logs")
    assert not crashed.runs[0].success and storage.list_files("raw")  # the raw file waits for a retry
    assert storage.list_files("validated/ndjson")  # published before the crash
    monkeypatch.setattr(LakeStorage, "delete", real_delete)

    retried = run_lake(defs, instance, "logs")
    assert retried.success
    expected = {(D1, "web"): (2, 1), (D2, "web"): (1, 0)}
    assert gold(storage) == expected
    assert len(storage.list_files("archive")) == 1
    assert len(storage.list_files("validated/ndjson")) == 3  # D1, D2 and the ingest date: no duplicate

    # The same file delivered again: same counts, same objects.
    drop(storage, "f.ndjson", records)
    again = run_lake(defs, instance, "logs")
    assert again.success and gold(storage) == expected
    assert len(storage.list_files("archive")) == 1
    total_rejected = read_parquet(storage, "rejected/data_quality").num_rows
    assert total_rejected == 1

    # Re-running a built range: nothing changes but the files' timestamps.
    rerun = defs.resolve_job_def("logs_pipeline_job").execute_in_process(
        instance=instance, tags={"dagster/asset_partition_range_start": D1,
                                 "dagster/asset_partition_range_end": D2})
    assert rerun.success and gold(storage) == expected
    assert not [f for f in os.listdir(lake_root) if f.startswith("_staging")] or \
        not storage.list_files("_staging", hidden=True)
