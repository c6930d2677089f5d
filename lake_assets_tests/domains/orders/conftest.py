"""Orders fixtures: a throwaway PostgreSQL server, a fresh database per test, the orders code location.

The server is Debian's PostgreSQL (``/usr/lib/postgresql/<v>/bin``), started on
127.0.0.1 on a free port in a temporary folder, as the ``postgres`` user when
the tests run as root (PostgreSQL refuses to run as root). Missing binaries fail
the tests: CI installs them (``.ci/run``).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass
from decimal import Decimal

import pytest
import sqlalchemy as sa

from lake_assets.lake import LakeStorage


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the test session; yields its base URL (no database)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        pytest.fail("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/postgres): "
                    "install Debian's `postgresql` package, as .ci/run does")
    bindir = os.path.dirname(found[-1])
    base = tempfile.mkdtemp(prefix="orders-pg-")
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and no `postgres` user exists to run the server as")
        os.chown(base, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = os.path.join(base, "data"), os.path.join(base, "server.log")
    port = _free_port()

    def run(*args: str) -> None:
        proc = subprocess.run(prefix + list(args), capture_output=True, text=True, timeout=120)
        if proc.returncode:
            detail = open(log).read()[-2000:] if os.path.exists(log) else ""
            pytest.fail(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr[-2000:]}\n{detail}")

    run(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    run(f"{bindir}/pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o",
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(prefix + [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server):
    """A fresh database on the session's server (dropped after the test)."""
    name = f"orders_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield f"{postgres_server}/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_urls(request, tmp_path):
    """(source URL, state URL): the embedded SQLite default (two files), or PostgreSQL (one database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/orders_source.db", f"sqlite:///{tmp_path}/orders_state.db"
    url = request.getfixturevalue("pg_url")
    return url, url


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of a database server that cuts the first ``cuts`` connections
    once each has carried ``after_bytes`` from the server: a connection dropped in the middle of a
    read (a failover, an idle-timeout firewall, a server restart), as the driver sees it."""

    def __init__(self, upstream_port: int, *, after_bytes: int, cuts: int = 1):
        self.upstream_port, self.after_bytes, self.left = upstream_port, after_bytes, cuts
        self.cut = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        """``url`` (a database URL on the upstream port) reached through the proxy."""
        return url.replace(f":{self.upstream_port}/", f":{self.port}/")

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self.lock:
                doomed = self.left > 0
                self.left -= doomed
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.after_bytes if doomed else None),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, cut_after: int | None) -> None:
        carried = 0
        try:
            while data := src.recv(65536):
                if cut_after is not None and carried + len(data) > cut_after:
                    dst.sendall(data[: cut_after - carried])
                    with self.lock:
                        self.cut += 1
                    break
                dst.sendall(data)
                carried += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def cutting_proxy():
    """``cutting_proxy(upstream_port, after_bytes=, cuts=)``: see :class:`CuttingProxy`; closed after the test."""
    made: list[CuttingProxy] = []

    def _make(upstream_port: int, **kw) -> CuttingProxy:
        made.append(CuttingProxy(upstream_port, **kw))
        return made[-1]

    yield _make
    for proxy in made:
        proxy.close()


@dataclass
class OrdersEnv:
    """The orders code location over a temporary lake and the given databases."""

    defs: object
    storage: LakeStorage
    source: object
    instance: object

    def extract(self, **kw):
        from lake_assets.domains.orders.extract import extract_orders

        return extract_orders(self.source, self.storage, run_id=kw.pop("run_id", uuid.uuid4().hex), **kw)

    def run(self):
        from lake_assets.domains.orders.run import run_orders

        return run_orders(self.defs, self.instance)


@pytest.fixture
def make_env(lake_root, instance):
    def _make(source_url: str, state_url: str, lake: str | None = None, **settings) -> OrdersEnv:
        from dagster import Definitions

        from lake_assets.definitions import build_resources
        from lake_assets.domains import orders
        from lake_assets.domains.orders.source import OrdersSourceResource

        source = OrdersSourceResource(url=source_url, state_url=state_url, **settings)
        resources = build_resources(lake or lake_root)
        defs = Definitions.merge(orders.definitions(source=source), Definitions(resources=resources))
        return OrdersEnv(defs, resources["lake"].storage, source, instance)

    return _make


# -- independent readers (plain SQL and pyarrow, never the code under test) -------------------------
def source_rows(url: str) -> dict[int, dict]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT order_id, customer_id, status, amount, currency, order_ts, updated_at FROM orders")).mappings()
            return {r["order_id"]: _normalized(dict(r)) for r in rows}
    finally:
        engine.dispose()


def _normalized(row: dict) -> dict:
    """SQLite hands back text timestamps and float amounts (numeric(12,2) there): make both backends'
    rows alike. PostgreSQL's Decimal amounts are kept as they are, whatever their scale."""
    import datetime as dt

    for k in ("order_ts", "updated_at"):
        v = row[k]
        if isinstance(v, str):
            v = dt.datetime.fromisoformat(v)
        if v is not None:
            row[k] = v.replace(tzinfo=dt.timezone.utc) if v.tzinfo is None else v.astimezone(dt.timezone.utc)
    if isinstance(row["amount"], float):
        row["amount"] = Decimal(str(row["amount"])).quantize(Decimal("0.01"))
    return row


def is_valid(row, amount_max: Decimal) -> bool:
    """The validity rules in plain Python, an independent statement of what Spark applies."""
    from lake_assets.domains.orders.source import VALID_STATUSES

    return (row["order_id"] is not None and row["status"] in VALID_STATUSES and row["amount"] is not None
            and Decimal(0) <= row["amount"] <= amount_max and isinstance(row["currency"], str)
            and len(row["currency"]) == 3 and row["currency"].isalpha() and row["currency"].isupper()
            and row["order_ts"] is not None)


def valid_source_orders(url: str, amount_max: Decimal = Decimal("1000000")) -> dict[int, tuple]:
    """The source's current valid orders, keyed by id: (status, amount, currency)."""
    return {k: (r["status"], r["amount"], r["currency"])
            for k, r in source_rows(url).items() if is_valid(r, amount_max)}


def silver_orders(storage: LakeStorage, read_parquet) -> dict[int, tuple]:
    """Silver as stored (the shared pyarrow reader), keyed by id; fails on a duplicate id or a row in
    the wrong partition."""
    out: dict[int, tuple] = {}
    for r in read_parquet(storage, "silver/staging/orders", hive={"order_date": "_day"}).to_pylist():
        day = r["_day"]
        assert r["order_id"] not in out, f"order {r['order_id']} twice in silver"
        assert r["order_ts"].date().isoformat() == day, f"order {r['order_id']} in partition {day}"
        out[r["order_id"]] = (r["status"], r["amount"], r["currency"])
    return out


@pytest.fixture(scope="session")
def readers(read_parquet):
    """The independent readers above, for test modules (conftest modules are not importable here);
    Parquet files are read by the suite's one reader, the ``read_parquet`` fixture."""
    from types import SimpleNamespace

    return SimpleNamespace(source_rows=source_rows, valid_source_orders=valid_source_orders,
                           silver_orders=lambda storage: silver_orders(storage, read_parquet))
