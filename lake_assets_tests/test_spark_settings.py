"""Spark settings from the environment (without starting Spark), and the ones the running JVM got."""
from __future__ import annotations

import os

import pytest

from lake_assets.spark import HUGE_METHODS_COMPILED, ROW_GROUP_BYTES, LakeSparkResource, spark_config_from_env


def test_local_by_default_bound_to_loopback_with_ansi_and_utc(monkeypatch):
    for var in ("SPARK_MASTER", "SPARK_REMOTE", "SPARK_DRIVER_HOST"):
        monkeypatch.delenv(var, raising=False)
    conf = spark_config_from_env()
    assert conf["spark.master"] == "local[*]"
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.sql.ansi.enabled"] == "true" and conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.parquet.outputTimestampType"] == "TIMESTAMP_MICROS"
    assert "spark.remote" not in conf
    # Column building without a py4j round trip per call for the Python call site (a setting of its own).
    assert conf["spark.python.sql.dataFrameDebugging.enabled"] == "false"
    # Large generated methods compiled by the JIT (the default options: extraJavaOptions add to them).
    assert conf["spark.driver.defaultJavaOptions"] == conf["spark.executor.defaultJavaOptions"] == HUGE_METHODS_COMPILED


def test_the_sessions_jvm_compiles_large_generated_methods(spark):
    """The test session sets extraJavaOptions of its own (conftest): the default options still reach
    the JVM, so a wide projection's whole-stage code is compiled, not interpreted."""
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = list(runtime.getInputArguments())
    assert HUGE_METHODS_COMPILED in arguments
    assert "-XX:+UseSerialGC" in arguments  # the test session's own option, beside it


def test_the_session_writes_parquet_row_groups_of_16_mib(spark):
    """A file the lake writes in one task is still read by several: its row groups are Spark's read splits."""
    assert spark.sparkContext._jsc.hadoopConfiguration().get("parquet.block.size") == str(ROW_GROUP_BYTES)
    assert ROW_GROUP_BYTES == 16 * 1024 * 1024


def test_cluster_connect_and_extra_settings(monkeypatch):
    monkeypatch.setenv("SPARK_MASTER", "spark://10.0.0.5:7077")
    monkeypatch.setenv("SPARK_CONF_spark__executor__memory", "3g")
    assert spark_config_from_env()["spark.master"] == "spark://10.0.0.5:7077"
    assert spark_config_from_env()["spark.executor.memory"] == "3g"
    monkeypatch.setenv("SPARK_REMOTE", "sc://127.0.0.1:15002")
    conf = spark_config_from_env()
    assert conf["spark.remote"] == "sc://127.0.0.1:15002" and "spark.master" not in conf


@pytest.mark.parametrize("scheme, expected", [
    ("s3a", {"spark.hadoop.fs.s3a.encryption.algorithm": "SSE-KMS", "spark.hadoop.fs.s3a.encryption.key": "k-1"}),
    ("s3", {"spark.hadoop.fs.s3.enableServerSideEncryption": "true",
            "spark.hadoop.fs.s3.serverSideEncryption.kms.keyId": "k-1"}),
])
def test_spark_writing_s3_itself_names_the_lakes_kms_key(monkeypatch, scheme, expected):
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    monkeypatch.setenv("LAKE_SPARK_S3_SCHEME", scheme)
    monkeypatch.setenv("LAKE_SSE", "kms")
    monkeypatch.setenv("LAKE_KMS_KEY_ID", "k-1")
    conf = spark_config_from_env()
    assert {k: v for k, v in conf.items() if "encrypt" in k.lower() or "ServerSide" in k} == expected
    monkeypatch.setenv("LAKE_SSE", "s3")  # SSE-S3: the bucket's default, no setting
    assert not [k for k in spark_config_from_env() if "ncryption" in k or "ServerSide" in k]


def test_unreachable_connect_server_fails_fast_with_a_clear_message():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    resource = LakeSparkResource(spark_config={"spark.remote": f"sc://127.0.0.1:{port}"})
    # Raised before any session is built: pyspark's Connect client would retry for ten minutes.
    with pytest.raises(ConnectionError, match=f"no Spark Connect server answers at 127.0.0.1:{port}"):
        resource.spark_session


@pytest.mark.parametrize("master, cores", [("local", 1), ("local[3]", 3), ("local[4, 2]", 4),
                                            ("spark://10.0.0.5:7077", None), ("yarn", None)])
def test_local_masters_get_several_input_splits_per_core(monkeypatch, master, cores):
    from lake_assets.spark import SPLITS_PER_CORE, local_cores

    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    monkeypatch.delenv("SPARK_CONF_spark__sql__files__minPartitionNum", raising=False)  # (the suite's own)
    monkeypatch.setenv("SPARK_MASTER", master)
    assert local_cores(master) == cores
    conf = spark_config_from_env()
    if cores is None:
        # A cluster's own parallelism decides: nothing is imposed on it.
        assert "spark.sql.files.minPartitionNum" not in conf
        assert "spark.sql.inMemoryColumnarStorage.compressed" not in conf
    else:
        assert conf["spark.sql.files.minPartitionNum"] == str(SPLITS_PER_CORE * cores)
        assert conf["spark.sql.inMemoryColumnarStorage.compressed"] == "false"


def test_local_star_counts_this_machines_cores(monkeypatch):
    import os

    from lake_assets.spark import local_cores

    assert local_cores("local[*]") == os.cpu_count()
    monkeypatch.setenv("SPARK_MASTER", "local[2]")
    monkeypatch.setenv("SPARK_CONF_spark__sql__files__minPartitionNum", "5")
    assert spark_config_from_env()["spark.sql.files.minPartitionNum"] == "5"  # an explicit setting wins


def test_under_spark_submit_only_sql_settings_apply(monkeypatch):
    """EMR, EMR Serverless and Glue launch the driver with spark-submit: their master stands."""
    from lake_assets.spark import launched_by_spark_submit

    monkeypatch.setenv("SPARK_MASTER", "local[2]")
    monkeypatch.setenv("SPARK_CONF_spark__sql__shuffle__partitions", "64")
    monkeypatch.delenv("SPARK_CONF_spark__sql__files__minPartitionNum", raising=False)  # (the suite's own)
    conf = spark_config_from_env(submitted=True)
    assert not {"spark.master", "spark.driver.host", "spark.driver.bindAddress", "spark.remote",
                "spark.sql.files.minPartitionNum"} & set(conf)
    assert conf["spark.sql.ansi.enabled"] == "true" and conf["spark.sql.shuffle.partitions"] == "64"
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert not launched_by_spark_submit()
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "41234")
    assert launched_by_spark_submit()


def test_a_running_session_or_a_connect_client_is_not_started_early(spark):
    from lake_assets.spark import start_session_early

    jobs = set(spark.sparkContext.statusTracker().getJobIdsForGroup(None))
    assert start_session_early(spark_config_from_env()) is None  # this process's session is already warm
    assert start_session_early({"spark.remote": "sc://127.0.0.1:1"}) is None  # nothing to start for a client
    assert set(spark.sparkContext.statusTracker().getJobIdsForGroup(None)) == jobs  # no warm-up job ran
    # Under spark-submit (which hands over its JVM's gateway), nothing is started either: in a fresh process.
    import subprocess
    import sys

    code = ("from pyspark import SparkContext\n"
            "from lake_assets.spark import spark_config_from_env, start_session_early\n"
            "assert start_session_early(spark_config_from_env(submitted=True)) is None\n"
            "assert SparkContext._active_spark_context is None\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYSPARK_GATEWAY_PORT": "1"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


#: In a fresh process, as `lake run` starts: the session started early, then asked for by the first step.
EARLY_START = """
import json, sys
from pyspark import SparkContext
from dagster_pyspark.resources import spark_session_from_config
from lake_assets.spark import start_session_early, spark_config_from_env
config = spark_config_from_env() if sys.argv[1] == "good" else {"spark.master": "local[1]", "spark.driver.memory": "lots"}
thread = start_session_early(config)
assert thread is not None and thread.daemon
thread.join(120)
started = SparkContext._active_spark_context
try:
    spark = spark_session_from_config(config)  # what the first step's resource does
except Exception as exc:
    print(json.dumps({"started": started is not None, "error": str(exc)[:2000]}))
    sys.exit(0)
tracker = spark.sparkContext.statusTracker()
warm = [j for j in tracker.getJobIdsForGroup(None) if tracker.getJobInfo(j).status == "SUCCEEDED"]
print(json.dumps({"started": started is not None, "same": spark.sparkContext is started, "warm_jobs": len(warm)}))
"""


def _early_start(mode: str) -> dict:
    """:data:`EARLY_START` run in a fresh process with ``mode`` ("good" or "bad" settings): what it printed."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", EARLY_START, mode], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_lake_runs_session_is_started_early_and_warm_when_the_first_step_asks():
    result = _early_start("good")
    assert result == {"started": True, "same": True, "warm_jobs": result["warm_jobs"]} and result["warm_jobs"] >= 1


def test_a_session_that_cannot_start_early_fails_in_the_first_step_with_sparks_own_error():
    result = _early_start("bad")
    assert result["started"] is False  # the early start's failure was not raised in the background thread
    assert "Java gateway process exited" in result["error"], result["error"]  # the JVM refused -Xmx lots
