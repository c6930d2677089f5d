"""Extraction takes the source's types (PostgreSQL): text or bigint keys, numeric scales, naive and zoned
timestamps, extra columns carried to archive and silver (and columns added or dropped later), and a
table that cannot be landed refused before anything lands."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pytest
import sqlalchemy as sa
from pyspark.sql import types as T

from lake_assets.domains.orders import zones
from lake_assets.domains.orders.extract import history, read_state
from lake_assets.domains.orders.generator import generate_orders
from lake_assets.domains.orders.validate import validate_set

UTC = dt.timezone.utc
DAY = dt.date(2024, 3, 1)
SILVER_CHECKS = {"orders_silver_unique_order_id", "orders_silver_rows_accounted", "orders_silver_freshness"}


def sql(url: str, *statements: str, rows: list[dict] | None = None) -> None:
    """Run statements in one transaction; ``rows`` are the last one's parameters (one execution each)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for s in statements[:-1]:
                conn.execute(sa.text(s))
            conn.execute(sa.text(statements[-1]), rows or {})
    finally:
        engine.dispose()


def assert_clean(run) -> None:
    assert run.success, [r.failures for r in run.runs]
    assert not [c for r in run.runs for c in r.failed_checks + r.warned_checks]


def types_of(table: pa.Table) -> dict[str, pa.DataType]:
    return {f.name: f.type for f in table.schema}


def test_text_keys_through_the_jobs(pg_url, make_env, spark, readers, read_parquet):
    """The reported failure: a text order_id (``O000282``) now lands, validates and passes every check."""
    env = make_env(pg_url, pg_url, chunk_rows=70)
    for i in range(3):
        gen = generate_orders(pg_url, day=DAY + dt.timedelta(days=i), new_orders=90, seed=11, update_share=0.5,
                              invalid_share=0.1, same_ts_share=0.15, text_keys=True)
        assert gen.invalid_rows and (i == 0 or gen.updated_orders)
        run = env.run()
        assert_clean(run)
        assert run.landed_rows == gen.rows
        silver = readers.silver_orders(env.storage)
        assert silver == readers.valid_source_orders(pg_url)
        assert all(isinstance(k, str) and k.startswith("O") for k in silver)
    for zone in ("silver/staging/orders", "archive/orders", "discarded/orders"):
        assert types_of(read_parquet(env.storage, zone))["order_id"] == pa.string(), zone
    # The catalog registers the tables as the source typed them, and SQL reads the text keys.
    from lake_assets.domains.orders.tables import TABLES

    for t in TABLES:
        assert ("order_id", "string") in env.defs.resources["catalog"].describe(t).columns, t.qualified_name
    got = env.defs.resources["sql"].query("SELECT order_id FROM orders.orders ORDER BY order_id").column(0)
    assert got.to_pylist() == sorted(silver)


def test_bigint_keys_numeric_scale_naive_timestamps_and_extra_columns(pg_url, make_env, spark, readers, read_parquet):
    env = make_env(pg_url, pg_url)
    sql(pg_url, """CREATE TABLE orders (
            order_id bigint PRIMARY KEY, customer_id varchar(16), status varchar(16), amount numeric(14,4),
            currency char(3), order_ts timestamp, updated_at timestamp NOT NULL, channel text,
            gift boolean, ship_date date, weight double precision, qty smallint, tip numeric)""",
        "INSERT INTO orders VALUES (:id, 'C1', :status, :amount, 'EUR', :ts, :ts, :channel, true, "
        "'2024-03-05', 1.5, 2, :tip)",
        rows=[{"id": 1, "status": "PLACED", "amount": Decimal("12.3456"), "ts": "2024-03-01 23:30:00",
               "channel": "web", "tip": Decimal("0.123456789")},
              {"id": 2, "status": "PAID", "amount": Decimal("7.0001"), "ts": "2024-02-28 10:00:00",
               "channel": None, "tip": None},
              {"id": 3, "status": "lost", "amount": Decimal("1.0000"), "ts": "2024-03-01 10:00:00",
               "channel": "shop", "tip": Decimal("1")}])
    first = env.extract()
    landed = read_parquet(env.storage, first.landing)
    assert types_of(landed) == {
        "order_id": pa.int64(), "customer_id": pa.string(), "status": pa.string(), "amount": pa.decimal128(14, 4),
        "currency": pa.string(), "order_ts": pa.timestamp("us", tz="UTC"), "updated_at": pa.timestamp("us", tz="UTC"),
        "channel": pa.string(), "gift": pa.bool_(), "ship_date": pa.date32(), "weight": pa.float64(),
        "qty": pa.int64(), "tip": pa.decimal128(38, 9),
        "_extracted_at": pa.timestamp("us", tz="UTC"), "_extract_run_id": pa.string()}
    manifest = json.loads(env.storage.read_text(f"{first.landing}/{zones.MANIFEST}"))
    assert manifest["source_types"]["amount"] == "NUMERIC(14, 4)" and manifest["source_types"]["channel"] == "TEXT"
    # A naive timestamp is read as UTC: 23:30 stays on March 1st.
    assert {r["order_id"]: r["order_ts"] for r in landed.to_pylist()}[1] == dt.datetime(2024, 3, 1, 23, 30, tzinfo=UTC)

    result = validate_set(spark, env.storage, first.set_name)
    assert (result.rows, result.valid, result.discarded) == (3, 2, 1)
    assert readers.silver_orders(env.storage) == readers.valid_source_orders(pg_url) == {
        1: ("PLACED", Decimal("12.3456"), "EUR"), 2: ("PAID", Decimal("7.0001"), "EUR")}
    silver = read_parquet(env.storage, "silver/staging/orders")
    assert types_of(silver)["amount"] == pa.decimal128(14, 4) and types_of(silver)["order_id"] == pa.int64()
    assert {r["order_id"]: (r["channel"], r["tip"]) for r in silver.to_pylist()} == {
        1: ("web", Decimal("0.123456789")), 2: (None, None)}
    assert {r["order_id"]: r["channel"] for r in read_parquet(env.storage, "archive/orders").to_pylist()} \
        == {1: "web", 2: None, 3: "shop"}
    assert [(r["order_id"], r["channel"], r["reasons"]) for r in
            read_parquet(env.storage, "discarded/orders").to_pylist()] == [(3, "shop", ["status_invalid"])]
    # The schemas the catalog should register: the source's types and columns, lineage last.
    assert result.silver_schema.names == result.archive_schema.names == list(landed.schema.names)
    assert result.silver_schema["amount"].dataType == T.DecimalType(14, 4)
    assert result.silver_schema["channel"].dataType == T.StringType()
    assert result.discarded_schema.names[-5:] == ["reason", "reasons", "_extracted_at", "_extract_run_id",
                                                  "_landing_set"]

    # The source gains a column: rewritten partitions carry it, the untouched one (Feb 28) does not;
    # silver reads as one table, the column null where it was never extracted.
    sql(pg_url, "ALTER TABLE orders ADD COLUMN note text",
        "UPDATE orders SET status = 'PAID', note = 'fragile', updated_at = '2024-03-02 08:00:00' WHERE order_id = 1")
    sql(pg_url, "INSERT INTO orders (order_id, customer_id, status, amount, currency, order_ts, updated_at) "
        "VALUES (4, 'C4', 'PLACED', 3.5, 'USD', '2024-03-02 09:00:00', '2024-03-02 09:00:00')")
    second = validate_set(spark, env.storage, env.extract().set_name)
    assert second.silver_written == ["2024-03-01", "2024-03-02"]
    assert "note" in second.silver_schema.names and second.silver_schema.names[-2:] == ["_extracted_at",
                                                                                       "_extract_run_id"]
    assert "note" in second.archive_schema.names and "note" in second.discarded_schema.names
    assert "note" not in types_of(read_parquet(env.storage, "silver/staging/orders/order_date=2024-02-28"))
    assert readers.silver_orders(env.storage) == readers.valid_source_orders(pg_url)
    notes = {r["order_id"]: r["note"] for r in read_parquet(env.storage, "silver/staging/orders").to_pylist()}
    assert notes == {1: "fragile", 2: None, 4: None}

    # The source drops a column: silver keeps it, null in the versions extracted without it.
    sql(pg_url, "ALTER TABLE orders DROP COLUMN gift",
        "UPDATE orders SET status = 'SHIPPED', updated_at = '2024-03-03 08:00:00' WHERE order_id = 2")
    third = validate_set(spark, env.storage, env.extract().set_name)
    # Order 4 lies in the overlap re-read behind the mark and its row lost a column: a new row hash,
    # so it is landed again (at least once) and its partition rewritten with the same order.
    assert third.rows == 2 and third.silver_written == ["2024-02-28", "2024-03-02"]
    assert "gift" in third.silver_schema.names
    gifts = {r["order_id"]: r["gift"] for r in read_parquet(env.storage, "silver/staging/orders").to_pylist()}
    assert gifts == {1: True, 2: None, 4: None}
    assert readers.silver_orders(env.storage) == readers.valid_source_orders(pg_url)

    # The checks read whatever silver, discarded and the archive hold, and pass.
    checks = env.defs.resolve_job_def("orders_validate_job").execute_in_process(instance=env.instance,
                                                                                raise_on_error=False)
    evals = {e.check_name: e.passed for e in checks.get_asset_check_evaluations()}
    assert checks.success and evals == dict.fromkeys(SILVER_CHECKS, True)


@pytest.mark.parametrize("columns, message", [
    ("order_id text, loc point", r"column 'loc' has type point, which cannot be landed"),
    ("order_id text, payload json", r"column 'payload' has type JSON, which cannot be landed"),
    ("order_id numeric(10,2)", r"column 'order_id' has type NUMERIC\(10, 2\); it must be text or integer"),
    ("order_id bigint, amount_big numeric(40,2)", r"column 'amount_big' has type NUMERIC\(40, 2\)"),
    ("order_id bigint, _extracted_at text", r"column '_extracted_at' \(TEXT\) clashes with a column the lake adds"),
])
def test_a_table_that_cannot_be_landed_fails_naming_the_column_before_anything_lands(
        pg_url, make_env, columns, message):
    from dagster import Failure

    env = make_env(pg_url, pg_url)
    sql(pg_url, f"""CREATE TABLE orders ({columns}, customer_id text, status text, amount numeric(12,2),
            currency text, order_ts timestamptz, updated_at timestamptz NOT NULL)""",
        "INSERT INTO orders (order_id, customer_id, status, amount, currency, order_ts, updated_at) "
        "VALUES (1, 'C1', 'PAID', 1, 'EUR', now() - interval '1 hour', now() - interval '1 hour')")
    with pytest.raises(Failure, match=message):
        env.extract()
    assert env.storage.list_files("", hidden=True) == []
    assert read_state(env.source).mark is None and history(env.source) == []


def test_a_missing_required_column_is_named(pg_url, make_env):
    from dagster import Failure

    env = make_env(pg_url, pg_url)
    sql(pg_url, "CREATE TABLE orders (order_id text, customer_id text, status text, amount numeric(12,2), "
        "order_ts timestamptz, updated_at timestamptz NOT NULL)")
    with pytest.raises(Failure, match=r"required column 'currency' is missing"):
        env.extract()
    assert read_state(env.source).mark is None and env.storage.list_files("", hidden=True) == []
