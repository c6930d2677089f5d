"""Deduplication across dates built in separate runs: a re-delivery whose timestamp moved across midnight.

The first run builds 2024-03-01; a later file re-delivers a transaction now dated 2024-03-02 (the
latest delivery wins) and an event now dated 2024-03-01 23:59:50 (the earliest ts wins). Silver of a
date reads bronze of its window, so the neighbours holding bronze are stale too and `lake run` rebuilds
them: each key ends up in silver once, on the winner's date, and the loser is quarantined as `duplicate`.
"""
import datetime as dt
import json

import pytest

from lake_assets.lake import LakeStorage

D1, D2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)


@pytest.fixture
def rows(read_parquet):
    """``rows(storage, prefix)``: every row under a prefix (the shared pyarrow reader), its
    ``event_date`` folder as ``_day``."""

    def _rows(storage: LakeStorage, prefix: str) -> list[dict]:
        return read_parquet(storage, prefix, hive={"event_date": "_day"}).to_pylist()

    return _rows


@pytest.fixture
def keys(rows):
    """``keys(storage, zone, key)``: a zone's keys with their day (and, in quarantine, the reason)."""

    def _keys(storage: LakeStorage, zone: str, key: str) -> list[tuple]:
        if zone.startswith("silver"):
            return sorted((r[key], r["_day"]) for r in rows(storage, zone))
        return sorted((json.loads(r["record"]).get(key) or json.loads(r["record"]).get("eventId")
                       or json.loads(r["record"]).get("txn_id"), r["_day"], r["reason"]) for r in rows(storage, zone))

    return _keys


@pytest.fixture
def run(small_commerce_lake, instance):
    # (Three-row days: one duplicate is a third of a partition, well above the default ERROR rate.)
    from lake_assets.domains import DOMAINS
    from lake_assets.staleness import domain_status

    defs, storage, _run = small_commerce_lake

    def _stale(asset: str) -> list[str]:
        status = domain_status(defs, instance, domain="commerce", sources=DOMAINS["commerce"].source_keys(),
                               build_job="commerce_pipeline_job")
        return sorted(s.partition for s in status.stale if s.asset == asset)

    return storage, _run, _stale


def test_redelivery_across_midnight_is_kept_once_on_the_winners_date(run, rows, keys):
    storage, lake_run, _ = run
    storage.write_text("raw/transactions/2024-03-01_001.csv",
                       "transaction_id,user_id,amount,currency,status,created_at\n"
                       "t1,u1,10.00,USD,pending,2024-03-01T23:59:59Z\n"
                       "t2,u1,5.00,USD,completed,2024-03-01T12:00:00Z\n")
    storage.write_text("raw/events/2024-03-01_001.ndjson", "\n".join(json.dumps(e) for e in [
        {"event_id": "e1", "user_id": "u1", "event_type": "login", "ts": "2024-03-02T00:00:30Z"},
        {"event_id": "e2", "user_id": "u1", "event_type": "logout", "ts": "2024-03-01T10:00:00Z"},
    ]) + "\n")
    assert lake_run().touched == [D1.isoformat(), D2.isoformat()]

    # t1 re-delivered, corrected past midnight and completed: ingestion touches 2024-03-02 only;
    # `lake run` rebuilds 2024-03-01 with it (it holds bronze within the window), 2024-03-03 has none.
    storage.write_text("raw/transactions/2024-03-02_001.csv",
                       "txn_id,userId,total,currency,status,created\n"
                       "t1,u1,10.00,USD,completed,2024-03-02T00:00:01Z\n")
    second = lake_run()
    assert second.touched == [D1.isoformat(), D2.isoformat()]
    tx = rows(storage, "silver/transactions")
    assert sorted((r["transaction_id"], r["_day"], r["status"]) for r in tx) == [
        ("t1", "2024-03-02", "completed"), ("t2", "2024-03-01", "completed")]
    assert keys(storage, "quarantine/transactions", "transaction_id") == [("t1", "2024-03-01", "duplicate")]
    facts = rows(storage, "gold/fact/fact_transactions")
    assert sorted((r["transaction_id"], r["_day"]) for r in facts) == [("t1", "2024-03-02"), ("t2", "2024-03-01")]
    revenue = {r["_day"]: str(r["revenue"]) for r in rows(storage, "gold/mart/daily_revenue")}
    assert revenue == {"2024-03-01": "5.00", "2024-03-02": "10.00"}

    # e1 re-sent with an earlier clock reading (2024-03-01): the earliest ts wins. Ingestion touches
    # 2024-03-01 only; 2024-03-02 reads it through its window, so it is rebuilt too and its copy loses.
    storage.write_text("raw/events/2024-03-02_001.ndjson", json.dumps(
        {"eventId": "e1", "userId": "u1", "type": "login", "timestamp": "2024-03-01T23:59:50Z"}) + "\n")
    third = lake_run()
    assert third.touched_ingest == {D1.isoformat()} and third.touched == [D1.isoformat(), D2.isoformat()]
    assert keys(storage, "silver/events", "event_id") == [("e1", "2024-03-01"), ("e2", "2024-03-01")]
    assert keys(storage, "quarantine/events", "event_id") == [("e1", "2024-03-02", "duplicate")]
    (e1,) = [r for r in rows(storage, "silver/events") if r["event_id"] == "e1"]
    assert e1["ts"] == dt.datetime(2024, 3, 1, 23, 59, 50, tzinfo=dt.timezone.utc)


def test_new_bronze_makes_its_date_and_the_neighbours_holding_bronze_stale(run):
    storage, lake_run, stale = run
    storage.write_text("raw/users/2024-03-05_001.csv",
                       "user_id,email,country,status,created_at,updated_at\n"
                       "u1,a@x.io,DE,active,2024-03-05T08:00:00Z,2024-03-05T08:00:00Z\n")
    lake_run()
    assert stale("silver_users") == []
    # A user version dated 2024-03-06: that date, and 2024-03-05 (holding bronze within the window),
    # are stale; 2024-03-07 holds none, so there is nothing to build there.
    storage.write_text("raw/users/2024-03-06_001.csv",
                       "user_id,email,country,status,created_at,updated_at\n"
                       "u1,b@x.io,DE,active,2024-03-05T08:00:00Z,2024-03-06T08:00:00Z\n")
    assert lake_run().touched == ["2024-03-05", "2024-03-06"]
    assert stale("silver_users") == []


def test_new_bronze_for_a_date_asks_to_rebuild_its_window(lake_root, instance):
    """Automation: bronze of 2024-03-02 changing requests silver of 03-01, 03-02 and 03-03."""
    from dagster import AssetKey, AssetMaterialization, evaluate_automation_conditions

    from lake_assets.definitions import build_defs

    defs = build_defs(lake_root)
    tick0 = evaluate_automation_conditions(defs=defs, instance=instance)
    instance.report_runless_asset_event(AssetMaterialization("bronze_transactions", partition=D2.isoformat()))
    tick1 = evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick0.cursor)
    assert tick1.get_requested_partitions(AssetKey("silver_transactions")) == {"2024-03-01", "2024-03-02", "2024-03-03"}
    assert tick1.get_requested_partitions(AssetKey("silver_events")) == set()

