"""The e-commerce lake: raw -> bronze -> silver (+ quarantine) -> gold dims, facts and marts.

Bronze is filled by the ingestion job (sensor-driven): every readable file is
copied unchanged to ``bronze/<dataset>/`` and its records routed by event date
to ``bronze/_records/`` (what silver reads); unreadable files go whole to
``quarantine/<dataset>/_files/``. Silver and the time-grained gold tables are
daily partitions by ``event_date``; dims and ``user_ltv`` are full refreshes.
Each Spark asset is built per dataset from its :class:`DatasetSpec`.
"""

import datetime as dt
import functools
import warnings
from typing import Any

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Output,
    TimeWindowPartitionMapping,
    asset,
    define_asset_job,
    multi_asset,
)
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake_assets.automation import REBUILD_ON_UPSTREAM_CHANGE, REBUILD_ON_WINDOW_CHANGE
from lake_assets.domains.commerce import gold, silver, tables
from lake_assets.domains.commerce.spec import DATASETS, DatasetSpec
from lake_assets.ingest.jobs import LandingSpec, build_ingest_job, build_landing_sensor
from lake_assets.ingest.router import Zones
from lake_assets.ingest.tabular import tabular_format
from lake_assets.ingest.validated import read_validated_text, validated_files
from lake_assets.io_managers import PRESENT_ONLY, lake_table, read_partitions_present
from lake_assets.partitions import daily_partitions
from lake_assets.quality.rules import record_text_for_rejects
from lake_assets.resources import LakeResource
from lake_assets.settings import LakeSettings, module_built_from_env
from lake_assets.spark import kept

GROUP_BRONZE, GROUP_SILVER, GROUP_GOLD = "commerce_bronze", "commerce_silver", "commerce_gold"

#: raw/<dataset>/ -> any of the contract's formats.
FORMATS = {name: tabular_format(name) for name in DATASETS}
ZONES = Zones(
    raw="raw",
    validated="bronze/_records/{format}",
    archive="bronze/{format}",
    rejected_files="quarantine/{format}/_files",
    manifests="bronze/_manifests/{format}",
    archive_name="{stem}_{token}{ext}",
)

LANDING = LandingSpec(
    name="commerce",
    formats=FORMATS,
    date_of={name: functools.partial(silver.routing_date, spec) for name, spec in DATASETS.items()},
    validated_asset={name: AssetKey(f"bronze_{name}") for name in DATASETS},
    zones=ZONES,
)

QUARANTINE_TABLES = {name: lake_table(tables.QUARANTINE[name], date_column="_partition_date")
                     for name in DATASETS}
SILVER_TABLES = {
    name: lake_table(tables.SILVER[name], date_column="_event_date",
                     metrics=name, rejects=tables.QUARANTINE[name], rules=spec.rule_names)
    for name, spec in DATASETS.items()
}
#: Daily gold tables pick a row's partition from ``_event_date`` (dropped) or from a date column kept.
_GOLD_DATE_COLUMNS = {"fact_user_activity": "date", "daily_revenue": "date", "daily_active_users": "date"}
GOLD_TABLES = {name: lake_table(t, date_column=_GOLD_DATE_COLUMNS.get(name, "_event_date"), metrics="gold")
               for name, t in tables.GOLD.items()}


def _bronze_window(window: int):
    """Silver of a date reads bronze of the dates around it (deduplication), so depends on them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # allow_nonexistent_upstream_partitions is a beta parameter
        return TimeWindowPartitionMapping(start_offset=-window, end_offset=window,
                                          allow_nonexistent_upstream_partitions=True)


def window_days(days: list[dt.date], settings: LakeSettings) -> list[dt.date]:
    """The dates whose bronze records a build of ``days`` reads: each day and its dedup window
    (``settings.dedup_window_days`` either side: a re-delivery whose timestamp moved across
    midnight meets its original whatever the build's range)."""
    k = settings.dedup_window_days
    return sorted({d + dt.timedelta(days=i) for d in days for i in range(-k, k + 1)
                   if d + dt.timedelta(days=i) >= settings.start_date})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def build_silver(spec: DatasetSpec, settings: LakeSettings, bronze: AssetSpec) -> AssetsDefinition:
    """silver_<dataset> and quarantine_<dataset> for a range of dates: one parse, one Spark job each."""
    name = spec.name

    @multi_asset(
        name=f"build_silver_{name}",
        outs={
            f"quarantine_{name}": AssetOut(
                key=AssetKey(f"quarantine_{name}"), io_manager_key="lake_io_manager", group_name=GROUP_SILVER,
                metadata=QUARANTINE_TABLES[name], kinds={"spark", "parquet"},
                automation_condition=REBUILD_ON_WINDOW_CHANGE,
                description=f"Every {name} row that broke a rule (or lost deduplication): the first rule "
                            f"(reason), all of them (reasons), the original record as JSON and its lineage.",
            ),
            f"silver_{name}": AssetOut(
                key=AssetKey(f"silver_{name}"), io_manager_key="lake_io_manager", group_name=GROUP_SILVER,
                metadata=SILVER_TABLES[name], kinds={"spark", "parquet"},
                automation_condition=REBUILD_ON_WINDOW_CHANGE,
                description=f"Canonical, typed, deduplicated {name} (silver/{name}/event_date=...), with "
                            "_extra (unknown columns as JSON) and lineage.",
            ),
        },
        deps=[AssetDep(bronze, partition_mapping=_bronze_window(settings.dedup_window_days))],
        partitions_def=daily_partitions(settings.start_date),
        backfill_policy=BackfillPolicy.single_run(),
    )
    def _silver(context: AssetExecutionContext, spark: LazyPySparkResource, lake: LakeResource):
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        storage = lake.storage
        # The run's dates and their dedup window: neighbours decide winners, only the run's dates are written.
        files = validated_files(storage, window_days(days, settings), (FORMATS[name],), ZONES)
        own = [f for f in files if f.day in set(days)]
        context.log.info(f"{len(days)} partition(s): {len(own)} bronze record file(s), "
                         f"{len(files) - len(own)} more within {settings.dedup_window_days} day(s) for deduplication")
        records = read_validated_text(spark.spark_session, storage, files, numbered=True)
        # Two writes (quarantine, silver) read the parse: parse once.
        parsed = silver.parse(records, spec, settings.start_date)
        now = _now()
        with kept(record_text_for_rejects(parsed.where(F.col("routed_date").isin(*days)))) as parsed:
            # Quarantine first: silver's metrics read the quarantine this run just wrote.
            yield Output(silver.quarantined_rows(parsed, now), output_name=f"quarantine_{name}")
            yield Output(silver.silver_rows(parsed, spec, now), output_name=f"silver_{name}",
                         metadata={"bronze_files": len(own), "records_read": sum(f.records for f in own)})

    return _silver


SILVER_KEYS = {name: AssetKey(f"silver_{name}") for name in DATASETS}

_GOLD_KW = dict(io_manager_key="lake_io_manager", group_name=GROUP_GOLD, kinds={"spark", "parquet"},
                automation_condition=REBUILD_ON_UPSTREAM_CHANGE)


@asset(deps=[SILVER_KEYS["users"]], metadata=GOLD_TABLES["dim_users"], **_GOLD_KW)
def dim_users(spark: LazyPySparkResource, lake: LakeResource) -> DataFrame:
    """SCD type 2 of users from every silver version (late and out-of-order ones included); key -1 = unknown."""
    users = read_partitions_present(spark.spark_session, lake.storage, SILVER_TABLES["users"],
                                    silver.silver_schema(DATASETS["users"]))
    return gold.dim_users(users)


@asset(metadata=GOLD_TABLES["dim_country"], **_GOLD_KW)
def dim_country(spark: LazyPySparkResource) -> DataFrame:
    """ISO 3166 countries (pycountry) with UN regions (country_converter)."""
    return gold.dim_country(spark.spark_session)


@asset(metadata=GOLD_TABLES["dim_status"], **_GOLD_KW)
def dim_status(spark: LazyPySparkResource) -> DataFrame:
    """Every allowed user status, transaction status and event type, described."""
    return gold.dim_status(spark.spark_session)


@asset(deps=["fact_transactions"], metadata=GOLD_TABLES["user_ltv"], **_GOLD_KW)
def user_ltv(spark: LazyPySparkResource, lake: LakeResource) -> DataFrame:
    """(user_id, currency) over all time, rebuilt whole from every fact_transactions partition."""
    tx = read_partitions_present(spark.spark_session, lake.storage, GOLD_TABLES["fact_transactions"],
                                 gold.FACT_TRANSACTIONS)
    return gold.user_ltv(tx)


@asset(deps=["fact_events", "fact_transactions"], metadata=GOLD_TABLES["dim_date"], **_GOLD_KW)
def dim_date(spark: LazyPySparkResource, lake: LakeResource) -> DataFrame:
    """Every date from the first to the last fact date."""
    session, storage = spark.spark_session, lake.storage
    ev = read_partitions_present(session, storage, GOLD_TABLES["fact_events"], gold.FACT_EVENTS)
    tx = read_partitions_present(session, storage, GOLD_TABLES["fact_transactions"], gold.FACT_TRANSACTIONS)
    times = ev.select(F.col("ts").alias("t")).unionByName(tx.select(F.col("created_at").alias("t")))
    return gold.dim_date(times)


@functools.lru_cache
def build(settings: LakeSettings) -> dict[str, Any]:
    """The commerce domain's partitioned assets, jobs and sensor for ``settings`` (made once per settings):
    partitions from ``settings.start_date``, silver's dedup window of ``settings.dedup_window_days``."""
    partitions = daily_partitions(settings.start_date)
    bronze = {
        name: AssetSpec(
            f"bronze_{name}", partitions_def=partitions, group_name=GROUP_BRONZE,
            kinds={"s3", "json", "csv", "parquet"},
            description=f"Readable raw {name} files, copied unchanged into bronze/{name}/ and their records "
                        f"routed by event date (bronze/_records/{name}/). Written by ingest_commerce_job "
                        "(sensor-driven), not materialized directly.",
            metadata={"lake/prefix": f"bronze/{name}"},
        )
        for name in DATASETS
    }
    ingest_commerce_job = build_ingest_job(LANDING, settings.start_date, settings.retry_delay_seconds)
    commerce_landing_sensor = build_landing_sensor(LANDING, ingest_commerce_job)
    silver_assets = {name: build_silver(spec, settings, bronze[name]) for name, spec in DATASETS.items()}
    _DAILY_KW = dict(partitions_def=partitions, backfill_policy=BackfillPolicy.single_run())


    @asset(ins={"events": AssetIn(SILVER_KEYS["events"]), "dim_users": AssetIn("dim_users")},
           metadata=GOLD_TABLES["fact_events"], **_GOLD_KW, **_DAILY_KW)
    def fact_events(events: DataFrame, dim_users: DataFrame) -> DataFrame:
        """One row per event, with the user version valid at its time (point in time)."""
        return gold.fact_events(events, dim_users)


    @asset(ins={"transactions": AssetIn(SILVER_KEYS["transactions"]), "dim_users": AssetIn("dim_users")},
           metadata=GOLD_TABLES["fact_transactions"], **_GOLD_KW, **_DAILY_KW)
    def fact_transactions(transactions: DataFrame, dim_users: DataFrame) -> DataFrame:
        """One row per transaction (refunds are their own), with the user version valid at its time."""
        return gold.fact_transactions(transactions, dim_users)


    # Either fact may have no partition on a date: events and transactions arrive apart, and a date
    # holding only one of them never gets the other's (nothing feeds it). What is missing is no rows;
    # when it arrives, its fact is built and this partition is stale again.
    _either = {"metadata": {PRESENT_ONLY: True}}

    @asset(ins={"fact_events": AssetIn("fact_events", **_either),
                "fact_transactions": AssetIn("fact_transactions", **_either)},
           metadata=GOLD_TABLES["fact_user_activity"], **_GOLD_KW, **_DAILY_KW)
    def fact_user_activity(fact_events: DataFrame, fact_transactions: DataFrame) -> DataFrame:
        """(user_id, date): events, distinct sessions, completed purchases (a date may hold only one kind)."""
        return gold.fact_user_activity(fact_events, fact_transactions)


    @asset(ins={"fact_transactions": AssetIn("fact_transactions"), "dim_users": AssetIn("dim_users")},
           metadata=GOLD_TABLES["daily_revenue"], **_GOLD_KW, **_DAILY_KW)
    def daily_revenue(fact_transactions: DataFrame, dim_users: DataFrame) -> DataFrame:
        """(date, country, currency): completed revenue and orders, refunds, average order value."""
        return gold.daily_revenue(fact_transactions, dim_users)


    @asset(ins={"fact_events": AssetIn("fact_events"), "dim_users": AssetIn("dim_users")},
           metadata=GOLD_TABLES["daily_active_users"], **_GOLD_KW, **_DAILY_KW)
    def daily_active_users(fact_events: DataFrame, dim_users: DataFrame) -> DataFrame:
        """(date, country): distinct users with an event, counted in the country they had at each event."""
        return gold.daily_active_users(fact_events, dim_users)


    gold_assets = [dim_users, dim_country, dim_status, dim_date, fact_events, fact_transactions,
                   fact_user_activity, daily_revenue, daily_active_users, user_ltv]

    # Silver and gold for a range of dates, with the full refreshes they feed: what `lake run` runs.
    commerce_pipeline_job = define_asset_job(
        "commerce_pipeline_job",
        selection=[k for a in silver_assets.values() for k in a.keys] + [a.key for a in gold_assets],
        description="Build commerce silver (+ quarantine), dims, facts and marts for a range of dates.",
    )

    return {"START_DATE": settings.start_date, "DEDUP_WINDOW_DAYS": settings.dedup_window_days, "BRONZE": bronze,
            "ingest_commerce_job": ingest_commerce_job, "commerce_landing_sensor": commerce_landing_sensor,
            "SILVER_ASSETS": silver_assets, "GOLD_ASSETS": gold_assets, "commerce_pipeline_job": commerce_pipeline_job,
            "fact_events": fact_events, "fact_transactions": fact_transactions,
            "fact_user_activity": fact_user_activity, "daily_revenue": daily_revenue,
            "daily_active_users": daily_active_users}


#: Module-level names (``GOLD_ASSETS``, ``fact_events``, ...) are the build with the environment's
#: settings, made on first use; importing this module reads no setting.
__getattr__ = module_built_from_env(build)
