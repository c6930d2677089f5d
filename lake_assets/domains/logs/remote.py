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
everywhere else (``LAKE_ROOT``, ``LAKE_SPARK_S3_SCHEME``, ``SPARK_*``).
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


def main() -> int:
    from dagster_pipes import open_dagster_pipes
    from dagster_pyspark.resources import spark_session_from_config

    from lake_assets import settings
    from lake_assets.domains.logs.assets import PROCESSED_TABLE, REJECTS_TABLE, parsed_logs
    from lake_assets.io_managers import write_table
    from lake_assets.lake import LakeStorage
    from lake_assets.spark import spark_config_from_env

    with open_dagster_pipes() as pipes:
        days = partition_days(pipes)
        keys = [d.isoformat() for d in days]
        storage = LakeStorage(settings.lake_root())
        session = spark_session_from_config(spark_config_from_env())
        with parsed_logs(session, storage, days, pipes.log.info) as parsed:
            # Rejects first: processed's metrics read the rejects this run just wrote.
            rejects = write_table(storage, REJECTS_TABLE, parsed.rejects, keys,
                                  asset="rejected_log_records", run_id=pipes.run_id)
            processed = write_table(storage, PROCESSED_TABLE, parsed.processed, keys,
                                    asset="processed_logs", run_id=pipes.run_id)
        pipes.report_asset_materialization(asset_key="rejected_log_records", metadata=pipes_metadata(rejects))
        pipes.report_asset_materialization(asset_key="processed_logs",
                                           metadata=pipes_metadata({**processed, **parsed.metadata}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
