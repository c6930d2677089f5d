"""Permanent failures fail at once (issue 15 part 4): a bucket that is not there is asked once, not
retried, and named. (Transient ones are retried: the S3 end-to-end tests of the logs and commerce
lakes run through a fault-injecting proxy and leave the lake a clean run leaves.)"""
from __future__ import annotations


from lake_assets import cli


def test_a_missing_bucket_fails_at_once_without_retries(tmp_path, moto_server, monkeypatch, capsys, faulty_proxy):
    monkeypatch.setenv("LAKE_ROOT", "s3://no-such-bucket/lake")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with faulty_proxy(moto_server, every=10_000, drop_every=10_000) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        assert cli.main(["run"]) == 2
    assert "the bucket of the lake at s3://no-such-bucket/lake does not exist" in capsys.readouterr().err
    assert proxy.count <= 3  # asked once (a listing), not retried
