"""Freshness of gold (issue 15 part 5): each gold table promises the previous day's partition (or a
rebuild within the day) by LAKE_FRESH_BY_HOUR_UTC; the check fails (ERROR) until that holds."""
from __future__ import annotations

import datetime as dt

from dagster import AssetCheckSeverity, AssetKey

from lake_assets import cli
from lake_assets.quality.freshness import freshness_verdict, last_deadline

UTC = dt.timezone.utc


def test_the_deadline_is_the_last_hour_passed():
    assert last_deadline(dt.datetime(2024, 5, 2, 7, 30, tzinfo=UTC), 6) == dt.datetime(2024, 5, 2, 6, tzinfo=UTC)
    assert last_deadline(dt.datetime(2024, 5, 2, 5, 59, tzinfo=UTC), 6) == dt.datetime(2024, 5, 1, 6, tzinfo=UTC)


def test_gold_is_fresh_once_the_previous_days_partition_is_built(tmp_path, monkeypatch, spark):
    from dagster import DagsterInstance

    from lake_assets.definitions import build_defs

    today = dt.datetime.now(UTC).date()
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LAKE_START_DATE", (today - dt.timedelta(days=10)).isoformat())
    # Logs for the three days up to yesterday, built by `lake run`.
    assert cli.main(["generate", "logs", "--days", "3", "--records-per-day", "60", "--start",
                     (today - dt.timedelta(days=3)).isoformat(), "--bad-share", "0", "--bad-files", "0"]) == 0
    assert cli.main(["run"]) == 0
    # Definitions resolved inside the live instance they run in (Dagster's load context).
    with DagsterInstance.get() as instance:
        defs = build_defs(str(tmp_path / "lake"))
        checks = {(s.asset_key.to_user_string(), s.name) for c in defs.asset_checks for s in c.check_specs}
        # Every gold table (daily ones and whole ones) carries the promise; no other zone does.
        assert {a for a, n in checks if n == "freshness"} == {
            "daily_activity", "dim_users", "dim_country", "dim_status", "dim_date", "fact_events",
            "fact_transactions", "fact_user_activity", "daily_revenue", "daily_active_users", "user_ltv",
            "tpcds_daily_sales_summary", "tpcds_customer_lifetime_value", "tpcds_product_performance",
            "tpcds_monthly_trends"}
        schedule = defs.resolve_schedule_def("lake_freshness_schedule")
        assert (schedule.cron_schedule, schedule.execution_timezone) == ("5 6 * * *", "UTC")
        result = defs.resolve_job_def("lake_freshness_job").execute_in_process(instance=instance,
                                                                               raise_on_error=False)
        found = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
        assert found["daily_activity"].passed
        # Commerce had no data: its gold is not fresh, an ERROR (not blocking: nothing waits on it).
        assert not found["daily_revenue"].passed and found["daily_revenue"].severity == AssetCheckSeverity.ERROR
        assert not found["dim_users"].passed and found["dim_users"].metadata["built_at"].value == ""

        key = AssetKey("daily_activity")
        ok = freshness_verdict(instance, key, True, 6, dt.datetime.combine(today, dt.time(7), UTC))
        assert ok.passed and ok.metadata["expected_partition"].value == (today - dt.timedelta(days=1)).isoformat()
        # The day after tomorrow at 07:00, tomorrow's partition is due: not there.
        late = freshness_verdict(instance, key, True, 6, dt.datetime.combine(today + dt.timedelta(days=2),
                                                                             dt.time(7), UTC))
        assert not late.passed and late.metadata["expected_partition"].value == (today + dt.timedelta(days=1)).isoformat()
