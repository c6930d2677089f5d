"""Orders: incremental extraction from a relational database with a watermark, and
event-driven validation into silver, discarded and archive (seed 002)."""
from dagster import Definitions

from lake_assets.domain import Domain, Example, GenerateRequest, Option
from lake_assets.settings import LakeSettings

NAME = "orders"


def definitions(settings: LakeSettings | None = None, source=None) -> Definitions:
    """Everything the orders domain adds to the code location, built with ``settings``.

    ``source`` (an ``OrdersSourceResource``) defaults to the environment
    (``ORDERS_DB_URL``, ``ORDERS_STATE_DB_URL``, ...); reading it opens no connection.
    """
    from lake_assets.domains.orders.assets import (
        build,
        orders_extract_job,
        orders_landing_sensor,
        orders_validate_job,
        validate_orders,
    )
    from lake_assets.domains.orders.checks import ORDERS_CHECKS
    from lake_assets.domains.orders.source import OrdersSourceResource

    built = build(settings or LakeSettings.from_env())
    return Definitions(
        assets=[built["orders_landing"], validate_orders],
        asset_checks=ORDERS_CHECKS,
        jobs=[orders_extract_job, orders_validate_job],
        schedules=[built["orders_extract_schedule"]],
        sensors=[orders_landing_sensor],
        resources={"orders_source": source or OrdersSourceResource.from_env()},
    )


def _tables():
    from lake_assets.domains.orders.tables import TABLES

    return TABLES


def _generate(storage, req: GenerateRequest) -> str:
    from lake_assets.domains.orders.generator import generate_order_days
    from lake_assets.domains.orders.source import configured_source_url, masked

    url = configured_source_url()
    days = generate_order_days(url, days=req.days, new_orders=req.options["orders_per_day"], seed=req.seed)
    return (f"simulated {len(days)} business day(s) in {masked(url)}: "
            f"{sum(d.rows for d in days)} row change(s), {sum(d.invalid_rows for d in days)} invalid, "
            f"{sum(d.same_ts_rows for d in days)} sharing an updated_at")


def _run(defs, instance, storage, progress, settings: LakeSettings):
    import os

    from lake_assets.domains.orders.run import OrdersRun, run_orders
    from lake_assets.domains.orders.source import sqlite_file

    path = None if os.environ.get("ORDERS_DB_URL") else sqlite_file(defs.resources["orders_source"].url)
    if path and not os.path.exists(path):
        # Nothing configured and no embedded database yet: there is no orders source to pull.
        skipped = "ORDERS_DB_URL unset, no embedded database; `lake generate orders` creates one"
        progress(f"orders: no source database ({skipped}): skipped")
        return OrdersRun(idle=skipped)
    return run_orders(defs, instance, progress=progress)


DOMAIN = Domain(
    name=NAME,
    description="Orders extracted from a database by watermark -> silver current state, discarded, archive",
    definitions=definitions, tables=_tables, generate=_generate, run=_run, sources=("orders_landing",),
    build_job="orders_validate_job",
    generate_options=(Option("--orders-per-day", int, 200, "orders: new orders per simulated day"),),
    examples=(
        Example("Orders and amount by status",
                "SELECT status, currency, count(*) AS orders, sum(amount) AS amount FROM orders.orders "
                "GROUP BY ALL ORDER BY orders DESC"),
        Example("Discarded rows by reason",
                "SELECT reason, count(*) AS n FROM orders.discarded GROUP BY reason ORDER BY n DESC"),
    ),
)
