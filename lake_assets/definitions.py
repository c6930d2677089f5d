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

from lake_assets.domains import commerce, logs, orders
from lake_assets.io_managers import LakeParquetIOManager
from lake_assets.resources import LakeResource
from lake_assets.spark import spark_resource_from_env


def build_resources(lake_root: str | None = None) -> dict:
    """Resources from the environment: a local lake by default, S3 and a cluster when configured."""
    lake = LakeResource.from_env(lake_root)
    spark = spark_resource_from_env()
    return {"lake": lake, "spark": spark, "lake_io_manager": LakeParquetIOManager(lake=lake, spark=spark)}


#: Evaluates the assets' automation conditions (late-data rebuilds) while `dagster dev` runs.
lake_automation_sensor = AutomationConditionSensorDefinition(
    "lake_automation_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

def build_defs(lake_root: str | None = None) -> Definitions:
    """The code location; ``lake_root`` overrides LAKE_ROOT (tests point it at a temporary lake)."""
    return Definitions.merge(
        logs.definitions(),
        commerce.definitions(),
        orders.definitions(),
        Definitions(
            sensors=[lake_automation_sensor],
            resources=build_resources(lake_root),
            # One process, so one Spark session (one JVM) serves every step of a run.
            executor=in_process_executor,
        ),
    )


defs = build_defs()
