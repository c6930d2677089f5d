"""The e-commerce lake (contract: shared/contracts/commerce.md)."""
from dagster import Definitions


def definitions() -> Definitions:
    """Everything the commerce domain adds to the code location."""
    from lake_assets.domains.commerce.assets import (
        BRONZE,
        GOLD_ASSETS,
        SILVER_ASSETS,
        commerce_landing_sensor,
        commerce_pipeline_job,
        ingest_commerce_job,
    )
    from lake_assets.domains.commerce.checks import COMMERCE_CHECKS

    return Definitions(
        assets=[*BRONZE.values(), *SILVER_ASSETS.values(), *GOLD_ASSETS],
        asset_checks=COMMERCE_CHECKS,
        jobs=[ingest_commerce_job, commerce_pipeline_job],
        sensors=[commerce_landing_sensor],
    )
