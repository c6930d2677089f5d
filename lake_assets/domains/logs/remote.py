"""The processed_logs Spark step as a standalone script, for Dagster Pipes.

    python -m lake_assets.domains.logs.remote

Dagster keeps the orchestration (partitions, checks, lineage) and a Pipes client
launches this script where Spark runs: EMR (``PipesEMRClient``), EMR Serverless
(``PipesEMRServerlessClient``), Glue (``PipesGlueClient``) or a local subprocess
(``PipesSubprocessClient``). It reads the run's partitions from the Pipes
context, builds processed_logs and rejected_log_records with the asset's own
code (:func:`parsed_logs`), writes them with the IO manager's own writer
(:func:`write_table`: one file per partition, atomic publish, metrics zone) and
reports both materializations back. Settings come from the environment as
everywhere else (``SPARK_*``, AWS), except the lake's own (root, start date, S3
scheme), which the orchestrator passes so both sides agree. Launched by
spark-submit, the cluster's master and driver address are kept.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any


def partition_days(pipes) -> list[dt.date]:
    """The dates of the Pipes run: the ``partition_keys`` extra (any run), else its partition range."""
    keys = (pipes.extras or {}).get("partition_keys")
    if keys:
        return sorted(dt.date.fromisoformat(k) for k in keys)
    if not pipes.is_partition_step:
        raise ValueError("processed_logs is daily-partitioned: launch this script for a partition or a range "
                         "(processed_logs_via_pipes passes the run's keys as the partition_keys extra)")
    key_range = pipes.partition_key_range
    first, last = dt.date.fromisoformat(key_range["start"]), dt.date.fromisoformat(key_range["end"])
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def pipes_metadata(md: Mapping[str, Any]) -> dict[str, Any]:
    """Materialization metadata as Pipes carries it (typed raw values)."""
    from dagster import JsonMetadataValue, MarkdownMetadataValue, PathMetadataValue, TableSchema

    out: dict[str, Any] = {}
    for key, value in md.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, TableSchema):
            out[key] = {"type": "table_schema", "raw_value": {
                "columns": [{"name": c.name, "type": c.type} for c in value.columns]}}
        elif isinstance(value, PathMetadataValue):
            out[key] = {"type": "path", "raw_value": value.path}
        elif isinstance(value, JsonMetadataValue):
            out[key] = {"type": "json", "raw_value": value.data}
        elif isinstance(value, MarkdownMetadataValue):
            out[key] = {"type": "md", "raw_value": value.md_str}
        else:
            out[key] = {"type": "text", "raw_value": str(value)}
    return out


#: Settings the orchestrator passes on (``settings`` extra), so both sides read the same lake the same way.
SHARED_SETTINGS = ("LAKE_ROOT", "LAKE_START_DATE", "LAKE_SPARK_S3_SCHEME")


def main() -> int:
    import os

    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        # Before the lake modules are imported: they read these when loaded.
        os.environ.update({k: v for k, v in ((pipes.extras or {}).get("settings") or {}).items()
                           if k in SHARED_SETTINGS and v})
        from dagster import AssetKey
        from dagster_pyspark.resources import spark_session_from_config

        from lake_assets import settings
        from lake_assets.domains.logs.assets import PROCESSED_TABLE, REJECTS_TABLE, parsed_logs
        from lake_assets.io_managers import write_table
        from lake_assets.resources import LakeResource
        from lake_assets.spark import launched_by_spark_submit, spark_config_from_env

        days = partition_days(pipes)
        keys = [d.isoformat() for d in days]
        storage = LakeResource.from_env().storage
        # Under spark-submit (EMR, Glue) the cluster's master and driver address stand.
        session = spark_session_from_config(spark_config_from_env(submitted=launched_by_spark_submit()))
        try:
            with parsed_logs(session, storage, days, settings.start_date(), pipes.log.info) as parsed:
                out = {name: AssetKey(name) for name in ("processed_logs", "rejected_log_records")}
                # Rejects first: processed's metrics read the rejects this run just wrote.
                written = {
                    out[name]: write_table(storage, meta, frame, keys, asset=out[name].path[-1], run_id=pipes.run_id)
                    for name, meta, frame in (("rejected_log_records", REJECTS_TABLE, parsed.rejects),
                                              ("processed_logs", PROCESSED_TABLE, parsed.processed))
                }
        finally:
            session.stop()
        written[out["processed_logs"]].update(parsed.metadata)
        for key, metadata in written.items():
            pipes.report_asset_materialization(asset_key=key.to_user_string(), metadata=pipes_metadata(metadata))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
