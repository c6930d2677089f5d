"""The orders code location: the landing sensor's requests and cursor, the schedule, loading definitions."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid

import pytest
from dagster import (
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    RunRequest,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)

from lake_assets.domains.orders.assets import orders_extract_schedule, orders_landing_sensor
from lake_assets.domains.orders.generator import generate_orders
from lake_assets.resources import LakeResource

DAY = dt.date(2024, 3, 1)


@pytest.fixture
def env(tmp_path, make_env):
    return make_env(f"sqlite:///{tmp_path}/s.db", f"sqlite:///{tmp_path}/w.db")


def tick(env, cursor):
    ctx = build_sensor_context(instance=env.instance, cursor=cursor,
                               resources={"lake": LakeResource(root=env.storage.root_uri)})
    return orders_landing_sensor(ctx), ctx


def add_run(instance, job: str, status=DagsterRunStatus.STARTED) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(DagsterRun(job_name=job, run_id=run_id, status=status))
    return run_id


def test_the_sensor_requests_one_run_per_committed_landing_set_oldest_first(env):
    sets = []
    for i in range(2):
        generate_orders(env.source.url, day=DAY + dt.timedelta(days=i), new_orders=5, seed=1)
        sets.append(env.extract().set_name)
    # An extraction still writing (or crashed before its manifest) is not a landing set.
    env.storage.write_bytes("bronze/landing/orders/extracted_at=2099-01-01T000000.000000Z/part-00000.parquet", b"x")

    result, _ = tick(env, None)
    assert isinstance(result, SensorResult) and len(result.run_requests) == 1
    req: RunRequest = result.run_requests[0]
    assert req.run_key == f"bronze/landing/orders/{sets[0]}"
    assert req.run_config == {"ops": {"validate_orders": {"config": {"landing_set": sets[0]}}}}

    result, _ = tick(env, result.cursor)
    assert [r.run_key for r in result.run_requests] == [f"bronze/landing/orders/{sets[1]}"]
    cursor = result.cursor
    skipped, ctx = tick(env, cursor)
    assert isinstance(skipped, SkipReason) and "no new landing set" in skipped.skip_message

    # Once a set is archived, the cursor forgets it.
    env.storage.delete(f"bronze/landing/orders/{sets[0]}/_manifest.json")
    skipped, ctx = tick(env, cursor)
    assert isinstance(skipped, SkipReason)
    assert set(json.loads(ctx.cursor)["requested"]) == {sets[1]}


def test_the_sensor_waits_while_a_validation_runs_and_retries_a_set_left_behind(env):
    generate_orders(env.source.url, day=DAY, new_orders=5, seed=1)
    name = env.extract().set_name
    busy = add_run(env.instance, "orders_validate_job")
    skipped, _ = tick(env, None)
    assert isinstance(skipped, SkipReason) and busy in skipped.skip_message

    env.instance.report_run_failed(env.instance.get_run_by_id(busy))
    result, _ = tick(env, None)
    assert [r.run_key for r in result.run_requests] == [f"bronze/landing/orders/{name}"]
    # Still waiting long after its request (the run failed): requested again, under a new run key.
    old = json.dumps({"requested": {name: 0.0}})
    result, _ = tick(env, old)
    assert result.run_requests[0].run_key.startswith(f"bronze/landing/orders/{name}#retry@")


def test_the_schedule_starts_an_extraction_unless_one_is_running():
    assert orders_extract_schedule.cron_schedule == "0 * * * *"
    assert orders_extract_schedule.execution_timezone == "UTC"
    # A schedule context needs an instance it can refer to; entered, so that the instance it opens from
    # that reference is closed with it (left open, it stays Dagster's current one after this test).
    with instance_for_test() as instance, build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2024, 3, 1, 10)) as ctx:
        requests = list(orders_extract_schedule.evaluate_tick(ctx).run_requests)
        assert len(requests) == 1 and requests[0].tags["lake/trigger"] == "schedule"
        busy = add_run(instance, "orders_extract_job")
        data = orders_extract_schedule.evaluate_tick(ctx)
        assert not data.run_requests and busy in data.skip_message


def test_cron_and_status_come_from_the_environment():
    code = ("from lake_assets.domains.orders.assets import orders_extract_schedule as s;"
            "print(s.cron_schedule, s.default_status.value)")
    env = {**os.environ, "ORDERS_EXTRACT_CRON": "*/15 * * * *", "ORDERS_SCHEDULE_STATUS": "stopped"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["*/15", "*", "*", "*", "*", "STOPPED"]


def test_definitions_load_without_a_database_or_spark(tmp_path):
    """Loading opens no connection: a source that does not answer still loads (and the run says why)."""
    code = (
        "from dagster import Definitions\n"
        "from lake_assets.definitions import build_resources\n"
        "from lake_assets.domains import orders\n"
        "d = Definitions.merge(orders.definitions(), Definitions(resources=build_resources()))\n"
        "Definitions.validate_loadable(d)\n"
        "r = d.get_repository_def()\n"
        "print(sorted(r.job_names), [s.name for s in r.schedule_defs], [s.name for s in r.sensor_defs])\n"
        "print(type(d.resources['orders_source'].url).__name__, d.resources['orders_source'].url.env_var_name)\n"
        "print(d.get_repository_def().get_top_level_resources()['orders_source'].config_schema.as_field()"
        ".default_value)\n"
        "import sys; print('pyspark.sql.session' in sys.modules and __import__('pyspark').sql.SparkSession"
        "._instantiatedSession is not None)\n"
    )
    env = {**os.environ, "ORDERS_DB_URL": "postgresql+psycopg://u:s3cr3t@127.0.0.1:1/nowhere",
           "DAGSTER_HOME": str(tmp_path), "LAKE_ROOT": str(tmp_path / "lake")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs, url, shown, spark_started = out.stdout.strip().splitlines()
    assert "'orders_extract_job', 'orders_validate_job'" in jobs
    assert "['orders_extract_schedule'] ['orders_landing_sensor']" in jobs
    # The URL (its password) reaches the resource through an EnvVar: what the UI shows of the
    # resource's configuration is the variable's name, never its value.
    assert url == "EnvVar ORDERS_DB_URL" and "'url': {'env': 'ORDERS_DB_URL'}" in shown and "s3cr3t" not in out.stdout
    assert spark_started == "False"
    assert not os.path.exists(tmp_path / "lake")


def test_the_embedded_default_lives_under_dagster_home(monkeypatch, tmp_path):
    from lake_assets.domains.orders.source import OrdersSourceResource

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    for k in ("ORDERS_DB_URL", "ORDERS_STATE_DB_URL", "ORDERS_WATERMARK_LAG_SECONDS"):
        monkeypatch.delenv(k, raising=False)
    res = OrdersSourceResource.from_env()
    assert res.url == f"sqlite:///{tmp_path}/orders_source.db"
    assert res.state_url == f"sqlite:///{tmp_path}/orders_state.db"
    assert res.lag_seconds == 300


def test_the_orders_definitions_name_what_the_ui_shows():
    from lake_assets.domains import orders
    from lake_assets.domains.orders.source import OrdersSourceResource

    d = orders.definitions(source=OrdersSourceResource(url="sqlite://", state_url="sqlite://"))
    assert isinstance(d, Definitions)
    keys = {k.to_user_string() for a in d.assets for k in a.keys}
    assert keys == {"orders_landing", "orders_silver", "orders_discarded", "orders_archive"}
    checks = {c.name for cd in d.asset_checks for c in cd.check_specs}
    assert checks == {"orders_landing_watermark_monotonic", "orders_silver_unique_order_id",
                      "orders_silver_rows_accounted", "orders_silver_freshness"}
