"""processed_logs through Dagster Pipes (the route to EMR, EMR Serverless and Glue), run here by
PipesSubprocessClient: the remote script must write what the in-process asset writes."""
from __future__ import annotations

import datetime as dt
import sys

from dagster import AssetKey, Definitions, PipesSubprocessClient, in_process_executor

from lake_assets.lake import LakeStorage

START = dt.date(2024, 3, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(2)]


def _comparable(rows: list[dict], drop: tuple[str, ...] = ()) -> list[tuple]:
    return sorted(tuple(sorted((k, repr(v)) for k, v in r.items() if k not in drop)) for r in rows)


def _ingested_lake(root: str, instance, monkeypatch):
    """A generated lake, ingested into validated/ (the pipeline's first stage), with its own catalog."""
    from lake_assets.definitions import build_defs
    from lake_assets.domains.logs.generator import generate_logs

    monkeypatch.setenv("LAKE_CATALOG_PATH", f"{root}-catalog.duckdb")

    storage = LakeStorage(root)
    generate_logs(storage.write_bytes, start=START, days=len(DAYS), records_per_day=150, bad_share=0.05,
                  bad_files=0, seed=5, now=dt.datetime.now(dt.timezone.utc))
    defs = build_defs(root)
    result = defs.resolve_job_def("ingest_logs_job").execute_in_process(instance=instance)
    assert result.success
    return defs, storage


def test_processed_logs_via_pipes_writes_what_the_asset_writes(tmp_path, spark, instance, monkeypatch,
                                                              catalog_matches_lake, read_parquet):
    from lake_assets.domains.logs.assets import daily_activity, processed_logs_via_pipes, validated_logs
    from lake_assets.domains.logs.checks import LOGS_CHECKS

    from lake_assets.pipeline import range_tags as tags_for

    range_tags = tags_for(DAYS[0].isoformat(), DAYS[-1].isoformat())

    # The reference: the in-process asset on one copy of the lake.
    ref_defs, ref = _ingested_lake(str(tmp_path / "in_process"), instance, monkeypatch)
    assert ref_defs.resolve_job_def("logs_pipeline_job").execute_in_process(instance=instance, tags=range_tags).success

    # The same lake again, its Spark step launched through Pipes in another process.
    root = str(tmp_path / "pipes")
    base, lake = _ingested_lake(root, instance, monkeypatch)
    via_pipes = processed_logs_via_pipes(
        lambda context, client, extras: client.run(
            context=context, extras=extras, command=[sys.executable, "-m", "lake_assets.domains.logs.remote"]))
    defs = Definitions(
        assets=[validated_logs, via_pipes, daily_activity],
        asset_checks=LOGS_CHECKS,
        resources={**base.resources,
                   # Spark settings come from the script's environment, as on EMR or Glue; the lake's
                   # own settings come from the orchestrator (a stale LAKE_ROOT there must not win).
                   "pipes_client": PipesSubprocessClient(env={"LAKE_ROOT": str(tmp_path / "stale"),
                                                              "SPARK_MASTER": "local[1]"})},
        executor=in_process_executor,
    )
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, tags=range_tags, asset_selection=[
        AssetKey("processed_logs"), AssetKey("rejected_log_records"), AssetKey("daily_activity")])
    assert result.success
    # The remote side published; the orchestrator registered what it wrote in its catalog.
    from lake_assets.domains.logs.tables import TABLES

    catalog_matches_lake(base.resources, TABLES)

    # Both materializations came back through Pipes, with the writer's counts; the checks ran and passed.
    mats = {e.event_specific_data.materialization.asset_key.path[-1]: e.event_specific_data.materialization
            for e in result.get_asset_materialization_events()}
    processed_rows = read_parquet(lake, "processed/logs").num_rows
    rejected_rows = read_parquet(lake, "rejected/data_quality").num_rows
    assert rejected_rows > 0 and processed_rows > 0
    assert mats["processed_logs"].metadata["dagster/row_count"].value == processed_rows
    assert mats["rejected_log_records"].metadata["dagster/row_count"].value == rejected_rows
    assert mats["processed_logs"].metadata["validated_files"].value > 0
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks), [(c.check_name, c.passed) for c in checks if not c.passed]

    # The lake is the one the in-process asset writes: same rows in every zone, same file layout. (The
    # shared reader gives a zone's rows every column of its files: each processed table is compared
    # on its own too, its rows with exactly their files' columns.)
    for prefix, drop in (("processed/logs", ("ingest_run_id",)), ("processed/logs/log_type=access", ("ingest_run_id",)),
                         ("processed/logs/log_type=error", ("ingest_run_id",)), ("analytics/daily_activity", ()),
                         ("rejected/data_quality", ("ingest_run_id", "rejected_at"))):
        assert _comparable(read_parquet(lake, prefix).to_pylist(), drop) == \
            _comparable(read_parquet(ref, prefix).to_pylist(), drop), prefix
        assert sorted(f.path for f in lake.list_files(prefix)) == sorted(f.path for f in ref.list_files(prefix))
    assert not (tmp_path / "stale").exists()
    # The metrics zone got the Pipes run's numbers for each day.
    for day in DAYS:
        files = lake.list_files(f"metrics/logs/processed_logs/event_date={day.isoformat()}")
        assert [f.name for f in files] == [f"{result.run_id}.csv"]


class _FakePipes:
    def __init__(self, extras=None, key_range=None):
        self.extras, self._range = extras, key_range

    @property
    def is_partition_step(self):
        return self._range is not None

    @property
    def partition_key_range(self):
        from dagster_pipes import PipesPartitionKeyRange

        return PipesPartitionKeyRange(start=self._range[0], end=self._range[1])


def test_remote_script_dates_from_extras_or_the_partition_range():
    import pytest

    from lake_assets.domains.logs.remote import partition_days

    assert partition_days(_FakePipes({"partition_keys": ["2024-03-02", "2024-03-01"]})) == DAYS
    assert partition_days(_FakePipes({}, ("2024-03-01", "2024-03-02"))) == DAYS
    with pytest.raises(ValueError, match="daily-partitioned"):
        partition_days(_FakePipes({}))


def test_metadata_crosses_pipes_with_its_types():
    from dagster import MetadataValue, TableColumn, TableSchema

    from lake_assets.domains.logs.remote import pipes_metadata

    out = pipes_metadata({"n": 3, "rate": 0.5, "uri": MetadataValue.path("s3://b/p"),
                          "per": MetadataValue.json({"a": 1}), "preview": MetadataValue.md("| a |"),
                          "schema": TableSchema(columns=[TableColumn("a", "int")])})
    assert out == {"n": 3, "rate": 0.5, "uri": {"type": "path", "raw_value": "s3://b/p"},
                   "per": {"type": "json", "raw_value": {"a": 1}}, "preview": {"type": "md", "raw_value": "| a |"},
                   "schema": {"type": "table_schema", "raw_value": {"columns": [{"name": "a", "type": "int"}]}}}
