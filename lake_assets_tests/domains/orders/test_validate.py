"""Validation of landing sets in Spark: routing with reasons, silver's current state, archive, idempotence."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from lake_assets.domains.orders.generator import create_source_tables
from lake_assets.domains.orders.source import orders_table
from lake_assets.domains.orders.validate import validate_set

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def row(order_id, status="PLACED", amount="10.00", currency="EUR", minutes=0, order_ts=T0, **kw):
    return {"order_id": order_id, "customer_id": f"C{order_id}", "status": status,
            "amount": None if amount is None else Decimal(amount), "currency": currency,
            "order_ts": order_ts, "updated_at": T0 + dt.timedelta(minutes=minutes), **kw}


def write(url: str, *rows: dict) -> None:
    """Insert or replace source rows (an update is a new version of the order)."""
    create_source_tables(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for r in rows:
            conn.execute(sa.delete(orders_table).where(orders_table.c.order_id == r["order_id"]))
            conn.execute(sa.insert(orders_table).values(**r))
    engine.dispose()


@pytest.fixture
def env(tmp_path, make_env):
    return make_env(f"sqlite:///{tmp_path}/s.db", f"sqlite:///{tmp_path}/w.db")


def files_content(storage, prefix) -> dict[str, bytes]:
    return {f.path: storage.read_bytes(f.path) for f in storage.list_files(prefix, hidden=True)}


def test_invalid_rows_are_discarded_with_every_reason_and_the_set_is_archived_unchanged(
        env, spark, readers, read_parquet):
    write(env.source.url,
          row(1), row(2, "PAID", "0.00", "USD", order_ts=T0 - dt.timedelta(days=1)), row(3, "RETURNED", "999999.99"),
          row(10, "shipped"), row(11, None), row(12, "PAID", "-5.00"), row(13, "PAID", None),
          row(14, "PAID", "1000000.01"), row(15, currency="EURO"), row(16, currency=None),
          row(17, "UNKNOWN", "-1.00", "eu"), row(18, order_ts=None))
    landed = env.extract()
    landing = files_content(env.storage, landed.landing)

    result = validate_set(spark, env.storage, landed.set_name)

    assert (result.rows, result.valid, result.discarded) == (12, 3, 9)
    discarded = read_parquet(env.storage, "discarded/orders").to_pylist()
    assert {r["order_id"]: r["reasons"] for r in discarded} == {
        10: ["status_invalid"], 11: ["status_invalid"], 12: ["amount_negative"], 13: ["amount_missing"],
        14: ["amount_too_large"], 15: ["currency_invalid"], 16: ["currency_invalid"],
        17: ["status_invalid", "amount_negative", "currency_invalid"], 18: ["order_ts_missing"]}
    assert all(r["reason"] == r["reasons"][0] and r["_landing_set"] == landed.set_name for r in discarded)
    assert readers.silver_orders(env.storage) == {
        1: ("PLACED", Decimal("10.00"), "EUR"), 2: ("PAID", Decimal("0.00"), "USD"),
        3: ("RETURNED", Decimal("999999.99"), "EUR")}
    assert sorted(f.path.split("/")[3] for f in env.storage.list_files("silver/staging/orders")) == [
        "order_date=2024-02-29", "order_date=2024-03-01"]
    # The archive holds the landing files byte for byte; the landing zone is empty.
    archived = files_content(env.storage, f"archive/orders/{landed.set_name}")
    assert {p.rsplit("/", 1)[1]: b for p, b in archived.items()} == \
        {p.rsplit("/", 1)[1]: b for p, b in landing.items()}
    assert env.storage.list_files("bronze", hidden=True) == []


def test_silver_keeps_the_newest_version_in_any_processing_order_and_reprocessing_changes_nothing(
        env, spark, readers, read_parquet):
    write(env.source.url, row(1), row(2), row(3), row(4))
    first = env.extract()
    # Later: 1 ships, 2 turns invalid, 3 moves to another order date, 4 is untouched, 5 is new.
    write(env.source.url, row(1, "SHIPPED", minutes=5), row(2, "lost", minutes=5),
          row(3, "PAID", minutes=5, order_ts=T0 + dt.timedelta(days=2)), row(5, "PAID", minutes=5))
    second = env.extract()

    # The newer set is validated first (a failed run retried later, say).
    validate_set(spark, env.storage, second.set_name)
    validate_set(spark, env.storage, first.set_name)
    expected = readers.valid_source_orders(env.source.url)
    assert set(expected) == {1, 3, 4, 5}
    assert readers.silver_orders(env.storage) == expected

    # Processing a set again (from the archive) changes no silver or discarded content.
    silver_before = read_parquet(env.storage, "silver").sort_by("order_id")
    discarded_before = read_parquet(env.storage, "discarded").sort_by("order_id")
    for name in (first.set_name, second.set_name):
        validate_set(spark, env.storage, name)
    assert read_parquet(env.storage, "silver").sort_by("order_id").equals(silver_before)
    assert read_parquet(env.storage, "discarded").sort_by("order_id").equals(discarded_before)
    assert readers.silver_orders(env.storage) == expected


def test_an_order_leaves_silver_when_its_newest_version_is_invalid_and_returns_when_fixed(env, spark, readers):
    write(env.source.url, row(1), row(2))
    validate_set(spark, env.storage, env.extract().set_name)
    write(env.source.url, row(1, "???", minutes=1))
    validate_set(spark, env.storage, env.extract().set_name)
    assert set(readers.silver_orders(env.storage)) == {2}
    write(env.source.url, row(1, "PAID", minutes=2))
    validate_set(spark, env.storage, env.extract().set_name)
    assert readers.silver_orders(env.storage) == readers.valid_source_orders(env.source.url)
    assert readers.silver_orders(env.storage)[1][0] == "PAID"


def test_a_set_without_manifest_is_not_validated(env, spark):
    from dagster import Failure

    with pytest.raises(Failure, match="no manifest"):
        validate_set(spark, env.storage, "extracted_at=2024-03-01T000000.000000Z")


def test_one_run_over_several_sets_registers_each_partition_as_the_last_set_left_it(
        env, spark, readers, catalog_matches_lake):
    """The UI's default validation (every waiting set in one run): a day written by one set and emptied by
    a later one ends deleted, out of the catalog, and the run succeeds."""
    from lake_assets.domains.orders.tables import TABLES

    write(env.source.url, row(1, order_ts=T0), row(2, order_ts=T0 + dt.timedelta(days=1)))
    env.extract()
    # Order 1 moves to the next day: its old day is left without orders.
    write(env.source.url, row(1, order_ts=T0 + dt.timedelta(days=1), minutes=5))
    env.extract(run_id="second")
    result = env.defs.resolve_job_def("orders_validate_job").execute_in_process(instance=env.instance,
                                                                                raise_on_error=False)
    assert result.success
    assert not env.storage.exists("silver/staging/orders/order_date=2024-03-01/part-00000.parquet")
    assert sorted(readers.silver_orders(env.storage)) == [1, 2]
    catalog_matches_lake(env.defs.resources, TABLES)
    assert "order_date=2024-03-01" not in env.defs.resources["catalog"].describe(TABLES[0]).partitions
