"""Incremental extraction of the orders table into the bronze landing zone, with a watermark.

One run:

1. reads the mark ``M`` (the newest ``updated_at`` safely landed) and the keys of
   the rows landed in ``[M - lag, M]`` from the state store;
2. asks the source for its clock ``H`` and reads ``M - lag <= updated_at <= H``
   (everything ``<= H`` on a first run), ordered by ``updated_at``, in chunks of
   ``chunk_rows`` (server-side cursor: bounded memory on a full load);
3. skips rows whose content hash is already landed (the overlap re-read), and
   writes each chunk's remaining rows as one Parquet part file, atomically;
4. writes the set's manifest (run id, watermark range, files): the commit marker;
5. only then, in one state-store transaction, moves the mark to the newest
   ``updated_at`` read and replaces the overlap keys.

Why the overlap (``lag``): ``updated_at`` is stamped when a row is written but
becomes visible when its transaction commits, and writers' clocks drift. A row
stamped before the mark but committed after a run read past it would be lost by
``updated_at > M``; re-reading ``lag`` seconds behind the mark catches any row
committed up to ``lag`` late, and rows with ``updated_at == M`` are never missed.
Why the upper bound ``H`` (the source's own clock): a row stamped in the future
by a skewed writer is left for a later run instead of pushing the mark ahead of
rows still to come. A crash between 4 and 5 leaves the mark where it was: the
retry lands the same rows again (at least once); validation keeps the newest
version per order, so silver does not double.
"""
from __future__ import annotations

import collections
import datetime as dt
import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from dagster import Failure

from lake_assets.domains.orders import zones
from lake_assets.domains.orders.source import (
    UTC,
    OrdersSourceResource,
    UtcDateTime,
    masked,
    orders_table,
    unreachable,
    watermark_history_table,
    watermark_seen_table,
    watermarks_table,
)
from lake_assets.lake import LakeStorage
from lake_assets.lake.layout import join

SOURCE_COLUMNS = ["order_id", "customer_id", "status", "amount", "currency", "order_ts", "updated_at"]

#: The landing files' schema: the source columns as typed there, plus the extraction's lineage.
LANDING_SCHEMA = pa.schema([
    pa.field("order_id", pa.int64()),
    pa.field("customer_id", pa.string()),
    pa.field("status", pa.string()),
    pa.field("amount", pa.decimal128(12, 2)),
    pa.field("currency", pa.string()),
    pa.field("order_ts", pa.timestamp("us", tz="UTC")),
    pa.field("updated_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("_extracted_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("_extract_run_id", pa.string(), nullable=False),
])


@dataclass
class Watermark:
    """The state store's view of one source table."""

    mark: dt.datetime | None = None
    last_run_id: str | None = None
    rows: int = 0
    seen: dict[str, dt.datetime] = field(default_factory=dict)  # row hash -> updated_at


@dataclass
class ExtractResult:
    run_id: str
    landing: str | None  # the committed set's folder, None when nothing new was found
    set_name: str | None
    rows: int  # rows landed
    files: list[str]
    read_rows: int  # rows the window query returned (landed + already landed)
    previous_mark: dt.datetime | None
    new_mark: dt.datetime | None
    window_low: dt.datetime | None
    window_high: dt.datetime

    @property
    def skipped_rows(self) -> int:
        return self.read_rows - self.rows


def _iso(ts: dt.datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat() if ts else None


def row_hash(row) -> str:
    """A row version's identity: every column, so a change at the same ``updated_at`` is a new version."""
    amount = None if row.amount is None else f"{row.amount:.2f}"
    parts = [row.order_id, row.customer_id, row.status, amount, row.currency, _iso(row.order_ts),
             _iso(row.updated_at)]
    return hashlib.sha256("\x1f".join("\x00" if p is None else str(p) for p in parts).encode()).hexdigest()


def read_state(source: OrdersSourceResource, table: str = "orders") -> Watermark:
    source.ensure_state_tables()
    try:
        with source.state_engine.connect() as conn:
            row = conn.execute(sa.select(watermarks_table).where(
                watermarks_table.c.source_table == table)).first()
            seen = dict(conn.execute(sa.select(watermark_seen_table.c.row_hash, watermark_seen_table.c.updated_at)
                                     .where(watermark_seen_table.c.source_table == table)).all())
    except sa.exc.SQLAlchemyError as exc:
        raise unreachable("state", source.state_url, exc) from exc
    if row is None:
        return Watermark(seen=seen)
    return Watermark(row.high_water_mark, row.last_run_id, row.rows, seen)


def history(source: OrdersSourceResource, table: str = "orders") -> list[dict]:
    """Every committed extraction of a table, in commit order."""
    source.ensure_state_tables()
    h = watermark_history_table
    try:
        with source.state_engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(h).where(h.c.source_table == table).order_by(h.c.id))]
    except sa.exc.SQLAlchemyError as exc:
        raise unreachable("state", source.state_url, exc) from exc


def commit_watermark(source: OrdersSourceResource, *, run_id: str, previous: dt.datetime | None,
                     new_mark: dt.datetime | None, rows: int, landing: str | None,
                     seen: dict[str, dt.datetime], table: str = "orders") -> dt.datetime | None:
    """Advance the mark (never backwards) and replace the overlap keys, in one transaction."""
    now = dt.datetime.now(UTC)
    w, s = watermarks_table, watermark_seen_table
    try:
        with source.state_engine.begin() as conn:
            current = conn.execute(sa.select(w).where(w.c.source_table == table).with_for_update()).first()
            marks = [m for m in (current.high_water_mark if current else None, new_mark) if m is not None]
            mark = max(marks) if marks else None
            values = {"high_water_mark": mark, "last_run_id": run_id, "rows": rows, "updated_at": now}
            if current is None:
                conn.execute(sa.insert(w).values(source_table=table, **values))
            else:
                conn.execute(sa.update(w).where(w.c.source_table == table).values(**values))
            conn.execute(sa.insert(watermark_history_table).values(
                source_table=table, run_id=run_id, previous_mark=previous, high_water_mark=mark, rows=rows,
                landing=landing, committed_at=now))
            conn.execute(sa.delete(s).where(s.c.source_table == table))
            keep = [{"source_table": table, "row_hash": h, "updated_at": ts} for h, ts in seen.items()
                    if mark is None or ts >= mark - dt.timedelta(seconds=source.lag_seconds)]
            for i in range(0, len(keep), 5000):
                conn.execute(sa.insert(s), keep[i:i + 5000])
    except sa.exc.SQLAlchemyError as exc:
        raise unreachable("state", source.state_url, exc) from exc
    return mark


def _write_part(storage: LakeStorage, rel: str, rows: list, *, extracted_at: dt.datetime, run_id: str,
                kv: dict[str, str]) -> None:
    """One chunk as one Parquet file, with the run's lineage in its key-value metadata; atomic."""
    cols = {c: [getattr(r, c) for r in rows] for c in SOURCE_COLUMNS}
    cols["_extracted_at"] = [extracted_at] * len(rows)
    cols["_extract_run_id"] = [run_id] * len(rows)
    table = pa.table(cols, schema=LANDING_SCHEMA.with_metadata({f"lake.{k}": v for k, v in kv.items()}))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    with storage.open_write(rel) as f:
        f.write(buf.getvalue())


def extract_orders(source: OrdersSourceResource, storage: LakeStorage, *, run_id: str,
                   log: Callable[[str], None] = lambda _: None,
                   extracted_at: dt.datetime | None = None) -> ExtractResult:
    """Land what changed in the source since the mark, then move the mark (see the module's docstring)."""
    state = read_state(source)
    source.check_source_exists()
    lag = dt.timedelta(seconds=source.lag_seconds)
    low = state.mark - lag if state.mark else None
    extracted_at = extracted_at or dt.datetime.now(UTC)
    name = zones.set_name(extracted_at)
    folder = zones.landing_folder(name)
    o = orders_table
    files: list[str] = []
    part_rows: list[int] = []
    read_rows = landed = 0
    newest: dt.datetime | None = None
    recent: collections.deque = collections.deque()  # (hash, updated_at) within lag of the newest read
    try:
        with source.engine.connect() as conn:
            if not sa.inspect(conn).has_table(o.name):
                raise Failure(f"the source database {masked(source.url)} has no table {o.name!r} "
                              "(create and fill it with `lake generate orders`)")
            high = conn.execute(sa.select(sa.type_coerce(sa.func.now(), UtcDateTime))).scalar_one()
            cond = o.c.updated_at <= high
            if low is not None:
                cond = sa.and_(o.c.updated_at >= low, cond)
            stmt = sa.select(*[o.c[c] for c in SOURCE_COLUMNS]).where(cond).order_by(o.c.updated_at, o.c.order_id)
            log(f"reading {o.name} where {_iso(low) or '-inf'} <= updated_at <= {_iso(high)} "
                f"(mark {_iso(state.mark)}, lag {source.lag_seconds}s) from {masked(source.url)}")
            kv = {"run_id": run_id, "source": masked(source.url), "table": o.name,
                  "extracted_at": _iso(extracted_at), "watermark_from": _iso(state.mark) or "",
                  "window_low": _iso(low) or "", "window_high": _iso(high)}
            result = conn.execution_options(yield_per=source.chunk_rows).execute(stmt)
            for chunk in result.partitions():
                fresh = []
                for row in chunk:
                    h = row_hash(row)
                    read_rows += 1
                    newest = row.updated_at if newest is None or row.updated_at > newest else newest
                    recent.append((h, row.updated_at))
                    while recent[0][1] < newest - lag:
                        recent.popleft()
                    if h not in state.seen:
                        fresh.append(row)
                if fresh:
                    rel = join(folder, f"part-{len(files):05d}.parquet")
                    _write_part(storage, rel, fresh, extracted_at=extracted_at, run_id=run_id, kv=kv)
                    files.append(rel)
                    part_rows.append(len(fresh))
                    landed += len(fresh)
                    log(f"landed {landed} row(s) in {len(files)} file(s) ({read_rows} read)")
    except BaseException as exc:
        # No manifest, no landing set: the parts written so far go, and a retry writes its own.
        if files:
            storage.delete_dir(folder)
        if isinstance(exc, sa.exc.SQLAlchemyError):
            raise unreachable("source", source.url, exc) from exc
        raise

    new_mark = max([m for m in (state.mark, newest) if m is not None], default=None)
    if files:
        manifest = {
            "run_id": run_id, "set": name, "extracted_at": _iso(extracted_at), "source": masked(source.url),
            "table": o.name, "watermark_from": _iso(state.mark), "watermark_to": _iso(new_mark),
            "window_low": _iso(low), "window_high": _iso(high), "lag_seconds": source.lag_seconds,
            "rows": landed, "read_rows": read_rows,
            "files": [{"path": p.rsplit("/", 1)[1], "rows": n} for p, n in zip(files, part_rows)],
        }
        storage.write_text(join(folder, zones.MANIFEST), json.dumps(manifest, indent=1))
    seen = {h: ts for h, ts in state.seen.items()}
    seen.update(dict(recent))
    committed = commit_watermark(source, run_id=run_id, previous=state.mark, new_mark=new_mark, rows=landed,
                                 landing=folder if files else None, seen=seen)
    log(f"watermark {_iso(state.mark)} -> {_iso(committed)}; landed {landed} of {read_rows} row(s) read"
        + (f" into {folder}" if files else " (nothing new)"))
    return ExtractResult(run_id=run_id, landing=folder if files else None, set_name=name if files else None,
                         rows=landed, files=files, read_rows=read_rows, previous_mark=state.mark,
                         new_mark=committed, window_low=low, window_high=high)
