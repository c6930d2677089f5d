"""Concurrent and interrupted `lake run`, in real processes: whatever the interleaving, one more
`lake run` leaves the lake as one clean run does (row counts per table and partition, gold values,
quarantine and reject counts, archive, rejected and validated file sets), nothing is ingested twice,
and no message says a file waits in raw/ when it does not.

Each `lake run` here is its own process (its own Spark driver), started together against one lake
and one Dagster home; the reference is one run alone over a copy of the same raw files.

Three runs on a fresh home race over logs and commerce files (every landing domain, and the
analytics room built from commerce). The other races use logs alone: ingestion claims, the build
claim and the landing sensor are one mechanism every domain shares, and each process pays
Spark's start-up and every domain's fixed cost again, so one domain is what those races need.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lake_assets import cli
from lake_assets.lake import LakeStorage

DAY = "2024-05-01"
LOGS = ["generate", "logs", "--days", "1", "--records-per-day", "100", "--start", DAY, "--bad-share", "0.05",
        "--bad-files", "1"]
# No bad commerce rows: an undatable one would land on today's date, a second range to build.
COMMERCE = ["generate", "commerce", "--days", "1", "--records-per-day", "30", "--users", "5", "--start", DAY,
            "--bad-share", "0", "--bad-files", "0"]
#: Quarantine and reject rates of small generated days run high: the thresholds are not under test.
ENV = {"LAKE_QUARANTINE_RATE_WARN": "1", "LAKE_QUARANTINE_RATE_ERROR": "1",
       "LAKE_REJECT_RATE_WARN": "1", "LAKE_REJECT_RATE_ERROR": "1", "SPARK_MASTER": "local[1]"}
def env_for(lake: Path, home: Path, **extra) -> dict:
    return {**os.environ, **ENV, "LAKE_ROOT": str(lake), "DAGSTER_HOME": str(home),
            "LAKE_CATALOG_PATH": str(home / "catalog.duckdb"), **extra}


def lake_here(args: list[str], lake, home: Path, monkeypatch, capsys) -> tuple[int, str]:
    """`lake <args>` in this process (the test's Spark session): for the run that follows the
    concurrent or killed ones, which need no process of their own."""
    for k, v in env_for(lake, home).items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    code = cli.main(args)
    return code, capsys.readouterr().out


def lake_run(lake: Path, home: Path, **extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lake_assets.cli", "run"], env=env_for(lake, home, **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def generate_with_reference(tmp_path_factory, lake_snapshot, *generate: list[str]):
    """The raw files of ``generate`` (``lake generate`` argument lists), generated once; and the lake
    one `lake run` alone makes of them (in this process: the comparison is with what the others
    make in theirs)."""
    raw = tmp_path_factory.mktemp("generated")
    alone, home = tmp_path_factory.mktemp("alone"), tmp_path_factory.mktemp("alone_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKE_ROOT", str(raw))
        for args in generate:
            assert cli.main(args) == 0
        shutil.copytree(raw, alone, dirs_exist_ok=True)
        for k, v in env_for(alone, home).items():
            mp.setenv(k, v)
        assert cli.main(["run"]) == 0
    reference = lake_snapshot(str(alone))
    assert reference["raw"] == [] and reference["gold"]["logs.daily_activity"] and reference["rejected"]
    return raw, reference


@pytest.fixture(scope="module")
def generated(tmp_path_factory, spark, lake_snapshot):
    """Logs and commerce files, and the lake one run alone makes of them (analytics included)."""
    raw, reference = generate_with_reference(tmp_path_factory, lake_snapshot, LOGS, COMMERCE)
    assert reference["gold"]["commerce.daily_revenue"] and reference["quarantine"]
    assert reference["tables"]["analytics.user_features"]
    return raw, reference


@pytest.fixture(scope="module")
def generated_logs(tmp_path_factory, spark, lake_snapshot):
    """Logs files alone, and the lake one run alone makes of them."""
    raw, reference = generate_with_reference(tmp_path_factory, lake_snapshot, LOGS)
    assert not reference["gold"].get("commerce.daily_revenue")
    return raw, reference


def test_three_runs_started_together_on_a_fresh_home_then_one_more_equal_one_clean_run(generated, tmp_path, lake_snapshot,
                                                                                     monkeypatch, capsys, spark):
    raw, reference = generated
    lake, home = tmp_path / "lake", tmp_path / "home"
    shutil.copytree(raw, lake)
    home.mkdir()  # fresh: the three race to create the instance's storage
    procs = [lake_run(lake, home) for _ in range(3)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    for out in outs:
        assert "Traceback" not in out and "CommandError" not in out, out[-3000:]
        # Nothing claims a file waits in raw/ that another run took.
        assert "stay in raw/" not in out, out[-3000:]
    assert all(p.returncode == 0 for p in procs), [o[-2000:] for o in outs]
    # Every file was ingested once: the ingested counts add up to the files there were.
    ingested = [sum(int(m) for m in re.findall(r"(\d+) file\(s\) ingested", o)) for o in outs]
    assert sum(ingested) == len(LakeStorage(str(raw)).list_files("raw"))

    # The run after them needs no process of its own (this one's Spark session serves).
    code, out = lake_here(["run"], lake, home, monkeypatch, capsys)
    assert code == 0, out[-3000:]
    assert "0 file(s) ingested, 0 partition(s) built" in out  # nothing was left to do
    assert lake_snapshot(str(lake)) == reference
    code, out = lake_here(["status"], lake, home, monkeypatch, capsys)
    assert code == 0 and "stale" not in out, out


def test_a_run_killed_after_ingestion_then_one_run_converges(generated_logs, tmp_path, lake_snapshot, monkeypatch, capsys,
                                                              spark):
    raw, reference = generated_logs
    lake, home = tmp_path / "lake", tmp_path / "home"
    shutil.copytree(raw, lake)
    home.mkdir()
    proc = lake_run(lake, home)
    seen = []
    for line in proc.stdout:  # killed as soon as the first build starts: ingested, nothing built
        seen.append(line)
        if "building" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)[-2000:]
    assert LakeStorage(str(lake)).list_files("validated/ndjson")  # logs were ingested before the kill

    code, out = lake_here(["status", "--format", "json"], lake, home, monkeypatch, capsys)
    assert code == 1  # stale, and said so
    stale = {d["domain"]: d["stale"] for d in json.loads(out[out.index("["):])}
    assert any(s["asset"] == "daily_activity" for s in stale["logs"])

    code, out = lake_here(["run"], lake, home, monkeypatch, capsys)
    assert code == 0, out[-3000:]
    assert lake_snapshot(str(lake)) == reference


def big_file(storage: LakeStorage, records: int) -> None:
    storage.write_text("raw/ndjson/big.ndjson", "".join(
        json.dumps({"timestamp": f"{DAY}T08:{i // 60 % 60:02d}:{i % 60:02d}Z", "service": "web",
                    "request_id": f"r{i}", "method": "GET", "path": "/", "status": 200}) + "\n"
        for i in range(records)))


def assert_ingested_once(storage: LakeStorage, records: int) -> None:
    """One validated file with every record, one archive copy, one manifest, gold counting each once."""
    assert storage.list_files("raw") == [] and storage.list_files("_lake/claims/raw", hidden=True) == []
    [validated] = storage.list_files("validated/ndjson/year=2024/month=05/day=01")
    assert storage.read_bytes(validated.path).count(b"\n") == records
    assert len(storage.list_files("archive/validated/ndjson")) == 1
    assert len(storage.list_files("validated/_manifests/ndjson", hidden=True)) == 1
    [daily] = storage.list_files(f"analytics/daily_activity/date={DAY}")
    assert pq.read_table(storage.local_path(daily.path)).column("requests").to_pylist() == [records]


def test_a_run_killed_while_holding_a_claim_then_the_next_run_ingests_the_file_once(tmp_path, monkeypatch, capsys,
                                                                                    spark):
    """SIGKILL while a file is claimed and half ingested: the next run sees the holder's process is
    gone (same machine), takes the claim's next generation and ingests the file, once."""
    lake, home = tmp_path / "lake", tmp_path / "home"
    home.mkdir()
    storage = LakeStorage(str(lake))
    big_file(storage, 60_000)
    proc = lake_run(lake, home)
    claim_dir = lake / "_lake" / "claims" / "raw" / "ndjson" / "big.ndjson"
    deadline = time.monotonic() + 120
    while not (claim_dir.exists() and any(claim_dir.glob("*.json"))):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert storage.list_files("raw") != []  # killed mid-ingestion: the file is still there, claimed
    assert json.loads(next(claim_dir.glob("*.json")).read_text())["pid"] == proc.pid

    code, out = lake_here(["run"], lake, home, monkeypatch, capsys)
    assert code == 0, out[-3000:]
    assert "logs: 1 file(s) ingested" in out
    assert_ingested_once(storage, 60_000)


def test_a_claim_held_elsewhere_is_skipped_until_its_lease_runs_out(tmp_path, monkeypatch, spark, capsys):
    """A claim whose holder is another machine's run: `lake run` skips the file, says so and exits 0
    (nothing is said to wait in raw/); once the lease has run out the next run ingests it, once."""
    from lake_assets.lake import claims

    lake, home = tmp_path / "lake", tmp_path / "home"
    home.mkdir()
    for k, v in env_for(lake, home).items():
        monkeypatch.setenv(k, v)
    storage = LakeStorage(str(lake))
    big_file(storage, 500)
    elsewhere = claims.Claim(storage, "raw/ndjson/big.ndjson", run_id="run-on-another-host", lease=4)
    monkeypatch.setattr(claims.socket, "gethostname", lambda: "another-host")
    assert elsewhere.acquire() is None
    monkeypatch.undo()
    for k, v in env_for(lake, home).items():
        monkeypatch.setenv(k, v)

    assert cli.main(["run"]) == 0
    out = capsys.readouterr().out
    assert "skipped logs: raw/ndjson/big.ndjson (another run is ingesting it" in out
    assert "logs: 0 file(s) ingested" in out and "stay in raw/" not in out
    assert storage.list_files("raw")  # untouched, still claimed

    holder = elsewhere.holder()
    assert holder.host == "another-host" and not holder.expired
    time.sleep(max(0.0, (dt.datetime.fromisoformat(holder.expires_at)
                         - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 0.2)
    assert cli.main(["run"]) == 0
    assert "logs: 1 file(s) ingested" in capsys.readouterr().out
    assert_ingested_once(storage, 500)


def upload(src: Path, storage: LakeStorage) -> None:
    for path in sorted(src.rglob("*")):
        if path.is_file():
            storage.write_bytes(str(path.relative_to(src)), path.read_bytes())


def test_two_runs_together_on_an_s3_lake_then_one_more_equal_one_clean_run(generated_logs, tmp_path, lake_snapshot, s3_lake_root,
                                                                          monkeypatch, capsys, spark):
    """The same on S3 (moto's server): claims by conditional PUT, the build claim an object too."""
    raw, reference = generated_logs
    storage = LakeStorage(s3_lake_root)
    upload(raw, storage)
    home = tmp_path / "home"
    home.mkdir()
    procs = [lake_run(s3_lake_root, home) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[-2000:] for o in outs]
    assert not any("stay in raw/" in o for o in outs)
    code, out = lake_here(["run"], s3_lake_root, home, monkeypatch, capsys)
    assert code == 0, out[-3000:]
    assert lake_snapshot(s3_lake_root) == reference


def test_the_landing_sensor_and_the_cli_racing_on_the_same_files(generated_logs, tmp_path, lake_snapshot, monkeypatch, spark,
                                                               capsys):
    """The sensor's run (in this process) and a `lake run` (another) take the same new files: each
    file is ingested by one of them, and the lake ends as one clean run leaves it."""
    from dagster import DagsterInstance, build_sensor_context

    from lake_assets.definitions import build_defs

    raw, reference = generated_logs
    lake, home = tmp_path / "lake", tmp_path / "home"
    shutil.copytree(raw, lake)
    home.mkdir()
    for k, v in env_for(lake, home).items():
        monkeypatch.setenv(k, v)
    defs = build_defs(str(lake))
    with DagsterInstance.get() as instance:
        sensor = defs.resolve_sensor_def("logs_landing_sensor")
        with build_sensor_context(instance=instance, resources=defs.resources) as context:
            requests = sensor(context).run_requests
        assert requests
        files = sum(len(r.run_config["ops"]["ingest_logs"]["config"]["paths"]) for r in requests)
        cli_run = lake_run(lake, home)
        job = defs.resolve_job_def("ingest_logs_job")
        by_sensor = 0
        for request in requests:
            result = job.execute_in_process(run_config=request.run_config, instance=instance, raise_on_error=False)
            assert result.success
            by_sensor += result.output_for_node("ingest_logs")["ingested"] + \
                result.output_for_node("ingest_logs")["rejected"]
        out = cli_run.communicate(timeout=900)[0]
    assert cli_run.returncode == 0, out[-3000:]
    by_cli = int(re.search(r"logs: (\d+) file\(s\) ingested", out).group(1))
    assert by_sensor + by_cli == files  # each file once, by one or the other
    code, out = lake_here(["run"], lake, home, monkeypatch, capsys)
    assert code == 0, out[-3000:]
    assert lake_snapshot(str(lake)) == reference
