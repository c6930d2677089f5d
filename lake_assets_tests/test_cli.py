"""The `lake` CLI and the Dagster CLI, as a data engineer runs them."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from lake_assets import cli
from lake_assets.lake import LakeStorage


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LAKE_ROOT", str(lake))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return lake, home


def test_generate_run_summary_and_failing_check_exit_code(cli_env, spark, capsys, monkeypatch):
    lake, home = cli_env
    start = dt.date(2024, 5, 1)
    assert cli.main(["generate", "logs", "--days", "2", "--records-per-day", "150", "--start", start.isoformat(),
                     "--bad-share", "0.05", "--bad-files", "3"]) == 0
    assert len(LakeStorage(str(lake)).list_files("raw")) > 3

    assert cli.main(["run"]) == 0
    out = capsys.readouterr().out
    assert "logs: ingesting" not in out and "ingested" in out and "done in" in out
    storage = LakeStorage(str(lake))
    assert storage.list_files("raw") == []
    assert storage.list_files("analytics/daily_activity/date=2024-05-01")
    # The runs are in the instance the UI opens.
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        jobs = sorted({r.job_name for r in instance.get_runs()})
    assert jobs == ["ingest_logs_job", "logs_pipeline_job"]

    # The summary reads the lake back: rows per zone, rejects by reason, gold.
    cli.print_summary(storage)
    summary = capsys.readouterr().out
    assert "Rejected records by reason" in summary and "Gold preview" in summary
    assert "rejected/system/ (whole files)" in summary

    # A blocking check that fails makes `lake run` exit non-zero and say which check.
    monkeypatch.setenv("LAKE_REJECT_RATE_WARN", "0")
    monkeypatch.setenv("LAKE_REJECT_RATE_ERROR", "0")
    assert cli.main(["generate", "logs", "--days", "1", "--records-per-day", "100", "--seed", "3",
                     "--start", "2024-05-03", "--bad-share", "0.1", "--bad-files", "0"]) == 0
    assert cli.main(["run"]) == 1
    out = capsys.readouterr().out
    assert "FAILED logs: logs_pipeline_job for 2024-05-03..2024-05-03" in out
    assert "blocking check failed: processed_logs:processed_logs_reject_rate" in out
    # Gold for that day was not built: the blocking check guarded it.
    assert not storage.list_files("analytics/daily_activity/date=2024-05-03")


def test_dagster_cli_backfills_a_range_in_one_run(cli_env, spark, tmp_path):
    """`dagster asset materialize --partition-range` over several days: one run, every partition built."""
    lake, home = cli_env
    storage = LakeStorage(str(lake))
    days = [dt.date(2024, 6, 1) + dt.timedelta(days=i) for i in range(4)]
    storage.write_text("raw/ndjson/f.ndjson", "".join(
        json.dumps({"timestamp": f"{d}T08:00:00Z", "service": "web", "request_id": f"r{i}", "method": "GET",
                    "path": "/", "status": 200}) + "\n" for i, d in enumerate(days)))
    # Ingest only (no build), as the landing sensor would.
    from dagster import DagsterInstance

    from lake_assets.definitions import build_defs

    with DagsterInstance.from_config(str(home)) as instance:
        job = build_defs(str(lake)).resolve_job_def("ingest_logs_job")
        assert job.execute_in_process(instance=instance).success

    env = {**os.environ, "LAKE_ROOT": str(lake), "DAGSTER_HOME": str(home), "SPARK_MASTER": "local[1]"}
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "dagster"), "asset", "materialize",
         "-m", "lake_assets.definitions", "--select", "processed_logs,rejected_log_records,daily_activity",
         "--partition-range", f"{days[0]}...{days[-1]}"],
        env=env, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with DagsterInstance.from_config(str(home)) as instance:
        runs = [r for r in instance.get_runs() if r.job_name != "ingest_logs_job"]
        assert len(runs) == 1 and runs[0].tags["dagster/asset_partition_range_start"] == str(days[0])
        from dagster import AssetKey

        mats = instance.fetch_materializations(AssetKey("daily_activity"), limit=100).records
        assert sorted(m.partition_key for m in mats) == [str(d) for d in days]
    for d in days:
        [f] = storage.list_files(f"analytics/daily_activity/date={d}")
        assert pq.read_table(storage.local_path(f.path)).column("requests").to_pylist() == [1]
