"""The code location: every domain's definitions, with resources chosen by environment.

Loading this module reads environment variables only: it starts no Spark
session and touches no storage.
"""
from __future__ import annotations

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    in_process_executor,
)

from lake_assets.catalog.checks import schema_drift_checks
from lake_assets.catalog.resource import CatalogResource
from lake_assets.catalog.sql import LakeSQLResource
from lake_assets.catalog.tables import Registry
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


def build_defs(lake_root: str | None = None, settings: LakeSettings | None = None) -> Definitions:
    """The code location; ``lake_root`` overrides LAKE_ROOT (tests point it at a temporary lake).

    ``settings`` (start date, dedup window, cron, thresholds) default to the environment's,
    read here, when the definitions are built, never at import.
    """
    settings = settings or LakeSettings.from_env()
    registry()  # refuses a table declared twice or locations that overlap, before anything runs
    domain_defs = [d.definitions(settings) for d in DOMAINS.values()]
    return Definitions.merge(
        *domain_defs,
        Definitions(
            # Every asset writing declared tables gets its schema-drift check from the catalog room.
            asset_checks=schema_drift_checks(a for dd in domain_defs for a in (dd.assets or [])),
            sensors=[lake_automation_sensor],
            resources=build_resources(lake_root),
            # One process, so one Spark session (one JVM) serves every step of a run.
            executor=in_process_executor,
        ),
    )


defs = build_defs()
