"""The log analytics lake: validated -> processed (+ rejects) -> daily_activity.

``validated_logs`` is filled by the ingestion job (the seed's Lambda), which
records each date it touched as a materialization of that partition. Those
materializations drive the rest: :data:`REBUILD_ON_UPSTREAM_CHANGE` rebuilds
any partition, old or new, whose upstream changed, so a late file for an
already-built day rebuilds that day's processed and gold partitions without a
person acting (``AutomationCondition.eager()`` alone watches the latest
partition only).
"""

import datetime as dt
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    AssetSpec,
    BackfillPolicy,
    Output,
    asset,
    define_asset_job,
    multi_asset,
)
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame

from lake_assets.automation import REBUILD_ON_UPSTREAM_CHANGE  # noqa: F401  (re-exported)
from lake_assets.domains.logs import contract, tables
from lake_assets.ingest.jobs import LandingSpec, build_ingest_job, build_landing_sensor
from lake_assets.ingest.validated import read_validated_text, validated_files
from lake_assets.io_managers import lake_table, register_from_files
from lake_assets.lake import LakeStorage
from lake_assets.partitions import daily_partitions
from lake_assets.quality.rules import record_text_for_rejects
from lake_assets.resources import LakeResource
from lake_assets.settings import LakeSettings, module_built_from_env
from lake_assets.spark import kept

GROUP = "logs"
VALIDATED = AssetKey("validated_logs")

LANDING = LandingSpec(
    name="logs",
    formats=contract.FORMATS,
    date_of=contract.routing_date,
    validated_asset=VALIDATED,
    # Files in raw/ folders no domain reads are kept whole in rejected/system/ingest/unknown/.
    claims_unknown=True,
)

REJECTS_TABLE = lake_table(tables.REJECTED, date_column="_partition_date")
PROCESSED_TABLE = lake_table({"access": tables.ACCESS, "error": tables.ERRORS},
                             metrics="logs", rejects=tables.REJECTED, rules=contract.RULE_NAMES)
DAILY_ACTIVITY_TABLE = lake_table(tables.DAILY_ACTIVITY, date_column="date", metrics="logs")


@dataclass(frozen=True)
class ParsedLogs:
    rejects: DataFrame
    processed: dict[str, DataFrame]
    metadata: dict[str, int]


@contextmanager
def parsed_logs(session, storage: LakeStorage, days: list[dt.date], start: dt.date,
                log: Callable[[str], None] = lambda _: None) -> Iterator[ParsedLogs]:
    """The processed_logs step's frames for these dates: rejects and processed (access, error).

    Shared by the asset and its Pipes script (``domains/logs/remote.py``), which runs
    the same step on EMR, EMR Serverless or Glue. Each parse feeds two writes
    (valid rows, rejects), so it is cached while the block runs.
    """
    access_files = validated_files(storage, days, contract.ACCESS_FORMATS)
    error_files = validated_files(storage, days, contract.ERROR_FORMATS)
    log(f"{len(days)} partition(s): {len(access_files)} access and {len(error_files)} error file(s) in validated/")
    access = contract.parse_access(read_validated_text(session, storage, access_files), start)
    errors = contract.parse_errors(
        read_validated_text(session, storage, error_files,
                            skip_lines=(contract.XML_ERRORS.header.strip(), contract.XML_ERRORS.footer.strip())),
        start,
    )
    with kept(record_text_for_rejects(access)) as access, kept(record_text_for_rejects(errors)) as errors:
        yield ParsedLogs(
            rejects=contract.rejected_rows(access).unionByName(contract.rejected_rows(errors)),
            processed={"access": contract.valid_rows(access, contract.ACCESS_SCHEMA),
                       "error": contract.valid_rows(errors, contract.ERROR_SCHEMA)},
            metadata={"validated_files": len(access_files) + len(error_files),
                      "records_read": sum(f.records for f in access_files + error_files)},
        )


@functools.lru_cache
def build(settings: LakeSettings) -> dict[str, Any]:
    """The logs domain's assets, jobs and sensor for ``settings`` (made once per settings).

    The partitions start at ``settings.start_date``, which is also the contract's
    ``timestamp_out_of_range`` bound.
    """
    partitions = daily_partitions(settings.start_date)
    validated_logs = AssetSpec(
        VALIDATED,
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"s3", "ndjson", "xml"},
        description="Raw log files checked and split by UTC event date into "
        "validated/<format>/year=/month=/day=/, in their original format. Written by "
        "the ingest_logs_job (sensor-driven), not materialized directly.",
        metadata={"lake/prefix": "validated"},
    )
    ingest_logs_job = build_ingest_job(LANDING, settings.start_date, settings.retry_delay_seconds)
    logs_landing_sensor = build_landing_sensor(LANDING, ingest_logs_job)


    @multi_asset(
        outs={
            "processed_logs": AssetOut(
                key=AssetKey("processed_logs"), io_manager_key="lake_io_manager", group_name=GROUP,
                metadata=PROCESSED_TABLE, kinds={"spark", "parquet"},
                automation_condition=REBUILD_ON_UPSTREAM_CHANGE,
                description="Canonical, typed access and error records (processed/logs/log_type=...).",
            ),
            "rejected_log_records": AssetOut(
                key=AssetKey("rejected_log_records"), io_manager_key="lake_io_manager", group_name=GROUP,
                metadata=REJECTS_TABLE, kinds={"spark", "parquet"},
                automation_condition=REBUILD_ON_UPSTREAM_CHANGE,
                description="Every record that broke a contract rule, with the first rule (reason) "
                "and all of them (reasons), under rejected/data_quality/.",
            ),
        },
        deps=[validated_logs],
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
    )
    def processed_logs(context: AssetExecutionContext, spark: LazyPySparkResource, lake: LakeResource):
        """Parse validated records with explicit schemas; every rule a row breaks is collected."""
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        with parsed_logs(spark.spark_session, lake.storage, days, settings.start_date, context.log.info) as parsed:
            # Rejects first: processed's metrics read the rejects this run just wrote.
            yield Output(parsed.rejects, output_name="rejected_log_records")
            yield Output(parsed.processed, output_name="processed_logs", metadata=parsed.metadata)


    @asset(
        ins={"processed_logs": AssetIn(key=AssetKey("processed_logs"))},
        io_manager_key="lake_io_manager",
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        group_name=GROUP,
        metadata=DAILY_ACTIVITY_TABLE,
        kinds={"spark", "parquet"},
        automation_condition=REBUILD_ON_UPSTREAM_CHANGE,
    )
    def daily_activity(processed_logs: dict[str, DataFrame]) -> DataFrame:
        """Gold: one row per (date, service), requests deduplicated by request_id (analytics/daily_activity)."""
        return contract.daily_activity(processed_logs["access"], processed_logs["error"])


    def processed_logs_via_pipes(launch: Callable[[AssetExecutionContext, Any, dict], Any], *,
                                 client_key: str = "pipes_client", name: str = "processed_logs_pipes"):
        """processed_logs and rejected_log_records built by a Pipes client instead of in process.

        ``launch(context, client, extras)`` starts ``python -m lake_assets.domains.logs.remote``
        where Spark runs, passing ``extras`` on, and returns the client's completed
        invocation; e.g. with ``PipesEMRServerlessClient`` as the ``client_key`` resource::

            processed_logs_via_pipes(lambda context, client, extras: client.run(
                context=context, extras=extras, start_job_run_params={
                    "applicationId": APP, "executionRoleArn": ROLE, "jobDriver": {"sparkSubmit": {
                        "entryPoint": "s3://my-bucket/code/remote.py"}}}))

        The extras carry the run's partition keys (Dagster 1.13 gives a Pipes process a
        partition range only when the run has a single partition) and the lake's settings
        (root, start date, S3 scheme), so the remote side reads the lake as this side does.

        Same keys, partitions, backfill policy and table metadata as :func:`processed_logs`,
        so gold, checks and the lake IO manager read its partitions unchanged; use it in
        place of ``processed_logs`` in the definitions.
        """
        specs = [
            AssetSpec(key, deps=[validated_logs], group_name=GROUP, metadata=meta, kinds={"spark", "parquet"},
                      automation_condition=REBUILD_ON_UPSTREAM_CHANGE,
                      description=f"{key.to_user_string()}, built by the Pipes script "
                                  "lake_assets/domains/logs/remote.py").with_io_manager_key("lake_io_manager")
            for key, meta in ((processed_logs.keys_by_output_name["processed_logs"], PROCESSED_TABLE),
                              (processed_logs.keys_by_output_name["rejected_log_records"], REJECTS_TABLE))
        ]

        @multi_asset(specs=specs, name=name, partitions_def=partitions,
                     backfill_policy=BackfillPolicy.single_run(),
                     required_resource_keys={client_key, "lake", "catalog"})
        def _via_pipes(context: AssetExecutionContext):
            lake: LakeResource = context.resources.lake
            keys = list(context.partition_keys)
            extras = {"partition_keys": keys,
                      "settings": {"LAKE_ROOT": lake.root, "LAKE_START_DATE": settings.start_date.isoformat(),
                                   "LAKE_SPARK_S3_SCHEME": lake.spark_s3_scheme or ""}}
            results = launch(context, getattr(context.resources, client_key), extras).get_results()
            # The remote side publishes; the catalog (local to the orchestrator) learns of it here.
            for meta in (REJECTS_TABLE, PROCESSED_TABLE):
                register_from_files(context.resources.catalog, lake.storage, meta, keys)
            return results

        return _via_pipes


    # Processed and gold for a range of dates (with their checks): what `lake run` and backfills run.
    logs_pipeline_job = define_asset_job(
        "logs_pipeline_job",
        selection=[processed_logs.keys_by_output_name["processed_logs"],
                   processed_logs.keys_by_output_name["rejected_log_records"], daily_activity.key],
        description="Build processed_logs, its rejects and daily_activity for a range of dates.",
    )

    return {"START_DATE": settings.start_date, "validated_logs": validated_logs, "ingest_logs_job": ingest_logs_job,
            "logs_landing_sensor": logs_landing_sensor, "processed_logs": processed_logs,
            "daily_activity": daily_activity, "processed_logs_via_pipes": processed_logs_via_pipes,
            "logs_pipeline_job": logs_pipeline_job}


#: Module-level names (``processed_logs``, ``daily_activity``, ...) are the build with the
#: environment's settings, made on first use; importing this module reads no setting.
__getattr__ = module_built_from_env(build)
