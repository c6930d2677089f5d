"""Spark settings from the environment, without starting Spark."""
from __future__ import annotations

import pytest

from lake_assets.spark import LakeSparkResource, spark_config_from_env


def test_local_by_default_bound_to_loopback_with_ansi_and_utc(monkeypatch):
    for var in ("SPARK_MASTER", "SPARK_REMOTE", "SPARK_DRIVER_HOST"):
        monkeypatch.delenv(var, raising=False)
    conf = spark_config_from_env()
    assert conf["spark.master"] == "local[*]"
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.sql.ansi.enabled"] == "true" and conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.parquet.outputTimestampType"] == "TIMESTAMP_MICROS"
    assert "spark.remote" not in conf


def test_cluster_connect_and_extra_settings(monkeypatch):
    monkeypatch.setenv("SPARK_MASTER", "spark://10.0.0.5:7077")
    monkeypatch.setenv("SPARK_CONF_spark__executor__memory", "3g")
    assert spark_config_from_env()["spark.master"] == "spark://10.0.0.5:7077"
    assert spark_config_from_env()["spark.executor.memory"] == "3g"
    monkeypatch.setenv("SPARK_REMOTE", "sc://127.0.0.1:15002")
    conf = spark_config_from_env()
    assert conf["spark.remote"] == "sc://127.0.0.1:15002" and "spark.master" not in conf


def test_unreachable_connect_server_fails_fast_with_a_clear_message():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    resource = LakeSparkResource(spark_config={"spark.remote": f"sc://127.0.0.1:{port}"})
    # Raised before any session is built: pyspark's Connect client would retry for ten minutes.
    with pytest.raises(ConnectionError, match=f"no Spark Connect server answers at 127.0.0.1:{port}"):
        resource.spark_session
