"""The logs lake end to end, through the code location's own jobs: local folder and moto's S3."""
from __future__ import annotations

import datetime as dt
import gzip
import json
import os

import pytest

from lake_assets.definitions import build_resources
from lake_assets.domains.logs.generator import generate_logs
from lake_assets.domains.logs.tables import TABLES
from lake_assets.lake import LakeStorage

START = dt.date(2024, 3, 1)
#: The generator places "future" records relative to this: it must be the ingestion clock.
NOW = dt.datetime.now(dt.timezone.utc)


def gold_by_key(read_parquet, storage: LakeStorage) -> dict[tuple[str, str], dict]:
    rows = read_parquet(storage, "analytics/daily_activity").to_pylist()
    return {(r["date"].isoformat(), r["service"]): r for r in rows}


def access(ts, service="web", rid="r1", status=200, **extra):
    return {"timestamp": ts, "service": service, "request_id": rid, "method": "GET", "path": "/",
            "status": status, **extra}


def write_ndjson(storage: LakeStorage, name: str, records: list) -> None:
    storage.write_text(f"raw/ndjson/{name}", "".join(json.dumps(r) + "\n" for r in records))


def assert_conserved(read_parquet, storage: LakeStorage, gen) -> None:
    """Every record of a readable file is in processed or rejected; every file archived or rejected."""
    processed_access = read_parquet(storage, "processed/logs/log_type=access").num_rows
    processed_error = read_parquet(storage, "processed/logs/log_type=error").num_rows
    rejected = read_parquet(storage, "rejected/data_quality")
    assert processed_access + processed_error + rejected.num_rows == gen.records
    assert rejected.num_rows == gen.bad_records
    assert processed_access == gen.access_records - gen.bad_access_records
    assert all(r for r in rejected.column("reasons").to_pylist())
    reason_counts: dict[str, int] = {}
    for reason in rejected.column("reason").to_pylist():
        reason_counts[reason] = reason_counts.get(reason, 0) + 1
    assert reason_counts == dict(gen.reason_counts)
    assert storage.list_files("raw") == []
    archived = storage.list_files("archive/validated")
    rejected_files = [f for f in storage.list_files("rejected/system/ingest") if not f.name.endswith(".reason.json")]
    assert len(archived) + len(rejected_files) == gen.files
    assert sorted(f.name.split("_2")[0] for f in rejected_files) == sorted(p.rsplit("/", 1)[1] for p in gen.bad_files)


def assert_catalog(read_parquet, storage: LakeStorage) -> None:
    """`lake sql`'s engine answering what pyarrow computes from the files."""
    import pyarrow.compute as pc

    from lake_assets.catalog.sql import LakeSQLResource

    gold = read_parquet(storage, "analytics/daily_activity")
    expected = gold.group_by("service").aggregate([("requests", "sum"), ("server_errors", "sum")]).sort_by("service")
    got = LakeSQLResource.from_env(lake_root=storage.root_uri).query(
        "SELECT service, sum(requests) AS requests_sum, sum(server_errors) AS server_errors_sum "
        "FROM logs.daily_activity GROUP BY service ORDER BY service")
    assert got.to_pylist() == expected.select(["service", "requests_sum", "server_errors_sum"]).to_pylist()
    rejected = read_parquet(storage, "rejected/data_quality")
    by_reason = LakeSQLResource.from_env(lake_root=storage.root_uri).query(
        "SELECT reason, count(*) AS n FROM logs.rejected_records GROUP BY reason")
    assert dict(zip(*by_reason.to_pydict().values())) == {
        r["values"]: r["counts"] for r in pc.value_counts(rejected.column("reason")).to_pylist()}


@pytest.mark.parametrize("where", ["local", "s3", "s3_faults"])
def test_end_to_end(where, request, spark, instance, monkeypatch, catalog_matches_lake, read_parquet, run_lake,
                    faulty_proxy):
    """A generated lake end to end, on a folder and on S3 (moto): every record and file accounted for,
    gold deduplicated, checks passed, metrics filed, every table in the catalog, the files where they
    belong and nothing left behind; on S3 with LAKE_CATALOG=glue, the Glue Data Catalog follows the
    run too. ``s3_faults``: the same run reaches S3 and Glue through a proxy answering a share of
    requests 503 SlowDown, dropping others and cutting the first upload of a gold partition; the
    retries leave exactly the lake the clean runs leave."""
    if where.startswith("s3"):
        root = request.getfixturevalue("s3_lake_root")
        monkeypatch.setenv("LAKE_CATALOG", "glue")
        monkeypatch.setenv("LAKE_GLUE_DATABASE_PREFIX", f"e2e_{root.split('/')[2].replace('-', '_')}_")
    else:
        root = request.getfixturevalue("lake_root")
    storage = LakeStorage(root)
    gen = generate_logs(storage.write_bytes, start=START, days=3, records_per_day=300, bad_share=0.03,
                        bad_files=4, seed=11, now=NOW)
    if where == "s3_faults":
        moto = request.getfixturevalue("moto_server")
        with faulty_proxy(moto, every=60, drop_every=90, fail_first="/analytics/daily_activity/") as proxy:
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
            result = run_lake(root, instance, "logs")
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
        assert proxy.faults["slow_down"] >= 3 and proxy.faults["dropped"] >= 2 and proxy.faults["publish_cut"] == 1
    else:
        result = run_lake(root, instance, "logs")
    assert result.success, [r.failures for r in result.runs]
    assert_conserved(read_parquet, storage, gen)
    gold = gold_by_key(read_parquet, storage)
    assert {d for d, _ in gold} == {(START + dt.timedelta(days=i)).isoformat() for i in range(3)}
    # Duplicated deliveries do not inflate requests: processed keeps them, gold does not.
    access_rows = read_parquet(storage, "processed/logs/log_type=access")
    distinct = {(r["event_date"], r["service"], r["request_id"]) for r in access_rows.to_pylist()}
    assert sum(r["requests"] for r in gold.values()) == len(distinct) < access_rows.num_rows
    # Every build ran as one run per contiguous range, and its checks passed.
    builds = [r for r in result.runs if r.job == "logs_pipeline_job"]
    assert all(not r.failed_checks and not r.warned_checks for r in builds)
    # The archive holds the original bytes.
    archived = storage.list_files("archive/validated/ndjson")[0]
    assert storage.read_bytes(archived.path)
    assert_metrics_zone(read_parquet, storage, builds[0].run_id, START.isoformat())
    assert_catalog(read_parquet, storage)
    catalog_matches_lake(build_resources(storage.root_uri), TABLES)
    if where.startswith("s3"):
        assert_lake_keys(request.getfixturevalue("s3_keys")(root))
        assert_glue(storage, request.getfixturevalue("moto_server"))
    else:
        assert_lake_keys(sorted(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
                                for folder, _, names in os.walk(root) for name in names))


def assert_lake_keys(all_keys: list[str]) -> None:
    """Every file of the lake (relative to its root, listed independently of the code under test)."""
    # (Arrow leaves zero-byte "folder/" markers behind when it deletes a folder's last object.)
    keys = [k for k in all_keys if not k.endswith("/")]
    assert not [k for k in keys if k.startswith("raw/")]
    assert "analytics/daily_activity/date=2024-03-01/part-00000.parquet" in keys
    assert "processed/logs/log_type=access/year=2024/month=03/day=02/part-00000.parquet" in keys
    assert any(k.startswith("rejected/data_quality/year=2024/month=03/day=01/") for k in keys)
    assert any(k.startswith("archive/validated/json_gzip/") for k in keys)
    assert not [k for k in keys if "_staging" in k or ".tmp-" in k]


def assert_glue(storage: LakeStorage, endpoint: str) -> None:
    """Glue, read back with boto3: every logs table, its columns, keys, location and partitions."""
    import boto3

    from lake_assets.catalog.base import scan_partitions

    glue = boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1")
    database = os.environ["LAKE_GLUE_DATABASE_PREFIX"] + "logs"
    for t in TABLES:
        got = glue.get_table(DatabaseName=database, Name=t.name)["Table"]
        assert [c["Name"] for c in got["StorageDescriptor"]["Columns"]] == [f.name for f in t.columns]
        assert [(k["Name"], k["Type"]) for k in got["PartitionKeys"]] == [(k.name, k.type) for k in t.partition_keys]
        assert got["StorageDescriptor"]["Location"] == storage.uri(t.location) + "/"
        parts = glue.get_partitions(DatabaseName=database, TableName=t.name)["Partitions"]
        assert sorted(tuple(p["Values"]) for p in parts) == sorted(e.values for e in scan_partitions(storage, t))


def assert_metrics_zone(read_parquet, storage: LakeStorage, run_id: str, day: str) -> None:
    """The shared metrics zone: processed_logs' counts, null rates, rule and check outcomes for the day."""
    from lake_assets.domains.logs.contract import RULE_NAMES
    from lake_assets.quality.metrics import read_metrics

    m = read_metrics(storage, f"metrics/logs/processed_logs/event_date={day}/{run_id}.csv")
    access = read_parquet(storage, f"processed/logs/log_type=access/year={day[:4]}/month={day[5:7]}/day={day[8:]}")
    rejected = read_parquet(storage, f"rejected/data_quality/year={day[:4]}/month={day[5:7]}/day={day[8:]}")
    assert int(m["access.rows"]["value"]) == access.num_rows
    assert int(m["quarantined_rows"]["value"]) == rejected.num_rows
    nulls = access.column("user_agent").null_count / access.num_rows
    assert abs(float(m["access.null_rate.user_agent"]["value"]) - nulls) < 1e-6
    broken = {r: 0 for r in RULE_NAMES}
    for reasons in rejected.column("reasons").to_pylist():
        for r in set(reasons):
            broken[r] += 1
    for rule, n in broken.items():
        assert (int(m[f"rule.{rule}"]["value"]), m[f"rule.{rule}"]["outcome"]) == (n, "failed" if n else "passed")
    for check in ("processed_logs_schema", "processed_logs_count_conservation", "processed_logs_reject_rate"):
        assert m[f"check.{check}"]["outcome"] == "passed"
    gold = read_metrics(storage, f"metrics/logs/daily_activity/event_date={day}/{run_id}.csv")
    assert gold["check.daily_activity_unique_date_service"]["outcome"] == "passed"


def test_hand_made_day_gives_exact_gold(lake_root, spark, instance, read_parquet, run_lake):
    storage = LakeStorage(lake_root)
    write_ndjson(storage, "a.ndjson", [
        access("2024-03-04T10:00:00Z", rid="r1", status=200, bytes_sent=100, latency_ms=10, user_id="u1",
               client_ip="1.1.1.1"),
        access("2024-03-04T23:30:00-02:00", rid="r2", status="503", latency_ms=30),  # 2024-03-05 UTC
        access("2024-03-04T11:00:00Z", rid="r3", status=404, bytes_sent=50, latency_ms=20, user_id="u1"),
        {"timestamp": "nope", "service": "web"},
    ])
    # The same request delivered again, in another format: counted once.
    with gzip.open(os.path.join(lake_root, "dup.json.gz"), "wt") as f:
        json.dump([access("2024-03-04T10:00:00Z", rid="r1", status=200, bytes_sent=100, latency_ms=10,
                          user_id="u1", client_ip="1.1.1.1")], f)
    storage.put_file(os.path.join(lake_root, "dup.json.gz"), "raw/json_gzip/dup.json.gz", move=True)
    storage.write_text("raw/xml_errors/e.xml", (
        "<errors>"
        + "<error><timestamp>2024-03-04T11:00:00Z</timestamp><service>db</service><level>critical</level>"
          "<message/></error>" * 2  # identical: one event
        + "<error><timestamp>2024-03-04T12:00:00Z</timestamp><service>web</service><level>WARN</level>"
          "<message>slow</message></error>"
        + "</errors>"))
    result = run_lake(lake_root, instance, "logs")
    assert result.success, [r.failures for r in result.runs]
    gold = gold_by_key(read_parquet, storage)
    web4 = gold[("2024-03-04", "web")]
    assert (web4["requests"], web4["client_errors"], web4["server_errors"]) == (2, 1, 0)
    assert (web4["unique_users"], web4["unique_clients"], web4["bytes_sent"]) == (1, 1, 150)
    assert (web4["error_events"], web4["critical_events"]) == (1, 0)
    assert web4["p50_latency_ms"] == 10.0 and web4["p95_latency_ms"] == 20.0
    db4 = gold[("2024-03-04", "db")]
    assert (db4["requests"], db4["error_events"], db4["critical_events"]) == (0, 1, 1)
    web5 = gold[("2024-03-05", "web")]
    assert (web5["requests"], web5["server_errors"], web5["bytes_sent"]) == (1, 1, 0)
    rejected = read_parquet(storage, "rejected/data_quality").to_pylist()
    assert [(r["reason"], r["reasons"], r["stage"], r["source_file"]) for r in rejected] == [
        ("missing_field:request_id", ["missing_field:request_id", "missing_field:method", "missing_field:path",
                                      "missing_field:status", "invalid_timestamp"], "processed", "raw/ndjson/a.ndjson")
    ]
    # An undatable record lands under its ingest date.
    today = dt.datetime.now(dt.timezone.utc).date()
    assert storage.list_files(f"rejected/data_quality/year={today:%Y}/month={today:%m}/day={today:%d}")
