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
