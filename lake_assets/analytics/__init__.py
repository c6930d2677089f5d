"""Consumers of gold: the purchase-propensity features, model and predictions, and the lake report.

They read what the domains publish (through the IO manager's inputs and the SQL
resource) and never import a domain: the tables they read are named by asset key
and qualified table name, and the report draws the charts each domain declares
(:class:`~lake_assets.domain.Chart`). Registered beside the domains (``lake run``,
``lake status`` and the catalog drive it the same way), with nothing to generate.
"""
from dagster import Definitions

from lake_assets.domain import Domain, Example
from lake_assets.settings import LakeSettings

NAME = "analytics"


def _charts() -> tuple:
    """(domain, chart) for every chart a domain declares, and the asset writing each table they read."""
    from lake_assets.domains import DOMAINS

    charts = tuple((d.name, c) for d in DOMAINS.values() for c in d.report)
    assets = {t.qualified_name: t.asset for d in DOMAINS.values() for t in d.tables()}
    return charts, tuple(sorted({assets[q] for _, c in charts for q in c.requires}))


def definitions(settings: LakeSettings | None = None) -> Definitions:
    """The features, model, predictions and report assets, their checks, jobs and schedule."""
    from lake_assets.analytics import assets, checks
    from lake_assets.analytics.resources import ModelRegistryResource

    settings = settings or LakeSettings.from_env()
    built = assets.build(settings, *_charts())
    return Definitions(
        assets=built["ASSETS"],
        asset_checks=checks.build(settings),
        jobs=[built["analytics_pipeline_job"], built["train_propensity_job"], built["lake_report_job"]],
        schedules=[built["propensity_weekly_retrain_schedule"]],
        resources={"model_registry": ModelRegistryResource.from_env()},
    )


def _tables():
    from lake_assets.analytics.tables import tables

    return tables()


def _run(defs, instance, storage, progress, settings: LakeSettings):
    """Build what is stale: features of new or relabelled dates, the first model once there is
    enough history, predictions, the report. Nothing is ingested: the inputs are the domains' tables."""
    from dataclasses import dataclass

    from dagster import AssetKey

    from lake_assets.pipeline import DomainRun, build_stale_domain

    @dataclass
    class AnalyticsRun(DomainRun):
        model: str = ""

        @property
        def summary(self) -> str:
            return (f"{self.domain}: {len(self.touched)} partition(s) built in {len(self.runs)} run(s)"
                    + (f"; model: {self.model}" if self.model else ""))

    out = build_stale_domain(defs, instance, storage, AnalyticsRun(NAME), build_job="analytics_pipeline_job",
                             sources=[], progress=progress)
    event = instance.get_latest_materialization_event(AssetKey("purchase_propensity_model"))
    if event is not None:
        meta = {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}
        out.model = f"{meta.get('decision')}: {meta.get('reason')}"
    return out


DOMAIN = Domain(
    name=NAME,
    description="Consumers of gold: purchase-propensity features, model (MLflow) and predictions; the lake report",
    definitions=definitions, tables=_tables, generate=None, run=_run, build_job="analytics_pipeline_job",
    examples=(
        Example("Users most likely to buy in the next 7 days (latest scores)",
                "SELECT user_id, round(score, 3) AS score, model_version FROM analytics.purchase_propensity "
                "WHERE event_date = (SELECT max(event_date) FROM analytics.purchase_propensity) "
                "ORDER BY score DESC LIMIT 5"),
    ),
)
