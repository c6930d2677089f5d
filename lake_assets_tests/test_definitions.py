"""The code location loads fast, starts no Spark and touches no storage."""
from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = r"""
import json, os, sys, time
t = time.process_time()
from lake_assets.definitions import defs
graph = defs.resolve_asset_graph()
jobs = sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__"))
sensors = sorted(s.name for s in defs.sensors)
checks = sorted(k.name for k in graph.asset_check_keys)
elapsed = time.process_time() - t  # CPU seconds: what loading costs, whatever else the machine runs
from pyspark import SparkContext
print(json.dumps({
    "elapsed": elapsed,
    "spark_started": SparkContext._active_spark_context is not None or "py4j.java_gateway" in sys.modules
                     and SparkContext._gateway is not None,
    "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
    "jobs": jobs, "sensors": sensors, "checks": checks,
    "executor": defs.resolve_job_def("logs_pipeline_job").executor_def.name,
}))
"""


def test_definitions_load_without_spark_or_storage(tmp_path):
    lake = tmp_path / "never-created"
    env = {**os.environ, "LAKE_ROOT": str(lake), "DAGSTER_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["spark_started"] is False
    assert not lake.exists()  # no storage touched
    logs = {"daily_activity", "processed_logs", "rejected_log_records", "validated_logs"}
    commerce = {f"{zone}_{d}" for zone in ("bronze", "silver", "quarantine")
                for d in ("events", "users", "transactions")} | {
        "dim_users", "dim_country", "dim_status", "dim_date", "fact_events", "fact_transactions",
        "fact_user_activity", "daily_revenue", "daily_active_users", "user_ltv"}
    assert logs | commerce <= set(info["assets"])
    assert {"ingest_logs_job", "logs_pipeline_job"} <= set(info["jobs"])
    assert {"logs_landing_sensor", "lake_automation_sensor"} <= set(info["sensors"])
    assert {"rejected_log_records_schema", "processed_logs_schema", "processed_logs_count_conservation", "processed_logs_reject_rate",
            "daily_activity_schema", "daily_activity_unique_date_service"} <= set(info["checks"])
    # One process per run, so one Spark session serves every step.
    assert info["executor"] == "in_process"


def test_workspace_and_pyproject_name_the_same_code_location():
    import tomllib

    import yaml

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        tool = tomllib.load(f)["tool"]["dagster"]
    with open(os.path.join(root, "workspace.yaml")) as f:
        ws = yaml.safe_load(f)["load_from"][0]["python_module"]
    assert tool["module_name"] == ws["module_name"] == "lake_assets.definitions"
    assert tool["code_location_name"] == ws["location_name"] == "lake_assets"


IMPORT_PROBE = r"""
import json, os, sys
os.environ["LAKE_START_DATE"] = "not a date"  # read at import, this would raise
import lake_assets.definitions, lake_assets.domains.logs.assets, lake_assets.domains.commerce.checks
print(json.dumps({"imported": True}))
"""


def test_importing_the_modules_reads_no_setting(tmp_path):
    """Configuration is read when definitions are built: importing every module reads none (a bad
    LAKE_START_DATE only fails once something builds definitions from the environment)."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    probe = IMPORT_PROBE.replace("import lake_assets.definitions, ", "import ")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-c", probe + "lake_assets.domains.logs.assets.processed_logs\n"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "LAKE_START_DATE='not a date' is not a date: set it as YYYY-MM-DD" in out.stderr


def test_definitions_built_with_their_own_settings(tmp_path, monkeypatch):
    """Tests (and deployments) build definitions with a settings object; no environment variable is set."""
    from dagster import DagsterInstance

    # Entered, so Dagster's definitions-state storage is a live instance's (as `lake run` does).
    with DagsterInstance.ephemeral():
        _check_definitions_built_with_their_own_settings(tmp_path, monkeypatch)


def _check_definitions_built_with_their_own_settings(tmp_path, monkeypatch):
    import datetime as dt

    from dagster import AssetKey, DefaultScheduleStatus

    from lake_assets.definitions import build_defs
    from lake_assets.settings import LakeSettings, RateThresholds

    for name in ("LAKE_START_DATE", "LAKE_DEDUP_WINDOW_DAYS", "ORDERS_EXTRACT_CRON", "ORDERS_SCHEDULE_STATUS"):
        monkeypatch.delenv(name, raising=False)
    settings = LakeSettings(start_date=dt.date(2024, 2, 1), dedup_window_days=2, orders_extract_cron="*/5 * * * *",
                            orders_schedule_running=False, reject_rate=RateThresholds(0.0, 0.0))
    defs = build_defs(str(tmp_path / "lake"), settings)
    for job in ("logs_pipeline_job", "commerce_pipeline_job"):
        parts = defs.resolve_job_def(job).partitions_def
        assert parts.get_first_partition_key() == "2024-02-01", job
    schedule = defs.resolve_schedule_def("orders_extract_schedule")
    assert (schedule.cron_schedule, schedule.default_status) == ("*/5 * * * *", DefaultScheduleStatus.STOPPED)
    silver = defs.resolve_assets_def(AssetKey("silver_events"))
    mapping = silver.get_partition_mapping(AssetKey("bronze_events"))
    assert (mapping.start_offset, mapping.end_offset) == (-2, 2)
    # The environment's defaults are another build; a domain's build for the same settings is made once.
    default = build_defs(str(tmp_path / "lake"))
    assert default.resolve_job_def("logs_pipeline_job").partitions_def.get_first_partition_key() == "2024-01-01"
    from lake_assets.domains.commerce import assets

    assert assets.build(settings) is assets.build(LakeSettings(**vars(settings)))
