"""The e-commerce lake (contract: shared/contracts/commerce.md)."""
from dagster import Definitions

from lake_assets.domain import Chart, Domain, Example, GenerateRequest, Option
from lake_assets.settings import LakeSettings

NAME = "commerce"


def definitions(settings: LakeSettings | None = None) -> Definitions:
    """Everything the commerce domain adds to the code location, built with ``settings``."""
    from lake_assets.domains.commerce import assets, checks

    settings = settings or LakeSettings.from_env()
    a, c = assets.build(settings), checks.build(settings)
    return Definitions(
        assets=[*a["BRONZE"].values(), *a["SILVER_ASSETS"].values(), *a["GOLD_ASSETS"]],
        asset_checks=c["COMMERCE_CHECKS"],
        jobs=[a["ingest_commerce_job"], a["commerce_pipeline_job"]],
        sensors=[a["commerce_landing_sensor"]],
    )


def _tables():
    from lake_assets.domains.commerce.tables import TABLES

    return TABLES


def _generate(storage, req: GenerateRequest) -> str:
    from lake_assets.domains.commerce.generator import generate_commerce

    gen = generate_commerce(storage.write_bytes, start=req.start, days=req.days, users=req.options["users"],
                            events_per_day=req.records_per_day,
                            transactions_per_day=max(1, req.records_per_day // 5), bad_share=req.bad_share,
                            bad_files=req.bad_files > 0, seed=req.seed, now=req.now)
    rows = ", ".join(f"{n} {d}" for d, n in gen.rows.items())
    return (f"wrote {gen.files} raw file(s) ({rows}; {len(gen.bad_files)} unreadable) "
            f"for {req.start}..{req.end} under {storage.uri('raw')}")


def _landing():
    from lake_assets.domains.commerce.assets import LANDING

    return LANDING


def _run(defs, instance, storage, progress, settings: LakeSettings):
    from lake_assets.pipeline import run_landing_domain

    # Neighbours whose deduplication winners a new record may change are stale by silver's
    # window dependency on bronze: the run rebuilds them with the rest.
    return run_landing_domain(defs, instance, storage, _landing(), progress=progress)


DOMAIN = Domain(
    name=NAME,
    description="Users, events and transactions -> bronze -> silver (+ quarantine) -> dims, facts and marts",
    definitions=definitions, tables=_tables, generate=_generate, run=_run, landing=_landing,
    generate_options=(Option("--users", int, 200, "commerce: distinct users"),),
    # Five weeks: the purchase-propensity model needs 28 days of history, labels 7 days ahead and a holdout.
    demo_span=(35, 400),
    report=(
        # Revenue is never summed across currencies: one line per (country, currency).
        Chart("Completed revenue per country, by currency",
              "SELECT coalesce(country, '(unknown)') AS country, currency, sum(revenue) AS revenue "
              "FROM commerce.daily_revenue GROUP BY ALL ORDER BY country, currency",
              "bar", x="country", y=("revenue",), color="currency", requires=("commerce.daily_revenue",),
              description="Over every day in the lake; a user's country is the one they had at the purchase."),
        Chart("Completed orders per day", "SELECT date, sum(orders) AS orders FROM commerce.daily_revenue "
              "GROUP BY date ORDER BY date", "line", x="date", y=("orders",), requires=("commerce.daily_revenue",)),
        Chart("Active users per country per day",
              "SELECT date, coalesce(country, '(unknown)') AS country, active_users FROM commerce.daily_active_users "
              "ORDER BY date",
              "bar", x="date", y=("active_users",), color="country", requires=("commerce.daily_active_users",)),
    ),
    examples=(
        Example("Revenue by country",
                "SELECT country, currency, sum(revenue) AS revenue, sum(orders) AS orders "
                "FROM commerce.daily_revenue GROUP BY ALL ORDER BY revenue DESC LIMIT 10"),
        Example("Quarantined rows by dataset and reason",
                "SELECT 'events' AS dataset, reason, count(*) AS n FROM commerce.quarantine_events GROUP BY ALL "
                "UNION ALL SELECT 'users', reason, count(*) FROM commerce.quarantine_users GROUP BY ALL "
                "UNION ALL SELECT 'transactions', reason, count(*) FROM commerce.quarantine_transactions "
                "GROUP BY ALL ORDER BY n DESC"),
        Example("Best customers by lifetime revenue",
                "SELECT user_id, currency, orders, lifetime_revenue FROM commerce.user_ltv "
                "ORDER BY lifetime_revenue DESC LIMIT 5"),
    ),
)
