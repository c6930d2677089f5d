"""The daily schedule (seed 003: 02:00 UTC) runs `lake run` for every domain as one Dagster run;
the hourly orders extraction keeps its own schedule."""
from __future__ import annotations

import datetime as dt

from dagster import DefaultScheduleStatus, build_schedule_context

from lake_assets import cli
from lake_assets.lake import LakeStorage


def test_the_daily_schedule_runs_lake_run_for_every_domain(tmp_path, monkeypatch, instance, spark):
    from lake_assets.definitions import build_defs

    lake = tmp_path / "lake"
    monkeypatch.setenv("LAKE_ROOT", str(lake))
    defs = build_defs(str(lake))
    daily = defs.resolve_schedule_def("lake_daily_schedule")
    hourly = defs.resolve_schedule_def("orders_extract_schedule")
    assert (daily.cron_schedule, daily.execution_timezone, daily.default_status) == (
        "0 2 * * *", "UTC", DefaultScheduleStatus.RUNNING)
    assert hourly.cron_schedule == "0 * * * *" and hourly.job_name == "orders_extract_job"
    with build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(
            2024, 5, 2, 2, tzinfo=dt.timezone.utc)) as context:
        [request] = daily.evaluate_tick(context).run_requests
    assert daily.job_name == "lake_run_job" and request.run_config == {}

    assert cli.main(["generate", "logs", "--days", "1", "--records-per-day", "80", "--start", "2024-05-01",
                     "--bad-share", "0", "--bad-files", "0"]) == 0
    result = defs.resolve_job_def("lake_run_job").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    summary = result.output_for_node("lake_run_op")
    assert summary["logs"].startswith("logs: ") and "0 file(s)" not in summary["logs"]
    storage = LakeStorage(str(lake))
    assert storage.list_files("raw") == [] and storage.list_files("analytics/daily_activity/date=2024-05-01")
    # The domain's own runs are recorded beside the schedule's run, as `lake run` records them.
    jobs = {r.job_name for r in instance.get_runs()}
    assert {"lake_run_job", "ingest_logs_job", "logs_pipeline_job"} <= jobs

    # A blocking check failing in a domain fails the scheduled run, naming the domain.
    monkeypatch.setenv("LAKE_REJECT_RATE_WARN", "0")
    monkeypatch.setenv("LAKE_REJECT_RATE_ERROR", "0")
    assert cli.main(["generate", "logs", "--days", "1", "--records-per-day", "80", "--start", "2024-05-03",
                     "--bad-share", "0.2", "--bad-files", "0"]) == 0
    failed = defs.resolve_job_def("lake_run_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.is_step_failure]
    assert "logs: failed or left stale partitions" in failure.step_failure_data.error.message
    assert not storage.list_files("analytics/daily_activity/date=2024-05-03")
