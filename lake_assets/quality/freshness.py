"""Freshness: every gold table promises to be fresh by an hour of the day, checked once.

A daily gold table must hold the previous day's partition by ``settings.fresh_by_hour_utc``
(06:00 UTC by default); a whole gold table (dimensions, lifetime marts) must have been
rebuilt within the day before that hour. One ``freshness`` check per gold asset reads the
instance's materialization records (no data), severity ERROR and not blocking: the UI
shows it on the asset, the metrics zone records it, and a failure is alerted like any
failing check. ``lake_freshness_schedule`` runs them just after the deadline; the builds
that carry each asset's checks leave them be (see :func:`freshness_checks`).

(Dagster's own ``build_time_partition_freshness_checks`` expects the *last* partition
of the definition, which for the lake's partitions, open through tomorrow for early
events, is tomorrow's; and ``FreshnessPolicy`` judges when an asset last materialized,
not whether the previous day's partition exists.)
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetChecksDefinition,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    multi_asset_check,
    define_asset_job,
)

from lake_assets.catalog.tables import tables_of

#: The zones people read: their tables carry a freshness promise.
FRESH_ZONES = ("gold", "analytics")
NAME = "freshness"


def last_deadline(now: dt.datetime, hour: int) -> dt.datetime:
    """The latest ``hour``:00 UTC at or before ``now``."""
    tick = now.astimezone(dt.timezone.utc).replace(hour=hour, minute=0, second=0, microsecond=0)
    return tick if tick <= now else tick - dt.timedelta(days=1)


def freshness_verdict(instance, key: AssetKey, daily: bool, hour: int, now: dt.datetime) -> AssetCheckResult:
    """Whether ``key`` kept its promise at the last deadline before ``now``."""
    deadline = last_deadline(now, hour)
    if daily:
        expected = (deadline.date() - dt.timedelta(days=1)).isoformat()
        found = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[expected]), limit=1).records
        return AssetCheckResult(passed=bool(found), severity=AssetCheckSeverity.ERROR, metadata={
            "expected_partition": expected, "deadline": deadline.isoformat(),
            "built_at": dt.datetime.fromtimestamp(found[0].timestamp, dt.timezone.utc).isoformat() if found else ""})
    found = instance.fetch_materializations(key, limit=1).records
    oldest_ok = deadline - dt.timedelta(days=1)
    built = dt.datetime.fromtimestamp(found[0].timestamp, dt.timezone.utc) if found else None
    return AssetCheckResult(passed=built is not None and built >= oldest_ok, severity=AssetCheckSeverity.ERROR,
                            metadata={"rebuilt_since": oldest_ok.isoformat(), "deadline": deadline.isoformat(),
                                      "built_at": built.isoformat() if built else ""})


JOB = "lake_freshness_job"


def freshness_checks(assets: Iterable, fresh_by_hour_utc: int) -> list[AssetChecksDefinition]:
    """One ``freshness`` check per asset writing a gold table (one multi-check, subsettable).

    A promise about the clock, not the data: it is judged by ``lake_freshness_job`` (on its
    schedule, or run by hand), and stays silent in the builds that also carry the asset's
    checks (a backfill of last year's dates says nothing of whether yesterday arrived).
    """
    daily: dict[AssetKey, bool] = {}
    for assets_def in assets:
        if not isinstance(assets_def, AssetsDefinition):
            continue
        for spec in assets_def.specs:
            tables = tables_of(spec.metadata or {})
            if tables and any(t.zone in FRESH_ZONES for t in tables.values()):
                daily[spec.key] = assets_def.partitions_def is not None
    if not daily:
        return []
    hour = fresh_by_hour_utc

    def promise(key: AssetKey) -> str:
        return (f"Fresh: the previous day's partition by {hour:02d}:00 UTC" if daily[key]
                else f"Fresh: rebuilt within the day before {hour:02d}:00 UTC") + " (LAKE_FRESH_BY_HOUR_UTC)."

    @multi_asset_check(
        name="lake_freshness",
        specs=[AssetCheckSpec(NAME, asset=k, description=promise(k)) for k in sorted(daily, key=str)],
        can_subset=True,
    )
    def _freshness(context):
        if context.run.job_name != JOB:
            return  # judged on its schedule, not by every build
        now = dt.datetime.now(dt.timezone.utc)
        for check_key in sorted(context.selected_asset_check_keys, key=str):
            result = freshness_verdict(context.instance, check_key.asset_key, daily[check_key.asset_key], hour, now)
            yield AssetCheckResult(asset_key=check_key.asset_key, check_name=NAME, passed=result.passed,
                                   severity=result.severity, metadata=result.metadata)

    return [_freshness]


def freshness_schedule(checks: list[AssetChecksDefinition], fresh_by_hour_utc: int) -> ScheduleDefinition:
    """Runs every freshness check a few minutes after the deadline."""
    job = define_asset_job(JOB, selection=AssetSelection.checks(*checks),
                           description="Check every gold table's freshness promise.")
    return ScheduleDefinition(name="lake_freshness_schedule", job=job, cron_schedule=f"5 {fresh_by_hour_utc} * * *",
                              execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING)
