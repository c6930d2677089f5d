"""The analytics room as Dagster assets: features -> model -> predictions, and the lake report.

``user_features`` (daily, by as-of date) reads a window of commerce gold through
the IO manager: the 27 days before each as-of date for its features and the 7
after for its label, so a later day's data makes the dates whose label it
completes stale (``lake run`` and the automation sensor rebuild them).
``purchase_propensity_model`` is trained on a weekly schedule or on demand, not
on every new day (:data:`~lake_assets.staleness.ON_DEMAND`); until the lake holds
enough labelled days it records why and stands in (:data:`~lake_assets.staleness.PROVISIONAL`),
so the first run with enough history trains it. ``purchase_propensity`` scores
each as-of date's users with the champion; ``lake_report`` draws the lake.
"""
import datetime as dt
import functools
import warnings
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    BackfillPolicy,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    TimeWindowPartitionMapping,
    asset,
    define_asset_job,
)
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake_assets.analytics import tables
from lake_assets.analytics.features import LABEL_DAYS, WINDOW_DAYS, user_features as build_features
from lake_assets.analytics.resources import ModelRegistryResource
from lake_assets.catalog.resource import CatalogResource
from lake_assets.catalog.sql import LakeSQLResource
from lake_assets.automation import REBUILD_ON_UPSTREAM_CHANGE, REBUILD_ON_WINDOW_CHANGE
from lake_assets.io_managers import PRESENT_ONLY, lake_table, read_partitions_present
from lake_assets.partitions import daily_partitions
from lake_assets.resources import LakeResource
from lake_assets.settings import LakeSettings
from lake_assets.staleness import ON_DEMAND, PROVISIONAL, REBUILD

GROUP = "analytics"
#: The commerce gold tables the features read (by asset key: the analytics room imports no domain).
ACTIVITY, TRANSACTIONS, EVENTS, USERS = "fact_user_activity", "fact_transactions", "fact_events", "dim_users"
#: The last labelled as-of dates held out to judge a model, and the days between training and holdout
#: (a training label looks 7 days ahead: without the gap it would see the holdout's days).
HOLDOUT_DAYS, GAP_DAYS = 7, 7
#: Fewest labelled as-of dates to train on (before the gap and the holdout).
MIN_TRAIN_DAYS = 7

FEATURES = lake_table(tables.features_table(), date_column="event_date", metrics="analytics")
PREDICTIONS = lake_table(tables.PREDICTIONS, date_column="event_date", metrics="analytics")


def _window() -> TimeWindowPartitionMapping:
    """An as-of date reads its 27 days before (features) and 7 after (the label)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # allow_nonexistent_upstream_partitions is a beta parameter
        return TimeWindowPartitionMapping(start_offset=-(WINDOW_DAYS - 1), end_offset=LABEL_DAYS,
                                          allow_nonexistent_upstream_partitions=True)


def newest_activity(activity: DataFrame) -> dt.date | None:
    """The newest day with activity in the loaded window: labels are known through it.

    The window reaches 7 days past the last as-of date, so whatever the lake holds after that
    changes nothing here. A fact partition with no rows (a day only rejected rows were routed
    to) is not a day the lake knows: hence the data's dates, not the partitions'. (A whole day
    without any activity before the newest one would hold the labels of the week before it
    back: no commerce lake is that quiet.)
    """
    return activity.agg(F.max("date")).first()[0]


@functools.lru_cache
def build(settings: LakeSettings, charts: tuple = (), chart_assets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The analytics assets, jobs and schedule for ``settings`` (made once per settings); the report
    draws ``charts`` ((domain, Chart) pairs) and depends on ``chart_assets``, the assets writing the
    tables they read."""
    partitions = daily_partitions(settings.start_date)
    window = {"partition_mapping": _window(), "metadata": {PRESENT_ONLY: True}}

    @asset(
        ins={"activity": AssetIn(ACTIVITY, **window), "transactions": AssetIn(TRANSACTIONS, **window),
             "events": AssetIn(EVENTS, **window), "users": AssetIn(USERS)},
        partitions_def=partitions, backfill_policy=BackfillPolicy.single_run(),
        io_manager_key="lake_io_manager", metadata=FEATURES, group_name=GROUP, kinds={"spark", "parquet"},
        automation_condition=REBUILD_ON_WINDOW_CHANGE,
    )
    def user_features(context: AssetExecutionContext, activity: DataFrame, transactions: DataFrame,
                      events: DataFrame, users: DataFrame) -> DataFrame:
        """Per user active in the 28 days to each as-of date: recency, frequency, money, events by type,
        sessions, tenure, country; the label once the 7 days after are in the lake (point in time)."""
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        until = newest_activity(activity)
        context.log.info(f"{len(days)} as-of date(s); activity in the lake through {until}")
        if until is None or days[0] > until:
            # A date the facts do not hold yet: nothing to describe (rebuilt when they come).
            return activity.sparkSession.createDataFrame([], tables.features_table().schema)
        return build_features(activity, transactions, events, users, start=days[0], end=min(days[-1], until),
                              known_until=until)

    @asset(
        deps=[user_features], group_name=GROUP, kinds={"spark", "mlflow"},
        metadata={REBUILD: ON_DEMAND},
        automation_condition=None,
    )
    def purchase_propensity_model(context: AssetExecutionContext, spark: LazyPySparkResource, lake: LakeResource,
                                  model_registry: ModelRegistryResource) -> MaterializeResult:
        """A Spark MLlib model of P(completed purchase in the next 7 days), trained on earlier as-of dates and
        judged on the last labelled week; it becomes the champion only when it beats the champion and the
        recency baseline on that same holdout (MLflow records every candidate and the decision)."""
        storage = lake.storage
        frame = read_partitions_present(spark.spark_session, storage, FEATURES, tables.features_table().schema)
        labelled_rows = frame.where(F.col("label").isNotNull())
        # (a few dozen dates: the one thing brought to the driver)
        labelled = [r[0] for r in labelled_rows.select("event_date").distinct().collect()]
        needed = MIN_TRAIN_DAYS + GAP_DAYS + HOLDOUT_DAYS
        why = None
        if len(labelled) < needed:
            why = (f"not trained: {len(labelled)} labelled as-of date(s) in the lake, {needed} needed "
                   f"({MIN_TRAIN_DAYS} to train, a {GAP_DAYS}-day gap, {HOLDOUT_DAYS} to judge; a date is "
                   f"labelled once the {LABEL_DAYS} days after it are in)")
        else:
            from lake_assets.analytics.model import InsufficientData

            try:
                decision = model_registry.registry(storage).train_and_register(
                    labelled_rows, holdout_days=HOLDOUT_DAYS, gap_days=GAP_DAYS)
            except InsufficientData as exc:
                why = f"not trained: {exc}"
        if why is not None:
            # Stands in until the data allows a model: the next change of the features retries.
            context.log.info(why)
            return MaterializeResult(metadata={
                PROVISIONAL: True, "decision": "insufficient_data", "reason": why, "labelled_dates": len(labelled)})
        verdict = "promoted" if decision.promoted else "rejected"
        context.log.info(f"model version {decision.version}: {verdict} ({decision.reason})")
        return MaterializeResult(metadata={
            PROVISIONAL: False, "decision": verdict, "reason": decision.reason,
            "model_version": decision.version,
            "champion_version": decision.champion if decision.champion is not None else -1,
            "labelled_dates": len(labelled),
            **{f"holdout_{k}": float(v) for k, v in decision.metrics.items()},
            **{f"baseline_{k}": float(v) for k, v in decision.baseline_metrics.items()},
            "mlflow_run_id": decision.run_id,
        })

    @asset(
        ins={"features": AssetIn("user_features")}, deps=[purchase_propensity_model],
        partitions_def=partitions, backfill_policy=BackfillPolicy.single_run(),
        io_manager_key="lake_io_manager", metadata=PREDICTIONS, group_name=GROUP, kinds={"spark", "parquet"},
        automation_condition=REBUILD_ON_UPSTREAM_CHANGE,
    )
    def purchase_propensity(context: AssetExecutionContext, features: DataFrame,
                            lake: LakeResource, model_registry: ModelRegistryResource) -> DataFrame:
        """Every user of the as-of dates' features scored by the champion model; no rows (and a note in the
        metadata) while there is no champion yet."""
        from lake_assets.analytics.model import score

        champion = model_registry.registry(lake.storage).load_champion()
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
        if champion is None:
            context.add_output_metadata({"model_version": -1, "note": "no champion model yet: nothing scored"})
            return features.sparkSession.createDataFrame([], tables.PREDICTIONS_SCHEMA)
        version, model = champion
        context.add_output_metadata({"model_version": version})
        scored = score(model, features)
        return scored.select(
            "user_id", "event_date", F.col("score").cast("double").alias("score"),
            F.lit(version).cast("int").alias("model_version"), F.lit(now).cast("timestamp").alias("scored_at"))

    lake_report = build_report_asset(charts, chart_assets, [purchase_propensity_model, purchase_propensity],
                                     settings.fresh_by_hour_utc)
    assets = [user_features, purchase_propensity_model, purchase_propensity, lake_report]
    analytics_pipeline_job = define_asset_job(
        "analytics_pipeline_job", selection=assets,
        description="Build the purchase-propensity features and predictions (and the first model once the lake "
                    "holds enough history) for a range of dates, and the lake report.")
    lake_report_job = define_asset_job("lake_report_job", selection=[lake_report],
                                       description="Rebuild the lake report (`lake report`).")
    train_job = define_asset_job(
        "train_propensity_job", selection=[purchase_propensity_model],
        description="Train a challenger purchase-propensity model; it becomes the champion only if it beats the "
                    "champion and the recency baseline on the same holdout.")
    weekly = ScheduleDefinition(
        name="propensity_weekly_retrain_schedule", job=train_job, cron_schedule="0 4 * * 1",
        execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING,
        description="Mondays 04:00 UTC: retrain the purchase-propensity model (the daily run then rescores).")
    return {"ASSETS": assets, "analytics_pipeline_job": analytics_pipeline_job, "train_propensity_job": train_job,
            "lake_report_job": lake_report_job, "lake_report": lake_report,
            "propensity_weekly_retrain_schedule": weekly, "user_features": user_features,
            "purchase_propensity_model": purchase_propensity_model, "purchase_propensity": purchase_propensity}


def build_report_asset(charts: tuple, chart_assets: tuple[str, ...], model_assets: list, fresh_by_hour_utc: int):
    """``lake_report``: every domain's charts, data quality, freshness and the model, as one HTML file."""

    @asset(
        deps=[*(AssetKey.from_user_string(a) for a in chart_assets), *model_assets],
        group_name=GROUP, kinds={"html", "plotly"}, automation_condition=REBUILD_ON_UPSTREAM_CHANGE,
        metadata={"lake/location": tables.REPORT_FILE},
    )
    def lake_report(context: AssetExecutionContext, lake: LakeResource, sql: LakeSQLResource,
                    catalog: CatalogResource, model_registry: ModelRegistryResource) -> MaterializeResult:
        """One self-contained HTML page (plotly.js inlined: opens offline, from a file or an S3 static site):
        each domain's charts, reject and quarantine rates over time, each table's freshness and last run,
        the champion model against its baseline and the latest score distribution. Read through the SQL
        resource, as a person would query the lake."""
        storage = lake.storage
        built = write_report(context.instance, storage, sql, catalog, model_registry, charts, fresh_by_hour_utc)
        return MaterializeResult(metadata={
            **built.summary.metadata(), "dagster/uri": MetadataValue.path(storage.uri(tables.REPORT_FILE)),
            "bytes": len(built.html.encode())})

    return lake_report


def write_report(instance, storage, sql, catalog, model_registry, charts, fresh_by_hour_utc: int):
    """Gather what the report shows, render it, publish it at :data:`~tables.REPORT_FILE` (one write)."""
    from lake_assets.analytics import report
    from lake_assets.quality.metrics import ZONE as METRICS_ZONE

    registered = catalog.registered()
    by_domain: dict[str, list] = {}
    for domain, chart in charts:
        by_domain.setdefault(domain, []).append(chart)
    built = report.build_report(
        query=sql.query, charts=by_domain, available=[n for n, t in registered.items() if t.rows],
        metrics_glob=report.metrics_glob(storage.uri(METRICS_ZONE)) if storage.list_files(METRICS_ZONE) else None,
        freshness=table_statuses(instance, fresh_by_hour_utc),
        model=model_registry.registry(storage).summary() if model_registry.has_store() else None,
        predictions_table=tables.PREDICTIONS.qualified_name, lake_root=storage.root_uri)
    storage.write_bytes(tables.REPORT_FILE, built.html.encode())
    return built


def table_statuses(instance, fresh_by_hour_utc: int) -> list:
    """Per declared table: its asset's last materialization, that run's status, and its freshness promise."""
    from lake_assets.analytics.report import TableStatus
    from lake_assets.definitions import registry
    from lake_assets.quality.freshness import FRESH_ZONES, freshness_verdict

    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for t in registry():
        key = AssetKey.from_user_string(t.asset)
        event = instance.get_latest_materialization_event(key)
        if event is None:
            continue  # a table never written (a domain not in use) is not news
        run = instance.get_run_by_id(event.run_id)
        fresh = ""
        if t.zone in FRESH_ZONES:
            fresh = "passed" if freshness_verdict(instance, key, t.daily, fresh_by_hour_utc, now).passed \
                else "failed"
        out.append(TableStatus(
            t.qualified_name, t.zone, dt.datetime.fromtimestamp(event.timestamp, dt.timezone.utc),
            event.run_id, run.status.value if run is not None else "", fresh))
    return out
