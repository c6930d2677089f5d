"""``lake generate orders``: simulate one business day of an order system in its database.

Creates the ``orders`` table when missing, then writes, inside ``day`` (and never
after ``now``): new orders, status changes on older open orders (their
``updated_at`` moves), a share of invalid rows (unknown status, negative or
missing amount, bad currency), and groups of rows written with the same
``updated_at`` (batch updates), the day's last change among them. Days must be
generated in order: a day generated before an earlier one writes rows "late".
With ``text_keys`` a new table is keyed by text (``O000001``), as many real
order systems are; an existing table keeps the key type it has.
"""
from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from lake_assets.domains.orders.source import (
    UTC,
    VALID_STATUSES,
    create_db_engine,
    orders_table,
    text_keyed_orders_table,
)

#: The life of a valid order: each change moves it one step (or cancels/returns it); an order
#: with an invalid status is corrected to PAID by its next change.
NEXT_STATUS = {"PLACED": ["PAID", "PAID", "PAID", "CANCELLED"], "PAID": ["SHIPPED", "SHIPPED", "CANCELLED"],
               "SHIPPED": ["DELIVERED"], "DELIVERED": ["RETURNED"]}
INVALID_STATUSES = ("PENDING_REVIEW", "shipped", "UNKNOWN", "", None)
CURRENCIES = ("USD", "EUR", "GBP", "JPY")


@dataclass
class GeneratedDay:
    day: dt.date
    new_orders: int = 0
    updated_orders: int = 0
    invalid_rows: int = 0  # rows of the day whose current version breaks a rule
    same_ts_rows: int = 0  # rows sharing their updated_at with another row of the day
    newest_updated_at: dt.datetime | None = None
    kinds: Counter = field(default_factory=Counter)  # invalid rows by kind

    @property
    def rows(self) -> int:
        return self.new_orders + self.updated_orders


def create_source_tables(url: str, *, text_keys: bool = False) -> None:
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            _source_table(conn, text_keys)
    finally:
        engine.dispose()


def _source_table(conn: sa.Connection, text_keys: bool) -> sa.Table:
    """The orders table to write: the existing one's key type wins, else it is created as asked."""
    found = sa.inspect(conn)
    if found.has_table(orders_table.name):
        key = next(c["type"] for c in found.get_columns(orders_table.name) if c["name"] == "order_id")
        text_keys = isinstance(key, sa.String)
    table = text_keyed_orders_table if text_keys else orders_table
    table.create(conn, checkfirst=True)
    return table


def _key(table: sa.Table, n: int):
    return f"O{n:06d}" if table is text_keyed_orders_table else n


def _moment(rng: random.Random, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    span = max(int((end - start).total_seconds() * 1_000_000), 1)
    return start + dt.timedelta(microseconds=rng.randrange(span))


def _invalidate(rng: random.Random, row: dict, out: GeneratedDay) -> None:
    kind = rng.choice(["status", "status", "status", "amount_negative", "amount_missing", "currency"])
    if kind == "status":
        row["status"] = rng.choice(INVALID_STATUSES)
    elif kind == "amount_negative":
        row["amount"] = -row["amount"] if row.get("amount") else Decimal("-1.00")
    elif kind == "amount_missing":
        row["amount"] = None
    else:
        row["currency"] = rng.choice(["EURO", "us", None])
    out.invalid_rows += 1
    out.kinds[kind] += 1


def generate_orders(url: str, *, day: dt.date, new_orders: int = 200, seed: int = 7,
                    update_share: float = 0.3, invalid_share: float = 0.05, same_ts_share: float = 0.1,
                    now: dt.datetime | None = None, text_keys: bool = False) -> GeneratedDay:
    """Simulate ``day`` in the database at ``url``; reproducible for a given seed and database state."""
    now = (now or dt.datetime.now(UTC)).astimezone(UTC)
    start = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = min(start + dt.timedelta(days=1), now)
    if end <= start:
        raise ValueError(f"day {day} has not started yet (now is {now.isoformat()})")
    rng = random.Random(f"{seed}:{day.isoformat()}")
    out = GeneratedDay(day)
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            o = _source_table(conn, text_keys)
            top = conn.execute(sa.select(sa.func.max(o.c.order_id))).scalar()
            next_id = (int(top.lstrip("O")) if isinstance(top, str) else top or 0) + 1
            open_orders = conn.execute(
                sa.select(o.c.order_id, o.c.status, o.c.amount, o.c.currency, o.c.updated_at)
                .where(sa.or_(o.c.status.in_(list(NEXT_STATUS)), o.c.status.is_(None),
                              o.c.status.not_in(list(VALID_STATUSES))), o.c.updated_at < end)
                .order_by(o.c.order_id)).all()
            previous = {r.order_id: r.updated_at for r in open_orders}
            inserts, updates = [], []
            for i in range(new_orders):
                ts = _moment(rng, start, end)
                row = {"order_id": _key(o, next_id + i), "customer_id": f"C{rng.randrange(1, 5000):05d}",
                       "status": rng.choice(["PLACED"] * 4 + ["PAID"]),
                       "amount": Decimal(rng.randrange(100, 500_000)) / 100, "currency": rng.choice(CURRENCIES),
                       "order_ts": ts, "updated_at": ts}
                if rng.random() < invalid_share:
                    _invalidate(rng, row, out)
                inserts.append(row)
            for prev in open_orders:
                if rng.random() >= update_share:
                    continue
                after = max(prev.updated_at, start)
                row = {"b_order_id": prev.order_id, "status": rng.choice(NEXT_STATUS.get(prev.status, ["PAID"])),
                       "amount": prev.amount, "currency": prev.currency,
                       "updated_at": _moment(rng, after + dt.timedelta(microseconds=1), end)}
                if rng.random() < invalid_share:
                    _invalidate(rng, row, out)
                updates.append(row)
            # Batch writes: some rows share their updated_at with others, the day's last change among them.
            rows = inserts + updates
            if len(rows) > 1 and same_ts_share > 0:
                latest = max(r["updated_at"] for r in rows)
                n = max(2, int(len(rows) * same_ts_share))
                split = max(2, n // 3)
                batches = [latest] * split + [latest - dt.timedelta(minutes=7)] * (n - split)
                for idx, ts in zip(rng.sample(range(len(rows)), n), batches):
                    row = rows[idx]
                    if ts < start or ("b_order_id" in row and ts <= previous[row["b_order_id"]]):
                        continue  # a batch never moves a row out of its day, nor a change before its order's last
                    row["updated_at"] = ts
                    if "order_ts" in row:
                        row["order_ts"] = ts
                counts = Counter(r["updated_at"] for r in rows)
                out.same_ts_rows = sum(k for k in counts.values() if k > 1)
            if inserts:
                conn.execute(sa.insert(o), inserts)
            if updates:
                conn.execute(sa.update(o).where(o.c.order_id == sa.bindparam("b_order_id"))
                             .values(status=sa.bindparam("status"), amount=sa.bindparam("amount"),
                                     currency=sa.bindparam("currency"), updated_at=sa.bindparam("updated_at")),
                             updates)
        out.new_orders, out.updated_orders = len(inserts), len(updates)
        out.newest_updated_at = max((r["updated_at"] for r in inserts + updates), default=None)
    finally:
        engine.dispose()
    return out


def generate_order_days(url: str, *, days: int, new_orders: int = 200, seed: int = 7, end: dt.date | None = None,
                        now: dt.datetime | None = None, **kwargs) -> list[GeneratedDay]:
    """``days`` consecutive business days ending ``end`` (default: today, UTC, up to now), oldest first."""
    now = now or dt.datetime.now(UTC)
    end = end or now.date()
    return [generate_orders(url, day=end - dt.timedelta(days=days - 1 - i), new_orders=new_orders, seed=seed,
                            now=now, **kwargs) for i in range(days)]
