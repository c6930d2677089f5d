"""The orders source database and the extraction's state store, through SQLAlchemy Core.

Two URLs, two roles:

* ``ORDERS_DB_URL``: the relational database the orders live in (PostgreSQL in
  production, the seed's RDS; by default an embedded SQLite file,
  ``<DAGSTER_HOME>/orders_source.db``, for the demo). Only read by extraction.
* ``ORDERS_STATE_DB_URL``: where the watermark (``etl_watermarks``), its history
  and the keys of the rows landed inside the overlap window live. A database,
  not a file in the lake, because the watermark and those keys must change in
  one transaction and survive restarts; not the source itself, because
  extraction should need no write access to a production database (often a read
  replica). Default: ``<DAGSTER_HOME>/orders_state.db``; in production, a small
  PostgreSQL database (or the source's own, if writable: the tables do not clash).
"""
from __future__ import annotations

import datetime as dt
import os
import warnings
from functools import cached_property

import sqlalchemy as sa
from dagster import ConfigurableResource, EnvVar, Failure, MetadataValue
from pydantic import Field
from sqlalchemy.engine import Engine, make_url

UTC = dt.timezone.utc

# SQLite keeps NUMERIC as a float; amounts are read back as Decimal rounded to the column's
# scale, which is exact for numeric(12,2) values.
warnings.filterwarnings("ignore", message=r"Dialect sqlite\+pysqlite does \*not\* support Decimal")

#: Order statuses that are valid in silver (the seed's Glue data-quality rule).
VALID_STATUSES = ("PLACED", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "RETURNED")

SOURCE_TABLE = "orders"
DEFAULT_LAG_SECONDS = 300
DEFAULT_CHUNK_ROWS = 50_000


class UtcDateTime(sa.types.TypeDecorator):
    """A UTC instant: ``timestamptz`` on PostgreSQL, naive UTC text on SQLite; always aware in Python.

    SQLite has no time zone type and SQLAlchemy stores a fixed-width text form, so
    naive UTC values there compare in the same order as the instants they stand for.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # SQLite's CURRENT_TIMESTAMP through func.now()
            value = dt.datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _orders_table(metadata: sa.MetaData, key: sa.types.TypeEngine) -> sa.Table:
    return sa.Table(
        SOURCE_TABLE, metadata,
        sa.Column("order_id", key, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.String(32)),
        sa.Column("status", sa.String(32)),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("currency", sa.String(8)),
        sa.Column("order_ts", UtcDateTime),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Index("ix_orders_updated_at", "updated_at"),
    )


#: The source table, as the application owning it defines it. Extraction does not rely on it: it
#: reflects the table it reads (see ``extract.reflect_landing``), whatever its key type or extra columns.
orders_table = _orders_table(sa.MetaData(), sa.BigInteger())

#: The same table keyed by text (``O000001``), as many real order systems are (``lake generate``'s option).
text_keyed_orders_table = _orders_table(sa.MetaData(), sa.String(32))

state_metadata = sa.MetaData()

#: One row per source table: how far extraction has safely landed.
watermarks_table = sa.Table(
    "etl_watermarks", state_metadata,
    sa.Column("source_table", sa.String(128), primary_key=True),
    sa.Column("high_water_mark", UtcDateTime, nullable=True),
    sa.Column("last_run_id", sa.String(64)),
    sa.Column("rows", sa.BigInteger, nullable=False, default=0),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

#: Every committed extraction, in commit order: the audit trail the monotonic check reads.
watermark_history_table = sa.Table(
    "etl_watermark_history", state_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source_table", sa.String(128), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("previous_mark", UtcDateTime, nullable=True),
    sa.Column("high_water_mark", UtcDateTime, nullable=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("landing", sa.String(512), nullable=True),
    sa.Column("committed_at", UtcDateTime, nullable=False),
)

#: Row versions already landed whose updated_at lies inside the overlap window behind the mark:
#: the next run re-reads that window and skips these, so a re-read lands nothing twice.
watermark_seen_table = sa.Table(
    "etl_watermark_seen", state_metadata,
    sa.Column("source_table", sa.String(128), primary_key=True),
    sa.Column("row_hash", sa.String(64), primary_key=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)


def _home() -> str:
    from lake_assets import settings

    return settings.dagster_home(create=False)


def default_source_url() -> str:
    return f"sqlite:///{os.path.join(_home(), 'orders_source.db')}"


def default_state_url() -> str:
    return f"sqlite:///{os.path.join(_home(), 'orders_state.db')}"


def masked(url: str) -> str:
    """A database URL fit for logs and error messages: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: show its scheme only
        return url.split("://", 1)[0] + "://..."


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL (None for other databases and in-memory ones)."""
    parsed = make_url(url)
    db = parsed.database
    return os.path.abspath(db) if parsed.get_backend_name() == "sqlite" and db and db != ":memory:" else None


def create_db_engine(url: str, *, create: bool = True) -> Engine:
    """An engine that fails fast when the server does not answer (no minutes-long hangs).

    ``create``: a SQLite file's folder is created if missing (the state store, the generator);
    the source is only read, so extraction passes False and checks the file exists.
    """
    parsed = make_url(url)
    kwargs: dict = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path and create:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    elif parsed.get_backend_name() == "postgresql":
        # The session's time zone is UTC whatever the server's default: a `timestamp without time
        # zone` column compared with the (timestamptz) watermark is then read as UTC, never shifted.
        kwargs["connect_args"] = {"connect_timeout": int(os.environ.get("ORDERS_DB_CONNECT_TIMEOUT", "10")),
                                  "options": "-c TimeZone=UTC"}
    return sa.create_engine(url, **kwargs)


def unreachable(role: str, url: str, exc: BaseException) -> Failure:
    """The one error a run shows when a database cannot be used: which one, and why.

    A connection that failed, dropped or timed out may work on a retry (the step's
    ``RetryPolicy``); refused credentials or a missing database will not: that failure
    is not retried (:mod:`lake_assets.lake.errors` sorts them).
    """
    from lake_assets.lake import errors

    reason, found = errors.reason(exc), errors.kind(exc)
    return Failure(
        description=f"orders {role} database {masked(url)} is unreachable or unusable: {reason}",
        metadata={"database": MetadataValue.text(masked(url)), "error": MetadataValue.text(reason),
                  "kind": MetadataValue.text(found or type(exc).__name__)},
        allow_retries=found == errors.DB_UNREACHABLE,
    )


def configured_source_url() -> str:
    """The source's URL as configured (``ORDERS_DB_URL`` or the embedded default), for the CLI's
    own use outside a run (``lake generate orders``); resources get it through an ``EnvVar``."""
    return os.environ.get("ORDERS_DB_URL") or default_source_url()


class OrdersSourceResource(ConfigurableResource):
    """Where the orders come from, where the watermark lives, and how far behind the mark to re-read."""

    url: str = Field(description="ORDERS_DB_URL: SQLAlchemy URL of the source database")
    state_url: str = Field(description="ORDERS_STATE_DB_URL: SQLAlchemy URL of the watermark store")
    lag_seconds: int = Field(
        default=DEFAULT_LAG_SECONDS,
        description="ORDERS_WATERMARK_LAG_SECONDS: each run re-reads updated_at >= mark - lag, so a "
        "row committed late by a transaction up to this long, or stamped by a clock up to this far "
        "behind, is still landed (already landed rows are skipped by their content hash)",
    )
    chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS,
                            description="ORDERS_EXTRACT_CHUNK_ROWS: rows per read chunk and per landing part file")

    @classmethod
    def from_env(cls) -> "OrdersSourceResource":
        """Configured from the environment. A configured database URL (it may hold a password) is
        passed as an ``EnvVar``: Dagster resolves it when a run starts, and the UI, run config and
        logs show the variable's name, never its value. The embedded default holds no secret."""
        return cls(
            url=EnvVar("ORDERS_DB_URL") if os.environ.get("ORDERS_DB_URL") else default_source_url(),
            state_url=EnvVar("ORDERS_STATE_DB_URL") if os.environ.get("ORDERS_STATE_DB_URL")
            else default_state_url(),
            lag_seconds=int(os.environ.get("ORDERS_WATERMARK_LAG_SECONDS") or DEFAULT_LAG_SECONDS),
            chunk_rows=int(os.environ.get("ORDERS_EXTRACT_CHUNK_ROWS") or DEFAULT_CHUNK_ROWS),
        )

    @cached_property
    def engine(self) -> Engine:
        return create_db_engine(self.url, create=False)

    def check_source_exists(self) -> None:
        """SQLite would create an empty database for a missing file: say what is missing instead."""
        path = sqlite_file(self.url)
        if path and not os.path.exists(path):
            raise Failure(f"the orders source database {masked(self.url)} does not exist "
                          "(create and fill it with `lake generate orders`, or set ORDERS_DB_URL)",
                          allow_retries=False)

    @cached_property
    def state_engine(self) -> Engine:
        return create_db_engine(self.state_url)

    def teardown_after_execution(self, context) -> None:
        """Close the run's connection pools (a new resource, and new engines, serve each run)."""
        for name in ("engine", "state_engine"):
            engine = self.__dict__.pop(name, None)
            if engine is not None:
                engine.dispose()

    def ensure_state_tables(self) -> None:
        try:
            state_metadata.create_all(self.state_engine)
        except sa.exc.SQLAlchemyError as exc:
            raise unreachable("state", self.state_url, exc) from exc

    def source_newest(self) -> dt.datetime | None:
        """The newest ``updated_at`` the source holds (for freshness)."""
        self.check_source_exists()
        try:
            with self.engine.connect() as conn:
                return conn.execute(sa.select(sa.func.max(orders_table.c.updated_at))).scalar()
        except sa.exc.SQLAlchemyError as exc:
            raise unreachable("source", self.url, exc) from exc
