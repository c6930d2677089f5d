"""Orders as Dagster: the scheduled extraction, the landing sensor, the validation assets.

* ``orders_extract_job`` (on ``orders_extract_schedule``, hourly by default)
  materializes ``orders_landing``: what changed in the source since the watermark,
  landed in ``bronze/landing/orders/extracted_at=.../`` (the seed's Glue job 1).
* ``orders_landing_sensor`` sees each committed landing set (its manifest) and
  starts ``orders_validate_job`` for it (the seed's S3 event + Lambda), which
  materializes ``orders_silver``, ``orders_discarded`` and ``orders_archive``
  (the seed's Glue job 2). Sets are validated one run at a time, oldest first:
  each run rewrites silver partitions, and two at once could overwrite each
  other's merge.
"""

import functools
import time

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    Config,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    define_asset_job,
    multi_asset,
    schedule,
    sensor,
)
from dagster_pyspark import LazyPySparkResource
from pydantic import Field

from lake_assets.catalog.resource import CatalogResource
from lake_assets.domains.orders import tables, zones
from lake_assets.domains.orders.extract import extract_orders
from lake_assets.domains.orders.source import OrdersSourceResource, masked
from lake_assets.ingest.jobs import RequestLedger
from lake_assets.lake import errors
from lake_assets.lake.layout import join
from lake_assets.quality import metrics
from lake_assets.resources import LakeResource
from lake_assets.settings import LakeSettings, module_built_from_env

GROUP = "orders"
DATASET = "orders"
PENDING = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
           DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]



class ValidateOrdersConfig(Config):
    """Which landing set to validate; empty: every committed set waiting in the landing zone, oldest first."""

    landing_set: str = Field(default="", description="e.g. extracted_at=2024-03-01T100000.000000Z")


SILVER_SPEC = AssetSpec(
    "orders_silver", deps=["orders_landing"], group_name=GROUP, kinds={"spark", "parquet"},
    metadata=tables.SILVER.asset_metadata(),
    description="Silver: the current state of every valid order (one row per order_id), partitioned "
    "silver/staging/orders/order_date=YYYY-MM-DD/. What analysts query.")
DISCARDED_SPEC = AssetSpec(
    "orders_discarded", deps=["orders_landing"], group_name=GROUP, kinds={"spark", "parquet"},
    metadata=tables.DISCARDED.asset_metadata(),
    description="Every extracted row that broke a rule, with reason and reasons, one file per landing set "
    "(discarded/orders/extracted_at=.../).")
ARCHIVE_SPEC = AssetSpec(
    "orders_archive", deps=["orders_landing"], group_name=GROUP, kinds={"parquet"},
    metadata=tables.ARCHIVE.asset_metadata(),
    description="The landing sets, unchanged (archive/orders/extracted_at=.../): the source of truth.")


@multi_asset(name="validate_orders", specs=[SILVER_SPEC, DISCARDED_SPEC, ARCHIVE_SPEC], can_subset=False,
             pool="orders_silver")
def validate_orders(context: AssetExecutionContext, config: ValidateOrdersConfig, spark: LazyPySparkResource,
                    lake: LakeResource, catalog: CatalogResource):
    """Route landing sets: valid rows into silver's current state, the rest discarded, the set archived."""
    from lake_assets.domains.orders.validate import RULE_NAMES, validate_set

    storage = lake.storage
    names = [config.landing_set] if config.landing_set else zones.committed_sets(storage)
    session = spark.spark_session
    results = [validate_set(session, storage, n, log=context.log.info) for n in names]
    rows = sum(r.rows for r in results)
    valid = sum(r.valid for r in results)
    discarded = sum(r.discarded for r in results)
    # Each silver partition as the last set to touch it left it: rows, or 0 when emptied (deleted).
    rows_by_day: dict[str, int] = {}
    for r in results:
        rows_by_day.update({d: 0 for d in r.silver_removed})
        rows_by_day.update(r.silver_rows)
    written = sorted(d for d, n in rows_by_day.items() if n)
    removed = sorted(d for d, n in rows_by_day.items() if not n)
    run_id = context.run.run_id

    # Silver's partitions through the lake's one metrics path (rows and null rates from the footers).
    silver_metrics = metrics.record(storage, dataset=DATASET, asset="orders_silver", run_id=run_id, per_partition={
        day: metrics.files_metrics(storage, {"": zones.silver_file(day)}) for day in written}) if written else {}
    # The catalog learns what this run published (partitions rewritten, emptied, sets discarded and
    # archived), with the tables' schemas as the source typed them (text or integer keys, extra columns).
    if results:
        last = results[-1]
        catalog.register(storage, tables.with_schema(tables.SILVER, last.silver_schema), {
            **{f"order_date={d}": 0 for d in removed},
            **{f"order_date={d}": rows_by_day[d] for d in written}})
        catalog.register(storage, tables.with_schema(tables.DISCARDED, last.discarded_schema),
                         {r.set_name: r.discarded for r in results})
        catalog.register(storage, tables.with_schema(tables.ARCHIVE, last.archive_schema),
                         {r.set_name: r.rows for r in results})
    sets = MetadataValue.json([r.set_name for r in results])
    yield MaterializeResult(asset_key=SILVER_SPEC.key, metadata={
        "landing_sets": sets, "partitions_rewritten": MetadataValue.json(written),
        "partitions_emptied": MetadataValue.json(removed), "dagster/uri": MetadataValue.path(storage.uri(zones.SILVER)),
        # Rows of the partitions this run rewrote (what the UI plots per materialization).
        "dagster/row_count": sum(rows_by_day[d] for d in written),
        **silver_metrics, "metrics/landed_rows": rows, "metrics/valid_rows": valid})

    # The sets' discarded rows against every row landed: the same reject numbers as any quarantine.
    discarded_files = [p for p in (zones.discarded_file(r.set_name) for r in results) if storage.is_file(p)]
    disc_metrics = metrics.record(storage, dataset=DATASET, asset="orders_discarded", run_id=run_id, per_partition={
        None: metrics.reject_metrics(storage, rows - discarded, discarded_files, RULE_NAMES)})
    yield MaterializeResult(asset_key=DISCARDED_SPEC.key, metadata={
        "landing_sets": sets, "dagster/row_count": discarded,
        "reasons": MetadataValue.json({k.removeprefix("metrics/rule."): v for k, v in disc_metrics.items()
                                       if k.startswith("metrics/rule.") and v}),
        "dagster/uri": MetadataValue.path(storage.uri(zones.DISCARDED)), **disc_metrics})

    arch_metrics = metrics.record(storage, dataset=DATASET, asset="orders_archive", run_id=run_id, per_partition={
        None: [metrics.Metric("rows", rows), metrics.Metric("files", sum(len(r.archived) for r in results))]})
    yield MaterializeResult(asset_key=ARCHIVE_SPEC.key, metadata={
        "landing_sets": sets, "dagster/row_count": rows,
        "dagster/uri": MetadataValue.path(storage.uri(zones.ARCHIVE)), **arch_metrics})


orders_extract_job = define_asset_job(
    "orders_extract_job", selection=["orders_landing"], tags={"lake/domain": "orders"},
    description="Land what changed in the orders source since the watermark, then advance it.")
orders_validate_job = define_asset_job(
    "orders_validate_job", selection=["orders_silver", "orders_discarded", "orders_archive"],
    tags={"lake/domain": "orders"},
    description="Validate landing sets: silver (current valid orders), discarded (with reasons), archive.")


def _committed_by(storage, run_id: str) -> str | None:
    """The landing set this run committed (its manifest names the run), if any is still waiting."""
    for name in reversed(zones.committed_sets(storage)):
        if zones.read_manifest(storage, zones.landing_folder(name)).get("run_id") == run_id:
            return name
    return None


def _pending_run(instance, job_name: str) -> str | None:
    records = instance.get_run_records(RunsFilter(job_name=job_name, statuses=PENDING), limit=1)
    return records[0].dagster_run.run_id if records else None


@functools.lru_cache
def build(settings: LakeSettings) -> dict:
    """What orders builds from settings: the extraction asset (its retries wait
    ``settings.retry_delay_seconds`` first) and its schedule (``settings.orders_extract_cron``,
    UTC; switched off when ``settings.orders_schedule_running`` is false)."""

    @asset(
        name="orders_landing",
        group_name=GROUP,
        kinds={"sql", "parquet"},
        metadata={"lake/prefix": zones.LANDING},
        retry_policy=errors.transient_retry_policy(settings.retry_delay_seconds),
        description="Bronze: the orders rows changed since the watermark, one folder per extraction run "
        "(bronze/landing/orders/extracted_at=.../part-*.parquet + _manifest.json). The watermark "
        "(etl_watermarks) moves only after the set is committed. A dropped or refused database "
        "connection, or an S3 fault, is retried (the extraction is idempotent); refused credentials "
        "or a source that cannot be landed fail at once.",
    )
    def orders_landing(context: AssetExecutionContext, lake: LakeResource,
                       orders_source: OrdersSourceResource) -> MaterializeResult:
        """Incremental extraction: everything the source changed since the mark, landed at least once."""
        storage = lake.storage
        try:
            r = extract_orders(orders_source, storage, run_id=context.run.run_id, log=context.log.info)
        except Exception as exc:
            if errors.permanent(exc) and not isinstance(exc, Failure):  # a bucket refused: no retry helps
                raise Failure(f"orders extraction cannot write to {storage.uri()}: {exc}",
                              allow_retries=False) from exc
            landed = _committed_by(storage, context.run.run_id)
            if landed:
                # The set is committed but the mark did not move: a retry of this step would land the
                # same rows again as another set. The next run re-reads from the old mark (at least
                # once, see extract.py) and validation keeps the newest version of each order.
                raise Failure(f"landing set {landed} was committed but the watermark was not moved ({exc}); "
                              "not retried: the next run lands its rows again and validation keeps each "
                              "order once", allow_retries=False) from exc
            raise
        found = metrics.files_metrics(storage, {"": r.files}) if r.files else [metrics.Metric("rows", 0)]
        found += [metrics.Metric("read_rows", r.read_rows), metrics.Metric("skipped_rows", r.skipped_rows),
                  metrics.Metric("files", len(r.files))]
        landing_metrics = metrics.record(storage, dataset=DATASET, asset="orders_landing",
                                         run_id=context.run.run_id, per_partition={None: found})
        return MaterializeResult(metadata={
            "dagster/row_count": r.rows,
            "landing_set": r.set_name or "",
            "dagster/uri": MetadataValue.path(storage.uri(r.landing or zones.LANDING)),
            "watermark_from": str(r.previous_mark or ""),
            "watermark_to": str(r.new_mark or ""),
            "window": f"{r.window_low or '-inf'} .. {r.window_high}",
            "lag_seconds": orders_source.lag_seconds,
            "source": masked(orders_source.url),
            **landing_metrics,
        })


    @schedule(name="orders_extract_schedule", job=orders_extract_job, cron_schedule=settings.orders_extract_cron,
              execution_timezone="UTC",
              default_status=DefaultScheduleStatus.RUNNING if settings.orders_schedule_running
              else DefaultScheduleStatus.STOPPED,
              description="Incremental orders extraction (ORDERS_EXTRACT_CRON, default hourly); a tick is "
                          "skipped while the previous extraction still runs.")
    def orders_extract_schedule(context: ScheduleEvaluationContext):
        busy = _pending_run(context.instance, "orders_extract_job")
        if busy:
            return SkipReason(f"extraction run {busy} has not finished")
        return RunRequest(tags={"lake/trigger": "schedule"})

    return {"orders_landing": orders_landing, "orders_extract_schedule": orders_extract_schedule}


#: ``orders_landing`` and ``orders_extract_schedule`` are the build with the environment's settings,
#: made on first use.
__getattr__ = module_built_from_env(build)


def build_landing_sensor(*, minimum_interval_seconds: int = 30, retry_after_seconds: int = 900):
    """One validation run per committed landing set (run_key = its folder), oldest first, one at a time.

    The cursor is the shared :class:`~lake_assets.ingest.jobs.RequestLedger` of every
    landing sensor: it remembers the sets requested that still wait in the landing zone
    (validation archives what it is done with, so it stays small); a set still waiting
    ``retry_after_seconds`` after its request (its run failed) is requested again. A folder without its manifest is an extraction in progress (or one that
    crashed before committing): never requested.
    """

    @sensor(name="orders_landing_sensor", job=orders_validate_job, minimum_interval_seconds=minimum_interval_seconds,
            default_status=DefaultSensorStatus.RUNNING,
            description="Watches bronze/landing/orders/ for committed landing sets and validates each.")
    def _sensor(context: SensorEvaluationContext, lake: LakeResource):
        ledger = RequestLedger.load(context.cursor)
        now = time.time()
        fresh = ledger.due(zones.committed_sets(lake.storage), now, retry_after_seconds)
        if not fresh:
            context.update_cursor(ledger.dump())
            return SkipReason(f"no new landing set in {zones.LANDING}/")
        busy = _pending_run(context.instance, orders_validate_job.name)
        if busy:
            context.update_cursor(ledger.dump())
            return SkipReason(f"{len(fresh)} set(s) wait for validation run {busy} to finish")
        name = fresh[0]
        run_key = ledger.run_key(join(zones.LANDING, name), [name], now)
        ledger.mark([name], now)
        return SensorResult(
            run_requests=[RunRequest(
                run_key=run_key,
                run_config={"ops": {"validate_orders": {"config": {"landing_set": name}}}},
                tags={"lake/landing_set": name, "lake/trigger": "landing sensor"},
            )],
            cursor=ledger.dump(),
        )

    return _sensor


orders_landing_sensor = build_landing_sensor()
