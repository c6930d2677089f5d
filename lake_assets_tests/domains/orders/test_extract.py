"""Incremental extraction with a watermark, on the embedded SQLite default and on PostgreSQL (no Spark)."""
from __future__ import annotations

import datetime as dt
import json
import math
import socket
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from lake_assets.domains.orders import extract as extract_mod
from lake_assets.domains.orders import zones
from lake_assets.domains.orders.extract import DEFAULT_LANDING, commit_watermark, history, read_state
from lake_assets.domains.orders.generator import create_source_tables, generate_orders
from lake_assets.domains.orders.source import orders_table

UTC = dt.timezone.utc
DAY = dt.date(2024, 3, 1)


@pytest.fixture
def landed_rows(read_parquet):
    """``landed_rows(storage)``: every row in the landing zone (the shared pyarrow reader), with the set
    (``extracted_at=...`` folder) it sits in."""

    def _rows(storage) -> list[dict]:
        rows = read_parquet(storage, "bronze/landing/orders", hive={zones.SET_KEY: "_set"}).to_pylist()
        return [{**r, "_set": f"{zones.SET_KEY}={r['_set']}"} for r in rows]

    return _rows


def version(r: dict) -> tuple:
    return (r["order_id"], r["status"], None if r["amount"] is None else Decimal(str(r["amount"])).quantize(
        Decimal("0.01")), r["currency"], r["updated_at"])


def insert(url: str, *rows: dict) -> None:
    create_source_tables(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(orders_table), list(rows))
    engine.dispose()


def order(order_id: int, updated_at: dt.datetime, status: str = "PLACED", **kw) -> dict:
    return {"order_id": order_id, "customer_id": "C1", "status": status, "amount": Decimal("10.00"),
            "currency": "EUR", "order_ts": kw.pop("order_ts", updated_at), "updated_at": updated_at, **kw}


def test_first_run_is_a_full_load_in_chunks_with_lineage(db_urls, make_env, readers, landed_rows):
    env = make_env(*db_urls, chunk_rows=50)
    gen = generate_orders(env.source.url, day=DAY, new_orders=230, seed=3)
    result = env.extract(run_id="run-1")

    assert result.rows == result.read_rows == 230 and result.previous_mark is None
    assert len(result.files) == math.ceil(230 / 50)
    source = readers.source_rows(env.source.url)
    newest = max(r["updated_at"] for r in source.values())
    assert result.new_mark == newest == gen.newest_updated_at
    rows = landed_rows(env.storage)
    assert sorted(r["order_id"] for r in rows) == sorted(source)
    assert {r["_extract_run_id"] for r in rows} == {"run-1"}
    # Each part carries the run and the window; the manifest (the commit marker) the whole range.
    manifest = json.loads(env.storage.read_text(f"{result.landing}/_manifest.json"))
    assert manifest["run_id"] == "run-1" and manifest["rows"] == 230
    assert manifest["watermark_from"] is None and manifest["watermark_to"] == newest.isoformat()
    assert [f["rows"] for f in manifest["files"]] == [50, 50, 50, 50, 30]
    for f in result.files:
        with env.storage.open_random(f) as fh:
            kv = pq.ParquetFile(fh).schema_arrow.metadata
        assert kv[b"lake.run_id"] == b"run-1" and kv[b"lake.window_low"] == b""
        assert dt.datetime.fromisoformat(kv[b"lake.window_high"].decode()) >= newest
    state = read_state(env.source)
    assert (state.mark, state.last_run_id, state.rows) == (newest, "run-1", 230)


def test_incremental_days_land_every_change_exactly_once(db_urls, make_env, readers, landed_rows):
    env = make_env(*db_urls, chunk_rows=100)
    seen_versions: set[tuple] = set()
    for i in range(4):
        gen = generate_orders(env.source.url, day=DAY + dt.timedelta(days=i), new_orders=150, seed=5,
                              update_share=0.4, same_ts_share=0.15)
        assert gen.same_ts_rows >= 2 and (i == 0 or gen.updated_orders > 0)
        result = env.extract()
        # Exactly the rows the day wrote: nothing re-landed from the overlap, nothing missed.
        assert result.rows == gen.rows
        assert result.read_rows > result.rows or i == 0  # the overlap window was re-read
        new = {version(r) for r in landed_rows(env.storage) if r["_set"] == result.set_name}
        assert len(new) == gen.rows and not new & seen_versions
        seen_versions |= new
        # Every current row of the source is a landed version.
        assert {version(r) for r in readers.source_rows(env.source.url).values()} <= seen_versions

    # No source change: a second run lands nothing, writes no folder and keeps the mark.
    before = env.storage.list_files("bronze", hidden=True)
    mark = read_state(env.source).mark
    again = env.extract()
    assert (again.rows, again.landing, again.new_mark) == (0, None, mark)
    assert env.storage.list_files("bronze", hidden=True) == before
    marks = [h["high_water_mark"] for h in history(env.source)]
    assert marks == sorted(marks) and len(marks) == 5


def test_rows_at_the_mark_or_committed_late_are_landed_and_future_rows_wait(db_urls, make_env, landed_rows):
    env = make_env(*db_urls, lag_seconds=300)
    mark = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    insert(env.source.url, order(1, mark - dt.timedelta(hours=1)), order(2, mark), order(3, mark))
    assert env.extract().new_mark == mark

    # After that run: a row stamped exactly at the mark, one stamped 2 minutes before it (a long
    # transaction committing late), an order changed at the very same instant as the mark, and a
    # row stamped a day ahead of the database's clock (a skewed writer).
    future = dt.datetime.now(UTC) + dt.timedelta(days=1)
    insert(env.source.url, order(4, mark), order(5, mark - dt.timedelta(minutes=2)), order(6, future))
    engine = sa.create_engine(env.source.url)
    with engine.begin() as conn:
        conn.execute(sa.update(orders_table).where(orders_table.c.order_id == 3).values(status="PAID"))
    engine.dispose()
    result = env.extract()
    assert sorted((r["order_id"], r["status"]) for r in landed_rows(env.storage) if r["_set"] == result.set_name) \
        == [(3, "PAID"), (4, "PLACED"), (5, "PLACED")]
    # The future row did not push the mark past rows still to come.
    assert result.new_mark == mark
    insert(env.source.url, order(7, mark + dt.timedelta(seconds=1)))
    later = env.extract()
    assert [r["order_id"] for r in landed_rows(env.storage) if r["_set"] == later.set_name] == [7]
    assert env.extract().rows == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.mark.parametrize("broken", ["source", "state"])
def test_unreachable_database_fails_clearly_and_moves_no_watermark(tmp_path, make_env, broken, monkeypatch):
    from dagster import DagsterEventType

    monkeypatch.setenv("LAKE_RETRY_DELAY_SECONDS", "0.01")  # the backoff's first wait (then 3x, 7x)
    source, state = f"sqlite:///{tmp_path}/s.db", f"sqlite:///{tmp_path}/w.db"
    good = make_env(source, state)
    generate_orders(source, day=DAY, new_orders=10, seed=1)
    good.extract()
    mark, before = read_state(good.source).mark, good.storage.list_files("", hidden=True)
    down = f"postgresql+psycopg://etl:s3cret@127.0.0.1:{_closed_port()}/orders"
    generate_orders(source, day=DAY + dt.timedelta(days=1), new_orders=10, seed=1)

    bad = make_env(down, state) if broken == "source" else make_env(source, down)
    result = bad.defs.resolve_job_def("orders_extract_job").execute_in_process(
        instance=bad.instance, raise_on_error=False)
    assert not result.success
    # A server that does not answer may be restarting: the step was tried four times, then failed.
    retries = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retries) == 3
    failure = next(e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    message = failure.event_specific_data.user_failure_data.description
    assert message.startswith(f"orders {broken} database postgresql+psycopg://etl:***@127.0.0.1:")
    assert "unreachable" in message and "s3cret" not in message
    assert read_state(good.source).mark == mark and len(history(good.source)) == 1
    assert good.storage.list_files("", hidden=True) == before


def test_a_connection_dropped_mid_read_is_retried_and_lands_every_row_once(
        pg_url, make_env, cutting_proxy, monkeypatch, landed_rows):
    """The source's connection is cut in the middle of the read (after part files were written): the
    attempt's parts go, the step is retried, and the one landing set holds each source row once."""
    from sqlalchemy.engine import make_url

    monkeypatch.setenv("LAKE_RETRY_DELAY_SECONDS", "0.01")
    generate_orders(pg_url, day=DAY, new_orders=3000, seed=3)
    proxy = cutting_proxy(make_url(pg_url).port, after_bytes=150_000)
    env = make_env(proxy.url(pg_url), pg_url, chunk_rows=200)
    written: list[str] = []
    real_write = extract_mod._write_part
    monkeypatch.setattr(extract_mod, "_write_part", lambda storage, rel, *a, **kw: (
        written.append(rel), real_write(storage, rel, *a, **kw))[1])
    result = env.defs.resolve_job_def("orders_extract_job").execute_in_process(instance=env.instance,
                                                                               raise_on_error=False)
    assert result.success and proxy.cut == 1
    from dagster import DagsterEventType

    retried = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert [e.step_key for e in retried] == ["orders_landing"]
    from lake_assets.pipeline import run_outcome

    assert run_outcome("orders_extract_job", result).retried == ["orders_landing"]  # what `lake run` reports
    error, chain = retried[0].event_specific_data.error, []
    while error is not None:  # the policy's retry request, caused by the extraction's Failure, by the driver's
        chain.append(error.message)
        error = error.cause or error.context
    assert any("server closed the connection unexpectedly" in m for m in chain), chain
    first_set = written[0].split("/")[3]
    assert sum(p.split("/")[3] == first_set for p in written) >= 2  # the cut came after parts were written
    assert not env.storage.list_files(f"{zones.LANDING}/{first_set}", hidden=True)  # and they went
    rows = landed_rows(env.storage)
    assert len(rows) == 3000 and len({r["order_id"] for r in rows}) == 3000
    assert len({r["_set"] for r in rows}) == 1 and len(history(env.source)) == 1


def test_refused_credentials_are_not_retried(pg_url, make_env, monkeypatch):
    from dagster import DagsterEventType
    from sqlalchemy.engine import make_url

    monkeypatch.setenv("LAKE_RETRY_DELAY_SECONDS", "0.01")
    wrong = make_url(pg_url).set(username="nobody_here", password="s3cret").render_as_string(hide_password=False)
    env = make_env(wrong, pg_url)
    result = env.defs.resolve_job_def("orders_extract_job").execute_in_process(instance=env.instance,
                                                                               raise_on_error=False)
    assert not result.success
    assert not [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    failure = next(e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    data = failure.event_specific_data.user_failure_data
    assert 'role "nobody_here" does not exist' in data.description and "s3cret" not in data.description
    assert data.metadata["kind"].value == "db_credentials"


def test_crash_after_landing_before_the_watermark_lands_again_on_retry(db_urls, make_env, monkeypatch, landed_rows):
    env = make_env(*db_urls)
    generate_orders(env.source.url, day=DAY, new_orders=40, seed=1)
    first = env.extract()
    generate_orders(env.source.url, day=DAY + dt.timedelta(days=1), new_orders=30, seed=1)

    def crash(*args, **kwargs):
        raise RuntimeError("killed after landing")

    monkeypatch.setattr(extract_mod, "commit_watermark", crash)
    with pytest.raises(RuntimeError, match="killed after landing"):
        env.extract()
    monkeypatch.undo()
    # The set is committed in the lake, the mark did not move.
    orphan = [r for r in landed_rows(env.storage) if r["_set"] != first.set_name]
    assert len(orphan) > 30 and read_state(env.source).mark == first.new_mark
    retry = env.extract()
    # At least once: the retry lands the same changes again (validation keeps one version per order).
    again = [r for r in landed_rows(env.storage) if r["_set"] == retry.set_name]
    assert sorted(map(version, again)) == sorted(map(version, orphan))
    assert retry.new_mark > first.new_mark and env.extract().rows == 0


def test_the_watermark_never_moves_back(tmp_path, make_env):
    env = make_env(f"sqlite:///{tmp_path}/s.db", f"sqlite:///{tmp_path}/w.db")
    env.source.ensure_state_tables()
    t = dt.datetime(2024, 3, 1, tzinfo=UTC)
    assert commit_watermark(env.source, run_id="a", previous=None, new_mark=t, rows=1, landing=None, seen={}) == t
    assert commit_watermark(env.source, run_id="b", previous=t, new_mark=t - dt.timedelta(hours=1), rows=1,
                            landing=None, seen={}) == t
    assert read_state(env.source).mark == t and read_state(env.source).last_run_id == "b"


def test_row_hash_tells_versions_apart():
    class R:
        order_id, customer_id, status, amount, currency = 1, "C", "PAID", Decimal("1.5"), "EUR"
        order_ts = updated_at = dt.datetime(2024, 1, 1, tzinfo=UTC)

    def row_hash(r) -> str:
        return DEFAULT_LANDING.row_hash([getattr(r, c) for c in DEFAULT_LANDING.names])

    a = row_hash(R)
    R.amount = Decimal("1.50")
    assert row_hash(R) == a
    R.status = "SHIPPED"
    assert row_hash(R) != a


def test_missing_source_table_says_how_to_create_it(tmp_path, make_env):
    from dagster import Failure

    env = make_env(f"sqlite:///{tmp_path}/empty.db", f"sqlite:///{tmp_path}/w.db")
    with pytest.raises(Failure, match="does not exist .*lake generate orders"):
        env.extract()
    assert not (tmp_path / "empty.db").exists()  # a missing file is not silently created
    sa.create_engine(env.source.url).connect().close()  # an empty database: the table is missing
    with pytest.raises(Failure, match="has no table 'orders' .*lake generate orders"):
        env.extract()
    assert read_state(env.source).mark is None
    create_source_tables(env.source.url)
    assert env.extract().rows == 0


def test_generated_days_are_consecutive_and_never_after_now(tmp_path, readers):
    from lake_assets.domains.orders.generator import generate_order_days

    url = f"sqlite:///{tmp_path}/s.db"
    now = dt.datetime(2024, 3, 3, 6, 30, tzinfo=UTC)
    days = generate_order_days(url, days=3, new_orders=50, seed=2, now=now, invalid_share=0.2)
    assert [d.day for d in days] == [dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)]
    rows = readers.source_rows(url)
    assert len(rows) == 150 and max(r["updated_at"] for r in rows.values()) <= now
    assert all(r["order_ts"] <= r["updated_at"] for r in rows.values())
    assert days[1].updated_orders and days[2].updated_orders  # older orders moved on
    assert sum(d.invalid_rows for d in days) and len(readers.valid_source_orders(url)) < 150
    # Reproducible: the same seed on a fresh database writes the same rows.
    again = f"sqlite:///{tmp_path}/t.db"
    generate_order_days(again, days=3, new_orders=50, seed=2, now=now, invalid_share=0.2)
    assert readers.source_rows(again) == rows


def test_a_failure_mid_extraction_leaves_no_partial_landing_set(db_urls, make_env, monkeypatch, landed_rows):
    """Parts written before an error are removed: no folder without a manifest is left behind."""
    env = make_env(*db_urls, chunk_rows=20)
    generate_orders(env.source.url, day=DAY, new_orders=70, seed=5)
    real_write = extract_mod._write_part
    calls = []

    def fail_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(extract_mod, "_write_part", fail_on_third)
    with pytest.raises(OSError, match="disk full"):
        env.extract()
    monkeypatch.undo()
    assert len(calls) == 3
    assert env.storage.list_files("bronze/landing/orders", hidden=True) == []
    assert read_state(env.source).mark is None
    retry = env.extract()
    assert retry.rows == 70 and len(landed_rows(env.storage)) == 70
