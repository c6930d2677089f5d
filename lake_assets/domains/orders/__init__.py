"""Orders: incremental extraction from a relational database with a watermark, and
event-driven validation into silver, discarded and archive (seed 002)."""
from dagster import Definitions


def definitions(source=None) -> Definitions:
    """Everything the orders domain adds to the code location.

    ``source`` (an ``OrdersSourceResource``) defaults to the environment
    (``ORDERS_DB_URL``, ``ORDERS_STATE_DB_URL``, ...); reading it opens no connection.
    """
    from lake_assets.domains.orders.assets import (
        orders_extract_job,
        orders_extract_schedule,
        orders_landing,
        orders_landing_sensor,
        orders_validate_job,
        validate_orders,
    )
    from lake_assets.domains.orders.checks import ORDERS_CHECKS
    from lake_assets.domains.orders.source import OrdersSourceResource

    return Definitions(
        assets=[orders_landing, validate_orders],
        asset_checks=ORDERS_CHECKS,
        jobs=[orders_extract_job, orders_validate_job],
        schedules=[orders_extract_schedule],
        sensors=[orders_landing_sensor],
        resources={"orders_source": source or OrdersSourceResource.from_env()},
    )
