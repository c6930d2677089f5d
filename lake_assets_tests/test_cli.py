"""The `lake` CLI and the Dagster CLI, as a data engineer runs them."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from lake_assets import cli
from lake_assets.lake import LakeStorage


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LAKE_ROOT", str(lake))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return lake, home


def test_generate_run_summary_and_failing_check_exit_code(cli_env, spark, capsys, monkeypatch, read_parquet):
    lake, home = cli_env
    start = dt.date(2024, 5, 1)
    assert cli.main(["generate", "logs", "--days", "2", "--records-per-day", "150", "--start", start.isoformat(),
                     "--bad-share", "0.05", "--bad-files", "3"]) == 0
    assert len(LakeStorage(str(lake)).list_files("raw")) > 3

    assert cli.main(["run"]) == 0
    out = capsys.readouterr().out
    assert "logs: ingesting" not in out and "ingested" in out and "done in" in out
    storage = LakeStorage(str(lake))
    assert storage.list_files("raw") == []
    assert storage.list_files("analytics/daily_activity/date=2024-05-01")
    # The runs are in the instance the UI opens.
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        jobs = sorted({r.job_name for r in instance.get_runs()})
    # (and the lake report, which the analytics room rebuilds from what the logs domain wrote)
    assert jobs == ["analytics_pipeline_job", "ingest_logs_job", "logs_pipeline_job"]

    # The summary reads the lake back through the registry, the catalog and SQL: every table of every
    # domain, rows from the catalog, rejects by reason, a gold answer per domain.
    cli.print_summary(storage)
    summary = capsys.readouterr().out
    table = read_parquet(storage, "analytics/daily_activity")
    gold = table.num_rows
    line = next(x for x in summary.splitlines() if x.strip().startswith("logs.daily_activity "))
    assert line.split()[2:4] == ["2", str(gold)]  # partitions, rows
    assert "commerce.daily_revenue" in summary and "orders.discarded" in summary  # declared, empty
    assert "Rejected and quarantined rows by reason" in summary and "logs.rejected_records" in summary
    assert "logs: top services by server errors" in summary
    logs_landing = next(x for x in summary.splitlines() if x.strip().startswith("logs "))
    assert logs_landing.split()[1:] == ["0", "3"]  # nothing waiting, three files rejected whole

    # lake sql answers what the files hold; the catalog lists every table.
    assert cli.main(["sql", "--format", "csv", "select count(*) as n, sum(requests) as r from logs.daily_activity"]) == 0
    import csv

    assert list(csv.reader(capsys.readouterr().out.splitlines())) == [
        ["n", "r"], [str(gold), str(sum(table.column("requests").to_pylist()))]]
    assert cli.main(["catalog", "list", "--format", "json"]) == 0
    listed = {e["table"]: e for e in json.loads(capsys.readouterr().out)}
    assert listed["logs.daily_activity"]["partition_keys"] == ["date date"]
    assert listed["logs.daily_activity"]["rows"] == gold and listed["logs.access"]["partitions"] == 2
    assert not listed["commerce.daily_revenue"]["registered"]

    # A lake whose catalog is gone (or was built elsewhere): `lake sql` says what to do; `lake catalog
    # sync` registers every table from the lake's files, and the catalog lists the same as before.
    import shutil

    shutil.rmtree(os.path.dirname(os.environ["LAKE_CATALOG_PATH"]))
    assert cli.main(["sql", "select 1"]) == 1
    assert "lake catalog sync" in capsys.readouterr().err
    assert cli.main(["catalog", "sync"]) == 0
    capsys.readouterr()
    assert cli.main(["catalog", "list", "--format", "json"]) == 0
    again = {e["table"]: e for e in json.loads(capsys.readouterr().out)}
    # Every declared table is registered now (the empty ones as empty views), with the same partitions.
    assert all(e["registered"] for e in again.values())
    assert {k: (e["partitions"], e["rows"]) for k, e in again.items() if e["partitions"]} == {
        k: (e["partitions"], e["rows"]) for k, e in listed.items() if e["partitions"]}
    assert cli.main(["catalog", "ddl"]) == 0
    ddl = capsys.readouterr().out
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS lake_logs.daily_activity" in ddl
    assert "PARTITIONED BY (`date` date)" in ddl and "ALTER TABLE lake_logs.access ADD IF NOT EXISTS" in ddl

    # A blocking check that fails makes `lake run` exit non-zero and say which check.
    monkeypatch.setenv("LAKE_REJECT_RATE_WARN", "0")
    monkeypatch.setenv("LAKE_REJECT_RATE_ERROR", "0")
    assert cli.main(["generate", "logs", "--days", "1", "--records-per-day", "100", "--seed", "3",
                     "--start", "2024-05-03", "--bad-share", "0.1", "--bad-files", "0"]) == 0
    assert cli.main(["run"]) == 1
    out = capsys.readouterr().out
    assert "FAILED logs: logs_pipeline_job for 2024-05-03..2024-05-03" in out
    assert "blocking check failed: processed_logs:processed_logs_reject_rate" in out
    # Gold for that day was not built: the blocking check guarded it.
    assert not storage.list_files("analytics/daily_activity/date=2024-05-03")


def test_demo_of_a_domain_generates_runs_and_summarises_it_alone(cli_env, spark, capsys, monkeypatch, read_parquet):
    """`lake demo DOMAIN` (the README's first command, for one domain): sample data for that domain only,
    `lake run` of it, the summary read back from the lake and where to look next. A check warning on
    every date of the range run is one line naming how many dates and which (not a line per date); an
    unknown domain is refused before anything is generated."""
    lake, _ = cli_env
    storage = LakeStorage(str(lake))
    assert cli.main(["demo", "logs", "nope"]) == 2
    assert "no domain nope; the domains are logs, " in capsys.readouterr().out
    assert storage.list_files("raw") == []

    monkeypatch.setenv("LAKE_REJECT_RATE_WARN", "0")  # every date's rejects warn; none is an error
    assert cli.main(["demo", "logs", "--days", "2", "--records-per-day", "60", "--bad-share", "0.1",
                     "--bad-files", "1"]) == 0
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("[lake] ")]
    assert progress[0].startswith("[lake] logs: wrote") and "logs: 9 file(s) ingested" in out
    assert {line.split()[1] for line in progress} <= {"logs:", "WARN", "done"}  # that domain alone
    assert storage.list_files("raw") == [] and not storage.list_files("validated/commerce")
    [warn] = [line for line in out.splitlines() if "WARN" in line and "reject_rate" in line]
    rejects = storage.list_files("rejected/data_quality")  # year=/month=/day= of each date with rejects
    dates = sorted({"-".join(p.split("=")[1] for p in f.path.split("/")[2:5]) for f in rejects})
    assert len(dates) >= 2
    assert f"on {len(dates)} partition(s) {dates[0]}..{dates[-1]}" in warn, warn
    gold = read_parquet(storage, "analytics/daily_activity", hive={"date": "_date"})
    line = next(x for x in out.splitlines() if x.strip().startswith("logs.daily_activity "))
    # partitions holding rows, and rows, from the catalog
    assert line.split()[2:4] == [str(len(set(gold.column("_date").to_pylist()))), str(gold.num_rows)]
    assert "Next:" in out and storage.root_uri in out and "lake report --open` builds and opens it" in out


def test_lake_ui_serves_the_code_location_and_the_runs_of_the_lakes_instance(cli_env, capsys):
    """`lake ui` (the README's "where to look next"): `dagster dev` on the lake's DAGSTER_HOME, its code
    location loaded with every domain's jobs, and a run `lake` recorded there listed by the UI's GraphQL."""
    import signal
    import socket
    import time
    import urllib.request

    from dagster import DagsterInstance

    lake, home = cli_env
    assert cli.main(["report"]) == 0  # a run recorded on the lake's instance (no Spark needed)
    with DagsterInstance.from_config(str(home)) as instance:
        [recorded] = instance.get_runs()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lake_assets.cli", "ui", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    query = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError "
             "{ __typename ... on PythonError { message } } } } } repositoriesOrError { ... on RepositoryConnection "
             "{ nodes { jobs { name } } } } runsOrError { ... on Runs { results { runId jobName status } } } }")
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the UI did not come up"
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query}).encode(),
                                         headers={"Content-Type": "application/json"})
        data = json.loads(urllib.request.urlopen(request, timeout=60).read())["data"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # dagster dev, its webserver, daemon and code servers
        out = proc.communicate(timeout=60)[0]
    [entry] = data["workspaceOrError"]["locationEntries"]
    assert (entry["name"], entry["loadStatus"], entry["locationOrLoadError"]["__typename"]) == (
        "lake_assets", "LOADED", "RepositoryLocation"), entry
    jobs = {j["name"] for n in data["repositoriesOrError"]["nodes"] for j in n["jobs"]}
    assert {"lake_run_job", "logs_pipeline_job", "commerce_pipeline_job", "orders_validate_job",
            "tpcds_months_job", "analytics_pipeline_job"} <= jobs
    runs = data["runsOrError"]["results"]
    assert [(r["runId"], r["jobName"], r["status"]) for r in runs] == [(recorded.run_id, "lake_report_job", "SUCCESS")]
    assert f"LAKE_ROOT={lake} DAGSTER_HOME={home}; UI on {url}" in out


def test_dagster_cli_backfills_a_range_in_one_run(cli_env, spark, tmp_path, read_parquet):
    """`dagster asset materialize --partition-range` over several days: one run, every partition built."""
    lake, home = cli_env
    storage = LakeStorage(str(lake))
    days = [dt.date(2024, 6, 1) + dt.timedelta(days=i) for i in range(4)]
    storage.write_text("raw/ndjson/f.ndjson", "".join(
        json.dumps({"timestamp": f"{d}T08:00:00Z", "service": "web", "request_id": f"r{i}", "method": "GET",
                    "path": "/", "status": 200}) + "\n" for i, d in enumerate(days)))
    # Ingest only (no build), as the landing sensor would.
    from dagster import DagsterInstance

    from lake_assets.definitions import build_defs

    with DagsterInstance.from_config(str(home)) as instance:
        job = build_defs(str(lake)).resolve_job_def("ingest_logs_job")
        assert job.execute_in_process(instance=instance).success

    env = {**os.environ, "LAKE_ROOT": str(lake), "DAGSTER_HOME": str(home), "SPARK_MASTER": "local[1]"}
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "dagster"), "asset", "materialize",
         "-m", "lake_assets.definitions", "--select", "processed_logs,rejected_log_records,daily_activity",
         "--partition-range", f"{days[0]}...{days[-1]}"],
        env=env, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with DagsterInstance.from_config(str(home)) as instance:
        runs = [r for r in instance.get_runs() if r.job_name != "ingest_logs_job"]
        assert len(runs) == 1 and runs[0].tags["dagster/asset_partition_range_start"] == str(days[0])
        from dagster import AssetKey

        mats = instance.fetch_materializations(AssetKey("daily_activity"), limit=100).records
        assert sorted(m.partition_key for m in mats) == [str(d) for d in days]
    for d in days:
        [_] = storage.list_files(f"analytics/daily_activity/date={d}")  # one file a day
        assert read_parquet(storage, f"analytics/daily_activity/date={d}").column("requests").to_pylist() == [1]


def test_a_failing_commerce_check_stops_its_marts_and_the_cli_names_it(cli_env, spark, capsys, monkeypatch):
    """Another domain, another blocking check kind (the quarantine rate): `lake run commerce` exits 1
    naming the check, and the marts it guards are not built. Named, one domain runs alone: the logs
    files beside it wait, and analytics (which reads commerce gold) is not built; an unknown name is refused."""
    lake, home = cli_env
    monkeypatch.setenv("LAKE_QUARANTINE_RATE_WARN", "0")
    monkeypatch.setenv("LAKE_QUARANTINE_RATE_ERROR", "0")
    assert cli.main(["generate", "commerce", "--days", "1", "--records-per-day", "40", "--users", "6",
                     "--start", "2024-05-01", "--bad-share", "0.2", "--bad-files", "0"]) == 0
    assert cli.main(["generate", "logs", "--days", "1", "--records-per-day", "20", "--start", "2024-05-01",
                     "--bad-share", "0", "--bad-files", "0"]) == 0
    storage = LakeStorage(str(lake))
    waiting = sorted(f.path for f in storage.list_files("raw") if not f.path.startswith(
        ("raw/events/", "raw/users/", "raw/transactions/")))
    assert waiting
    capsys.readouterr()
    assert cli.main(["run", "commerce", "nope"]) == 2
    assert "no domain nope; the domains are logs, commerce" in capsys.readouterr().out
    assert cli.main(["run", "commerce"]) == 1
    out = capsys.readouterr().out
    assert "FAILED commerce: commerce_pipeline_job for 2024-05-01..2024-05-01" in out
    assert "blocking check failed: silver_events:silver_events_quarantine_rate" in out
    assert sorted(f.path for f in storage.list_files("raw")) == waiting  # the logs files still wait
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        assert sorted({r.job_name for r in instance.get_runs()}) == ["commerce_pipeline_job", "ingest_commerce_job"]
    assert storage.list_files("quarantine/events/event_date=2024-05-01")  # quarantine written, with reasons
    assert not storage.list_files("gold/mart/daily_revenue/event_date=2024-05-01")
    assert not storage.list_files("gold/fact/fact_events/event_date=2024-05-01")
