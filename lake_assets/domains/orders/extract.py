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

Types: the landing schema is the source table's own, reflected at every run
(:func:`reflect_landing`), so a text key lands as text and ``numeric(14,4)`` keeps
its scale. The required columns (:data:`SOURCE_COLUMNS`) come first, then any other
column of the table, carried along to archive and silver. A column whose type has
no faithful Arrow/Spark counterpart fails the run before anything lands. The
manifest records the schema (Spark JSON) so validation reads each set as it was
written, whatever the source has become since.
"""
from __future__ import annotations

import collections
import datetime as dt
import hashlib
import io
import json
import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from dagster import Failure
from pyspark.sql import types as T

from lake_assets.domains.orders import zones
from lake_assets.domains.orders.source import (
    SOURCE_TABLE,
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

#: The columns every orders source must have (validation's rules and the watermark read them), with
#: the kinds of type each may have: the key text or integer, the instants timestamps (the watermark,
#: the partition date), the amount a number (compared with bounds).
REQUIRED_KINDS = {
    "order_id": ("text or integer", lambda t: pa.types.is_string(t) or pa.types.is_integer(t)),
    "customer_id": ("any supported type", lambda t: True),
    "status": ("text", pa.types.is_string),
    "amount": ("numeric", lambda t: pa.types.is_decimal(t) or pa.types.is_integer(t) or pa.types.is_floating(t)),
    "currency": ("text", pa.types.is_string),
    "order_ts": ("timestamp", pa.types.is_timestamp),
    "updated_at": ("timestamp", pa.types.is_timestamp),
}
SOURCE_COLUMNS = list(REQUIRED_KINDS)
LINEAGE = ["_extracted_at", "_extract_run_id"]
#: Names the lake adds downstream (lineage, discarded's reasons, silver's partition): a source column
#: so named would collide with them (compared case-insensitively, as Spark does).
RESERVED = {*LINEAGE, "reason", "reasons", "_landing_set", "order_date", "_valid", "_invalid", "lake_partition"}

#: PostgreSQL's unconstrained ``numeric`` declares no scale; it lands as Spark's widest decimal with
#: 9 decimals (29 integer digits). A value that does not fit fails the extraction naming its column,
#: never rounded.
UNCONSTRAINED_NUMERIC = (38, 9)
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
SUPPORTED = "text, integer, numeric(p<=38, s>=0), float, boolean, date, timestamp with or without time zone"


def column_types(sql_type: sa.types.TypeEngine) -> tuple[pa.DataType, T.DataType] | None:
    """A source column's Arrow and Spark types; None when there is no faithful one.

    Every integer lands as int64 and every float as float64, so a source widening a column
    (int to bigint, a common migration) does not change the lake's schema. Timestamps land as
    UTC instants: a naive one is read as UTC (PostgreSQL sessions run in UTC, see ``source.py``).
    """
    t = getattr(sql_type, "data_type", sql_type)  # a PostgreSQL DOMAIN: its underlying type
    if isinstance(t, UtcDateTime):
        t = t.impl
    if isinstance(t, sa.Boolean):
        return pa.bool_(), T.BooleanType()
    if isinstance(t, sa.Integer):
        return pa.int64(), T.LongType()
    if isinstance(t, sa.Float):  # before Numeric: Float is one
        return pa.float64(), T.DoubleType()
    if isinstance(t, sa.Numeric):
        p, s = (t.precision, t.scale or 0) if t.precision is not None else UNCONSTRAINED_NUMERIC
        return (pa.decimal128(p, s), T.DecimalType(p, s)) if 0 <= s <= p <= 38 else None
    if isinstance(t, sa.DateTime):
        return UTC_TIMESTAMP, T.TimestampType()
    if isinstance(t, sa.Date):
        return pa.date32(), T.DateType()
    if isinstance(t, sa.String):  # text, varchar, char, enums
        return pa.string(), T.StringType()
    return None


@dataclass(frozen=True)
class LandingColumn:
    name: str
    source_type: str  # as the source database names it (messages, the manifest)
    arrow: pa.DataType
    spark: T.DataType


@dataclass(frozen=True)
class Landing:
    """The landing schema of one source table: its columns (the required first, then the others in the
    table's order) as Arrow and Spark types, plus the extraction's lineage."""

    columns: tuple[LandingColumn, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow_schema(self, metadata: dict[str, str] | None = None) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, c.arrow, nullable=c.name != "updated_at") for c in self.columns]
            + [pa.field("_extracted_at", UTC_TIMESTAMP, nullable=False),
               pa.field("_extract_run_id", pa.string(), nullable=False)], metadata=metadata)

    @property
    def spark_schema(self) -> T.StructType:
        """The set's columns as Spark reads them: silver's and the archive's schema."""
        return T.StructType([T.StructField(c.name, c.spark) for c in self.columns]
                            + [T.StructField("_extracted_at", T.TimestampType()),
                               T.StructField("_extract_run_id", T.StringType())])

    @cached_property
    def _texts(self) -> list[Callable]:
        def text(a: pa.DataType) -> Callable:
            if pa.types.is_decimal(a):
                return lambda v: f"{v:.{a.scale}f}"  # 1.5 and 1.50 are one value
            return _iso if pa.types.is_timestamp(a) else str
        return [text(c.arrow) for c in self.columns]

    def row_hash(self, values: Sequence) -> str:
        """A row version's identity: every column, so a change at the same ``updated_at`` is a new version.

        The required columns come first in a fixed order, so a source's hashes stay the same
        across runs (the overlap's skip list is stored between them).
        """
        return hashlib.sha256("\x1f".join("\x00" if v is None else f(v) for f, v in zip(self._texts, values))
                              .encode()).hexdigest()


def landing_of(table: sa.Table, type_names: dict[str, str] | None = None) -> Landing:
    """The landing schema of a (reflected or declared) source table; fails naming every column that is
    missing, of the wrong kind or of a type with no faithful counterpart.

    ``type_names``: the source's own names of types SQLAlchemy did not recognize, by column.
    """
    by_name = {c.name: c for c in table.columns}
    order = SOURCE_COLUMNS + [c for c in by_name if c not in REQUIRED_KINDS]
    problems, columns = [], []
    for name in order:
        col = by_name.get(name)
        if col is None:
            problems.append(f"required column {name!r} is missing")
            continue
        source_type = (type_names or {}).get(name) or _type_name(col.type)
        types = column_types(col.type)
        if name.lower() in RESERVED:
            problems.append(f"column {name!r} ({source_type}) clashes with a column the lake adds")
        elif types is None:
            problems.append(f"column {name!r} has type {source_type}, which cannot be landed "
                            f"(supported: {SUPPORTED}; cast or leave it out in a view)")
        elif name in REQUIRED_KINDS and not REQUIRED_KINDS[name][1](types[0]):
            problems.append(f"column {name!r} has type {source_type}; it must be {REQUIRED_KINDS[name][0]}")
        else:
            columns.append(LandingColumn(name, source_type, *types))
    if problems:
        raise Failure(f"the orders source table {table.name!r} cannot be extracted: " + "; ".join(problems),
                      allow_retries=False)
    return Landing(tuple(columns))


def _type_name(t: sa.types.TypeEngine) -> str:
    try:
        return str(t)
    except Exception:  # a type only its dialect can compile
        return type(t).__name__


def reflect_landing(conn: sa.Connection, name: str) -> tuple[sa.Table, Landing]:
    """The source table as the database has it now, and its landing schema.

    SQLAlchemy reflects a type it does not know (PostgreSQL's ``point``) as NULL with a warning
    naming it: the warning is where the type's own name comes from, for the error message.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = sa.Table(name, sa.MetaData(), autoload_with=conn)
    unknown = {}
    for w in caught:
        m = re.search(r"Did not recognize type '(.+)' of column '(.+)'", str(w.message))
        if m:
            unknown[m.group(2)] = m.group(1)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return table, landing_of(table, unknown)


#: The landing schema of the default source table (``source.orders_table``): the lake's declared one.
DEFAULT_LANDING = landing_of(orders_table)


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


def _write_part(storage: LakeStorage, rel: str, rows: list, landing: Landing, *, extracted_at: dt.datetime,
                run_id: str, kv: dict[str, str]) -> None:
    """One chunk as one Parquet file, with the run's lineage in its key-value metadata; atomic.

    Column by column, so a value the landing type cannot hold (a numeric beyond decimal(38, 9))
    fails naming its column and the source's type.
    """
    arrays = []
    for i, c in enumerate(landing.columns):
        try:
            arrays.append(pa.array([r[i] for r in rows], type=c.arrow))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise Failure(f"orders source column {c.name!r} ({c.source_type}) holds a value that does not "
                          f"fit its landing type {c.arrow}: {exc}", allow_retries=False) from exc
    arrays += [pa.array([extracted_at] * len(rows), UTC_TIMESTAMP), pa.array([run_id] * len(rows), pa.string())]
    table = pa.Table.from_arrays(arrays, schema=landing.arrow_schema({f"lake.{k}": v for k, v in kv.items()}))
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
    files: list[str] = []
    part_rows: list[int] = []
    read_rows = landed = 0
    newest: dt.datetime | None = None
    recent: collections.deque = collections.deque()  # (hash, updated_at) within lag of the newest read
    try:
        with source.engine.connect() as conn:
            if not sa.inspect(conn).has_table(SOURCE_TABLE):
                raise Failure(f"the source database {masked(source.url)} has no table {SOURCE_TABLE!r} "
                              "(create and fill it with `lake generate orders`)", allow_retries=False)
            o, landing = reflect_landing(conn, SOURCE_TABLE)
            # Timestamps read and compared as UTC instants, whatever the column's zone handling.
            cols = {c.name: sa.type_coerce(o.c[c.name], UtcDateTime).label(c.name)
                    if pa.types.is_timestamp(c.arrow) else o.c[c.name] for c in landing.columns}
            high = conn.execute(sa.select(sa.type_coerce(sa.func.now(), UtcDateTime))).scalar_one()
            cond = cols["updated_at"] <= high
            if low is not None:
                cond = sa.and_(cols["updated_at"] >= low, cond)
            stmt = sa.select(*cols.values()).where(cond).order_by(cols["updated_at"], o.c.order_id)
            log(f"reading {o.name} where {_iso(low) or '-inf'} <= updated_at <= {_iso(high)} "
                f"(mark {_iso(state.mark)}, lag {source.lag_seconds}s) from {masked(source.url)}")
            kv = {"run_id": run_id, "source": masked(source.url), "table": o.name,
                  "extracted_at": _iso(extracted_at), "watermark_from": _iso(state.mark) or "",
                  "window_low": _iso(low) or "", "window_high": _iso(high)}
            at = landing.names.index("updated_at")
            result = conn.execution_options(yield_per=source.chunk_rows).execute(stmt)
            for chunk in result.partitions():
                fresh = []
                for row in chunk:
                    h = landing.row_hash(row)
                    read_rows += 1
                    updated_at = row[at]
                    newest = updated_at if newest is None or updated_at > newest else newest
                    recent.append((h, updated_at))
                    while recent[0][1] < newest - lag:
                        recent.popleft()
                    if h not in state.seen:
                        fresh.append(row)
                if fresh:
                    rel = join(folder, f"part-{len(files):05d}.parquet")
                    _write_part(storage, rel, fresh, landing, extracted_at=extracted_at, run_id=run_id, kv=kv)
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
            "source_types": {c.name: c.source_type for c in landing.columns},
            "schema": landing.spark_schema.jsonValue(),
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
