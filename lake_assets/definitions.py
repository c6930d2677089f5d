"""The code location: every domain's definitions, with resources chosen by environment.

Loading this module reads environment variables only: it starts no Spark
session and touches no storage.
"""
from __future__ import annotations

from collections.abc import Sequence

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    Failure,
    ScheduleDefinition,
    in_process_executor,
    job,
    op,
)

from lake_assets.catalog.checks import schema_drift_checks
from lake_assets.catalog.resource import CatalogResource
from lake_assets.catalog.sql import LakeSQLResource
from lake_assets.catalog.tables import Registry
from lake_assets.failures import build_alerting
from lake_assets.quality.freshness import freshness_checks, freshness_schedule
from lake_assets.domains import DOMAINS
from lake_assets.io_managers import LakeParquetIOManager
from lake_assets.resources import LakeResource
from lake_assets.settings import LakeSettings
from lake_assets.spark import spark_resource_from_env

def registry() -> Registry:
    """Every table every domain declares (what the catalog, ``lake sql`` and the summary list)."""
    return Registry.of(t for d in DOMAINS.values() for t in d.tables())


def claimed_raw_folders() -> list[str]:
    """The raw/ folders the domains' landing zones read: a catch-all zone leaves these to their owner."""
    return sorted(f for d in DOMAINS.values() if d.landing for f in d.landing().folders)


def build_resources(lake_root: str | None = None) -> dict:
    """Resources from the environment: a local lake by default, S3 and a cluster when configured."""
    lake = LakeResource.from_env(lake_root, claimed_raw_folders())
    spark = spark_resource_from_env()
    catalog = CatalogResource.from_env(root=lake.root)
    # SQL over the catalog the IO manager keeps: for assets and checks that read gold.
    sql = LakeSQLResource.from_env(catalog_path=catalog.duckdb_path, lake_root=lake.root)
    return {"lake": lake, "spark": spark, "catalog": catalog, "sql": sql,
            "lake_io_manager": LakeParquetIOManager(lake=lake, spark=spark, catalog=catalog)}


#: Evaluates the assets' automation conditions (late-data rebuilds) while `dagster dev` runs.
lake_automation_sensor = AutomationConditionSensorDefinition(
    "lake_automation_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)


def domain_selection(only: Sequence[str] = ()) -> list[str]:
    """The domains ``only`` names, in the house's order (every domain when it names none); a name
    that is no domain is refused (ValueError, listing the domains)."""
    unknown = sorted(set(only) - set(DOMAINS))
    if unknown:
        raise ValueError(f"no domain {', '.join(unknown)}; the domains are {', '.join(DOMAINS)}")
    return [name for name in DOMAINS if not only or name in only]


def run_every_domain(instance, storage, settings: LakeSettings, progress=lambda _: None,
                     only: Sequence[str] = ()) -> list:
    """What `lake run` does: each domain ingests what waits and builds what is stale (its report).

    ``only`` (``lake run commerce``): those domains, in the house's order, and no other; a consumer
    of another domain's tables (analytics reads commerce gold) is built only when named too.
    """
    from lake_assets.failures import record_outcome

    names = domain_selection(only)
    defs = build_defs(storage.root_uri, settings)
    reports = [DOMAINS[name].run(defs, instance, storage, progress, settings) for name in names]
    # The daemon's failure sensors never see in-process runs: each is recorded and alerted here.
    for report in reports:
        for outcome in report.runs:
            record_outcome(storage, instance, outcome.run_id)
    return reports


@op(description="Ingest what waits in raw/ (and the orders source) and build everything stale, every domain: "
                "`lake run`, as a run the schedule starts and the UI shows.")
def lake_run_op(context) -> dict:
    from lake_assets.lake import LakeStorage
    from lake_assets.settings import lake_root

    reports = run_every_domain(context.instance, LakeStorage(lake_root()), LakeSettings.from_env(),
                               progress=context.log.info)
    for report in reports:
        context.log.info(report.summary)
    failed = [r for r in reports if not r.success]
    if failed:
        raise Failure(f"{', '.join(r.domain for r in failed)}: failed or left stale partitions (see their runs "
                      "and `lake status`)")
    return {r.domain: r.summary for r in reports}


@job(description="`lake run` for every domain, in one Dagster run (its runs, one per ingest batch and "
                 "date range, are recorded beside it).", tags={"lake/trigger": "schedule"})
def lake_run_job():
    lake_run_op()


#: The daily run of seed 003 (EventBridge at 02:00 UTC): everything that waits is ingested and
#: everything stale is built. The hourly orders extraction keeps its own schedule.
lake_daily_schedule = ScheduleDefinition(
    name="lake_daily_schedule", job=lake_run_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Every day at 02:00 UTC: `lake run` for every domain.")


def build_defs(lake_root: str | None = None, settings: LakeSettings | None = None) -> Definitions:
    """The code location; ``lake_root`` overrides LAKE_ROOT (tests point it at a temporary lake).

    ``settings`` (start date, dedup window, cron, thresholds) default to the environment's,
    read here, when the definitions are built, never at import.
    """
    settings = settings or LakeSettings.from_env()
    registry()  # refuses a table declared twice or locations that overlap, before anything runs
    domain_defs = [d.definitions(settings) for d in DOMAINS.values()]
    assets = [a for dd in domain_defs for a in (dd.assets or [])]
    # Every gold table's freshness promise, from the tables the assets declare.
    fresh = freshness_checks(assets, settings.fresh_by_hour_utc)
    # Failed runs kept in the lake and alerted; failed ERROR checks alerted.
    alerting = build_alerting()
    return Definitions.merge(
        *domain_defs,
        Definitions(
            # Every asset writing declared tables gets its schema-drift check from the catalog room.
            asset_checks=[*schema_drift_checks(assets), *fresh],
            sensors=[lake_automation_sensor, *alerting.sensors],
            jobs=[lake_run_job],
            schedules=[lake_daily_schedule, freshness_schedule(fresh, settings.fresh_by_hour_utc)],
            resources={**build_resources(lake_root), **alerting.resources},
            # One process, so one Spark session (one JVM) serves every step of a run.
            executor=in_process_executor,
        ),
    )


defs = build_defs()
