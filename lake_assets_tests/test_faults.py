"""Retries under faults (issue 15 part 4): S3 answering 503 SlowDown, connections dropped, a partition's
publish cut mid-request; a full `lake run` over every domain completes and gives the lake a clean run
gives. Permanent failures (a bucket that is not there) fail at once, with a clear message."""
from __future__ import annotations

import shutil


from lake_assets import cli

DAY = "2024-05-01"


def generate(root: str, home: str, mp) -> None:
    mp.setenv("LAKE_ROOT", root)
    mp.setenv("DAGSTER_HOME", home)
    for args in (["generate", "logs", "--days", "1", "--records-per-day", "80", "--start", DAY, "--bad-share", "0.05",
                  "--bad-files", "1"],
                 ["generate", "commerce", "--days", "1", "--records-per-day", "30", "--users", "5", "--start", DAY,
                  "--bad-share", "0", "--bad-files", "0"]):
        assert cli.main(args) == 0


def test_a_lake_run_under_s3_faults_gives_the_lake_a_clean_run_gives(tmp_path, moto_server, s3_lake_root, spark,
                                                                     monkeypatch, lake_snapshot, capsys, faulty_proxy):
    from lake_assets.lake import LakeStorage

    thresholds = {"LAKE_QUARANTINE_RATE_WARN": "1", "LAKE_QUARANTINE_RATE_ERROR": "1",
                  "LAKE_REJECT_RATE_WARN": "1", "LAKE_REJECT_RATE_ERROR": "1"}
    for k, v in thresholds.items():
        monkeypatch.setenv(k, v)
    # Orders from one source database (generated once, copied), so both lakes extract the same rows.
    clean_home, faulty_home = tmp_path / "clean_home", tmp_path / "faulty_home"
    clean_home.mkdir()
    faulty_home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(clean_home))
    assert cli.main(["generate", "orders", "--days", "1", "--orders-per-day", "30"]) == 0
    shutil.copy(clean_home / "orders_source.db", faulty_home / "orders_source.db")

    # The clean run: a local lake.
    clean = str(tmp_path / "clean")
    generate(clean, str(clean_home), monkeypatch)
    monkeypatch.setenv("LAKE_CATALOG_PATH", str(clean_home / "catalog.duckdb"))
    assert cli.main(["run"]) == 0
    reference = lake_snapshot(clean)
    assert reference["tables"]["orders.orders"] and reference["gold"]["logs.daily_activity"]

    # The same raw files on S3, reached through a proxy that fails a share of requests, and cuts the
    # first upload of a gold partition (the publish is retried whole: readers see old or new).
    generate(s3_lake_root, str(faulty_home), monkeypatch)  # the same files: the generators are seeded
    assert LakeStorage(s3_lake_root, endpoint_url=moto_server).list_files("raw")
    monkeypatch.setenv("LAKE_CATALOG_PATH", str(faulty_home / "catalog.duckdb"))
    with faulty_proxy(moto_server, every=40, drop_every=60, fail_first="/analytics/daily_activity/") as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        code = cli.main(["run"])
        out = capsys.readouterr().out
        assert code == 0, out[-3000:]
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    assert proxy.faults["slow_down"] > 10 and proxy.faults["dropped"] > 5 and proxy.faults["publish_cut"] == 1
    assert lake_snapshot(s3_lake_root) == reference


def test_a_missing_bucket_fails_at_once_without_retries(tmp_path, moto_server, monkeypatch, capsys, faulty_proxy):
    monkeypatch.setenv("LAKE_ROOT", "s3://no-such-bucket/lake")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with faulty_proxy(moto_server, every=10_000, drop_every=10_000) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        assert cli.main(["run"]) == 2
    assert "the bucket of the lake at s3://no-such-bucket/lake does not exist" in capsys.readouterr().err
    assert proxy.count <= 3  # asked once (a listing), not retried
