"""Errors a person can act on: bad arguments, settings and endpoints end in one line naming what to
fix and exit 2, without a traceback (which `--debug` shows)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def lake(args: list[str], tmp_path, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LAKE_", "ORDERS_"))}
    full = {**base, "LAKE_ROOT": str(tmp_path / "lake"), "DAGSTER_HOME": str(tmp_path / "home"), **env}
    return subprocess.run([sys.executable, "-m", "lake_assets.cli", *args], env=full, capture_output=True,
                          text=True, timeout=120)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args,says", [
    (["generate", "logs", "--days", "-1"], "argument --days: -1 is below 1: give 1 or more"),
    (["generate", "logs", "--days", "two"], "argument --days: 'two' is not a whole number"),
    (["generate", "commerce", "--bad-share", "2"], "argument --bad-share: 2.0 is not a share: give a number from 0 to 1"),
    (["generate", "logs", "--start", "2024-02-30"], "argument --start: '2024-02-30' is not a date: give YYYY-MM-DD"),
])
def test_bad_arguments_name_the_argument_and_exit_2(args, says, tmp_path):
    out = lake(args, tmp_path)
    assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "lake").exists()  # refused before anything was written


@pytest.mark.parametrize("env,says", [
    ({"LAKE_START_DATE": "2024-13-01"}, "lake: LAKE_START_DATE='2024-13-01' is not a date: set it as YYYY-MM-DD"),
    ({"LAKE_REJECT_RATE_ERROR": "high"}, "lake: LAKE_REJECT_RATE_ERROR='high' is not a number"),
    ({"LAKE_DEDUP_WINDOW_DAYS": "-2"}, "lake: LAKE_DEDUP_WINDOW_DAYS='-2' is below 0"),
    ({"LAKE_ROOT": "ftp://somewhere/lake"}, "lake: LAKE_ROOT 'ftp://somewhere/lake': unsupported scheme 'ftp'"),
])
def test_bad_settings_name_the_setting_and_exit_2(env, says, tmp_path):
    out = lake(["run"], tmp_path, **env)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and out.stderr.startswith(says), out.stderr


def test_an_unreachable_endpoint_says_which_and_exits_2_and_debug_shows_the_traceback(tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    # One attempt: what is under test is the message, not the retries (which an unreachable
    # endpoint would sit through first).
    env = {"LAKE_ROOT": "s3://bucket/lake", "AWS_ENDPOINT_URL": endpoint, "LAKE_S3_MAX_ATTEMPTS": "1"}
    out = lake(["generate", "logs", "--days", "1"], tmp_path, **env)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"lake: cannot reach {endpoint} for the lake at s3://bucket/lake: check "
                                  "AWS_ENDPOINT_URL and AWS_REGION, and that the endpoint is up")
    debug = lake(["--debug", "generate", "logs", "--days", "1"], tmp_path, **env)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_a_missing_bucket_says_so_and_exits_2(tmp_path, moto_server):
    out = lake(["generate", "logs", "--days", "1"], tmp_path, LAKE_ROOT="s3://no-such-bucket/lake",
               AWS_ENDPOINT_URL=moto_server)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().startswith("lake: the bucket of the lake at s3://no-such-bucket/lake does not exist")
