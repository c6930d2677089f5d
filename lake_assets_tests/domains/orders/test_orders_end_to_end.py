"""Orders end to end through the code location's jobs: silver equals the source's current valid
orders after simulated days of updates, same-timestamp rows, a crash before the watermark and retries,
on PostgreSQL and on the embedded SQLite default (and once on an S3 lake)."""
from __future__ import annotations

import csv
import datetime as dt
import io

from lake_assets.domains.orders import extract as extract_mod
from lake_assets.domains.orders import zones
from lake_assets.domains.orders.extract import history, read_state
from lake_assets.domains.orders.generator import generate_orders

DAY = dt.date(2024, 3, 1)


def _crash(*args, **kwargs):
    raise RuntimeError("killed between landing and the watermark update")


def assert_clean(run) -> None:
    assert run.success, [r.failures for r in run.runs]
    assert not [c for r in run.runs for c in r.failed_checks + r.warned_checks]


def test_silver_is_the_sources_current_valid_orders_after_days_updates_and_a_crash(
        db_urls, make_env, spark, readers, monkeypatch, catalog_matches_lake, read_parquet):
    env = make_env(*db_urls, chunk_rows=80)
    url = env.source.url
    extracted = 0
    for i in range(3):
        gen = generate_orders(url, day=DAY + dt.timedelta(days=i), new_orders=120, seed=9, update_share=0.5,
                              invalid_share=0.1, same_ts_share=0.15)
        assert gen.invalid_rows and gen.same_ts_rows and (i == 0 or gen.updated_orders)
        if i == 1:
            monkeypatch.setattr(extract_mod, "commit_watermark", _crash)
            crashed = env.run()
            monkeypatch.undo()
            assert not crashed.success and [r.job for r in crashed.runs] == ["orders_extract_job"]
            assert len(zones.committed_sets(env.storage)) == 1  # landed, committed, not validated yet
            assert read_state(env.source).mark == history(env.source)[-1]["high_water_mark"]
        run = env.run()
        assert_clean(run)
        assert run.landed_rows == gen.rows
        assert len(run.landing_sets) == (2 if i == 1 else 1)  # the crashed run's set is validated too
        extracted += gen.rows * len(run.landing_sets)
        assert readers.silver_orders(env.storage) == readers.valid_source_orders(url)
        assert zones.committed_sets(env.storage) == []

    # Every extracted row went somewhere: archive = valid + discarded, each discarded row with its reasons.
    archive = read_parquet(env.storage, "archive/orders")
    discarded = read_parquet(env.storage, "discarded/orders")
    assert archive.num_rows == extracted
    assert discarded.num_rows and all(discarded.column("reasons").to_pylist())
    # No change in the source: nothing lands, silver stays the same.
    silver = readers.silver_orders(env.storage)
    again = env.run()
    assert_clean(again)
    assert (again.landed_rows, again.landing_sets) == (0, [])
    assert readers.silver_orders(env.storage) == silver
    marks = [h["high_water_mark"] for h in history(env.source)]
    assert marks == sorted(marks) and len(marks) == 4  # the crashed run committed nothing

    # The catalog holds exactly the lake's non-empty partitions of each orders table (partitions a merge
    # emptied were unregistered), and SQL over it answers what silver holds.
    from lake_assets.domains.orders.tables import TABLES

    catalog_matches_lake(env.defs.resources, TABLES)
    got = env.defs.resources["sql"].query("SELECT order_id, status FROM orders.orders ORDER BY order_id")
    assert [(r["order_id"], r["status"]) for r in got.to_pylist()] == sorted(
        (r["order_id"], r["status"]) for r in read_parquet(env.storage, "silver/staging/orders").to_pylist())

    # Each table's materializations carry their rows as a number the UI plots (silver: the partitions rewritten).
    from dagster import AssetKey

    for table in TABLES:
        [latest] = env.instance.fetch_materializations(AssetKey.from_user_string(table.asset), limit=1).records
        rows = latest.asset_materialization.metadata["dagster/row_count"]
        assert isinstance(getattr(rows, "value", rows), int), table.qualified_name

    # Each materialization and check left its numbers in the metrics zone.
    files = [f.path for f in env.storage.list_files("metrics/orders")]
    assert {p.split("/")[2] for p in files} == {"orders_landing", "orders_silver", "orders_discarded",
                                                "orders_archive"}
    outcomes = {r["metric"]: r["outcome"] for p in files
                for r in csv.DictReader(io.StringIO(env.storage.read_text(p))) if r["metric"].startswith("check.")}
    assert outcomes == {f"check.{n}": "passed" for n in (
        "orders_landing_watermark_monotonic", "orders_silver_unique_order_id", "orders_silver_rows_accounted",
        "orders_silver_freshness")}


def test_orders_on_an_s3_lake_under_faults_with_sse_kms(s3_lake_root, moto_server, tmp_path, make_env, spark, readers,
                                                       s3_keys, s3_encryption, catalog_matches_lake, faulty_proxy,
                                                       monkeypatch):
    """Two days of orders into an S3 lake reached through a proxy answering a share of requests 503
    SlowDown and dropping others, with LAKE_SSE=kms: retried, silver is the source's current valid
    orders, and every object the runs wrote names the lake's KMS key."""
    from lake_assets.lake import LakeStorage

    monkeypatch.setenv("LAKE_SSE", "kms")
    monkeypatch.setenv("LAKE_KMS_KEY_ID", "orders-key")
    source_url = f"sqlite:///{tmp_path}/s.db"
    with faulty_proxy(moto_server, every=40, drop_every=55) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        env = make_env(source_url, f"sqlite:///{tmp_path}/w.db", lake=s3_lake_root)
        for i in range(2):
            generate_orders(source_url, day=DAY + dt.timedelta(days=i), new_orders=60, seed=4, update_share=0.5,
                            invalid_share=0.1)
            assert_clean(env.run())
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    assert proxy.faults["slow_down"] >= 3 and proxy.faults["dropped"] >= 2
    storage = LakeStorage(s3_lake_root)
    assert readers.silver_orders(storage) == readers.valid_source_orders(source_url)
    from lake_assets.domains.orders.tables import TABLES

    catalog_matches_lake(make_env(source_url, f"sqlite:///{tmp_path}/w.db", lake=s3_lake_root).defs.resources,
                         TABLES)
    keys = s3_keys(s3_lake_root)
    assert any(k.startswith("silver/staging/orders/order_date=2024-03-0") for k in keys)
    assert sum(k.startswith("archive/orders/") and k.endswith("_manifest.json") for k in keys) == 2
    # Nothing left in the landing zone or the stage, not even a folder marker (deletes went through boto3).
    assert not [k for k in keys if k.startswith(("bronze/", "_staging/"))]
    encryption = s3_encryption(s3_lake_root)
    assert encryption and set(encryption.values()) == {("aws:kms", "orders-key")}, {
        k: v for k, v in encryption.items() if v != ("aws:kms", "orders-key")}


def test_a_freshness_lag_warns_without_failing_the_run(tmp_path, make_env, spark, monkeypatch):
    from lake_assets.domains.orders.source import orders_table
    import sqlalchemy as sa

    env = make_env(f"sqlite:///{tmp_path}/s.db", f"sqlite:///{tmp_path}/w.db")
    generate_orders(env.source.url, day=DAY, new_orders=20, seed=2)
    assert_clean(env.run())
    # A change the lake has not seen yet, three hours after the newest one it has.
    engine = sa.create_engine(env.source.url)
    with engine.begin() as conn:
        newest = conn.execute(sa.select(sa.func.max(orders_table.c.updated_at))).scalar()
        conn.execute(sa.update(orders_table).where(orders_table.c.order_id == 1)
                     .values(updated_at=newest + dt.timedelta(hours=3), status="PAID"))
    engine.dispose()
    monkeypatch.setenv("ORDERS_FRESHNESS_MAX_LAG_SECONDS", "3600")
    result = env.defs.resolve_job_def("orders_validate_job").execute_in_process(instance=env.instance,
                                                                                 raise_on_error=False)
    assert result.success  # nothing was waiting: the check reports the lag, as a warning
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    fresh = evals["orders_silver_freshness"]
    assert not fresh.passed and fresh.severity.value == "WARN"
    assert fresh.metadata["lag_seconds"].value == 3 * 3600
    assert evals["orders_silver_unique_order_id"].passed and evals["orders_silver_rows_accounted"].passed
