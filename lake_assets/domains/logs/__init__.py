"""The log analytics lake (contract: shared/contracts/logs.md)."""
from dagster import Definitions


def definitions() -> Definitions:
    """Everything the logs domain adds to the code location."""
    from lake_assets.domains.logs.assets import (
        daily_activity,
        ingest_logs_job,
        logs_pipeline_job,
        logs_landing_sensor,
        processed_logs,
        validated_logs,
    )
    from lake_assets.domains.logs.checks import LOGS_CHECKS

    return Definitions(
        assets=[validated_logs, processed_logs, daily_activity],
        asset_checks=LOGS_CHECKS,
        jobs=[ingest_logs_job, logs_pipeline_job],
        sensors=[logs_landing_sensor],
    )
