"""Shared fixtures: one Spark session per test worker, a local lake, moto's S3 server, a Dagster instance,
and the one way tests read the lake's Parquet files (``read_parquet``) and run a domain (``run_lake``);
and how the two test workers share out the modules (:func:`pytest_xdist_make_scheduler`)."""
from __future__ import annotations

import http.client
import socket
import socketserver
import threading
import os
import re
import uuid
from collections.abc import Mapping
from urllib.parse import urlparse
from http.server import BaseHTTPRequestHandler

import pytest

# Before anything imports Spark: loopback only, a small local master.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("SPARK_MASTER", "local[2]")
os.environ.setdefault("SPARK_SHUFFLE_PARTITIONS", "2")
os.environ.setdefault("SPARK_DRIVER_MEMORY", "2g")
# Test jobs are short: the C1 compiler and a serial GC halve their cost on 2 shared cores
# (C2 compilation and parallel GC threads are what long jobs pay for, and these are not long).
os.environ.setdefault("SPARK_CONF_spark__driver__extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
# Test data is tiny: compiling each query's generated Java (Janino) costs more than running it, so
# expressions are interpreted (Spark's own test setting; same results, about 20% off a commerce run).
# The cluster tests (test_clusters.py) start from an environment without SPARK_* settings, so
# whole-stage code generation still runs end to end in every suite, as it does in production.
os.environ.setdefault("SPARK_CONF_spark__sql__codegen__factoryMode", "NO_CODEGEN")
# Test files are kilobytes: one split per core, not the several per core that keep big inputs balanced
# (spark.SPLITS_PER_CORE), which here only multiply tasks (about 12% off the tpcds lake's run).
os.environ.setdefault("SPARK_CONF_spark__sql__files__minPartitionNum", "2")
# Adaptive execution re-plans at every shuffle, submitting each map stage as a Spark job of its own:
# on two shuffle partitions of kilobytes there is nothing for it to coalesce or rebalance, and the
# extra jobs and re-planning cost about 15% of a warm commerce run. Off for the test session only
# (same results); the cluster tests run with the product's settings, adaptive execution on.
os.environ.setdefault("SPARK_CONF_spark__sql__adaptive__enabled", "false")
# A retried step waits 1, 3 and 7 times this (LakeSettings.retry_delay_seconds): a second in production,
# so a restarting server is waited out; the faults tests inject are gone at once, so every retry is
# still taken and asserted, without sleeping seconds each time.
os.environ.setdefault("LAKE_RETRY_DELAY_SECONDS", "0.05")
# Dummy credentials so nothing ever reaches a real AWS account.
for _k, _v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}.items():
    os.environ[_k] = _v
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_SESSION_TOKEN", None)
for _k in ("LAKE_CATALOG", "LAKE_ROOT"):
    os.environ.pop(_k, None)


#: Session fixtures that build a whole lake, and the modules using them: those modules are one unit of
#: work for the test workers, so the lake is built once per test run (another worker would build its own).
#: Collection fails if another module uses one of them unlisted.
SHARED_BUILDS = {"tpcds_lake": ("lake_assets_tests/domains/tpcds/test_queries.py",
                                "lake_assets_tests/domains/tpcds/test_tpcds_end_to_end.py")}
#: Units started first, longest first: the two workers then finish together, instead of one running a
#: long module alone at the end while the other waits.
LONGEST_FIRST = ("tpcds_lake", "test_concurrent_runs.py", "test_commerce_end_to_end.py", "test_cli.py",
                 "test_analytics_end_to_end.py", "test_clusters.py", "test_end_to_end.py",
                 "test_cli_blocking_checks.py")


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its module, or the :data:`SHARED_BUILDS` lake its module uses."""
    module = nodeid.split("::", 1)[0]
    return next((name for name, modules in SHARED_BUILDS.items() if module in modules), module)


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist hands out whole units (:func:`unit_of`) in collection order, as workers free up:
    module and session fixtures are built once, and :data:`LONGEST_FIRST` start first. (Its own
    ``loadgroup`` marks do not reach the scheduler under pytest 9, whose node ids are immutable.)"""
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    config.option.loadscopereorder = False  # keep the collection order (longest first), not unit size
    return UnitScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """The longest units first (:data:`LONGEST_FIRST`); every user of a shared build is listed."""
    for item in items:
        for name in SHARED_BUILDS:
            if name in item.fixturenames and unit_of(item.nodeid) != name:
                raise pytest.UsageError(f"{item.nodeid} uses {name}: add its module to SHARED_BUILDS")

    def rank(item):
        unit = unit_of(item.nodeid)
        first = [i for i, n in enumerate(LONGEST_FIRST) if unit == n or unit.endswith("/" + n)]
        return first[0] if first else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the collection order inside each rank


@pytest.fixture(autouse=True)
def catalog_path(tmp_path, monkeypatch) -> str:
    """Each test's own embedded catalog file (never the project's .dagster_home)."""
    path = str(tmp_path / "catalog" / "catalog.duckdb")
    monkeypatch.setenv("LAKE_CATALOG_PATH", path)
    return path


@pytest.fixture(scope="session")
def spark():
    """The one Spark session of this test process (each of the two workers has its own; assets' lazy
    resources reuse it via getOrCreate)."""
    from dagster_pyspark.resources import spark_session_from_config

    from lake_assets.spark import spark_config_from_env

    session = spark_session_from_config(spark_config_from_env())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def lake_root(tmp_path) -> str:
    root = tmp_path / "lake"
    root.mkdir()
    return str(root)


@pytest.fixture
def local_lake(lake_root):
    from lake_assets.lake import LakeStorage

    return LakeStorage(lake_root)


@pytest.fixture(scope="session")
def moto_server():
    """moto's S3 server on 127.0.0.1: a real HTTP endpoint, as MinIO or LocalStack would be."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    yield endpoint
    if previous is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    else:
        os.environ["AWS_ENDPOINT_URL"] = previous
    server.stop()


@pytest.fixture
def s3_client(moto_server):
    import boto3

    return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")


@pytest.fixture
def s3_lake_root(s3_client) -> str:
    """A fresh bucket per test; the lake lives under a prefix, as in production."""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    return f"s3://{bucket}/lake"


@pytest.fixture
def s3_encryption(s3_client):
    """``s3_encryption(lake_root, prefix)``: each object's (ServerSideEncryption, SSEKMSKeyId) under a lake
    prefix, keyed relative to the lake root, read with boto3 HEAD requests."""

    def _read(lake_root: str, prefix: str = "") -> dict[str, tuple]:
        bucket, _, base = lake_root[len("s3://"):].partition("/")
        out = {}
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{base}/{prefix}"):
            for o in page.get("Contents", []):
                head = s3_client.head_object(Bucket=bucket, Key=o["Key"])
                out[o["Key"][len(base) + 1:]] = (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId"))
        return out

    return _read


@pytest.fixture
def s3_lake(s3_lake_root, moto_server):
    from lake_assets.lake import LakeStorage

    return LakeStorage(s3_lake_root, endpoint_url=moto_server)


@pytest.fixture
def instance():
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def s3_keys(s3_client):
    """``s3_keys(lake_root, prefix)``: every key under a lake prefix, relative to the lake root,
    listed with boto3 (independently of the code under test)."""

    def _keys(lake_root: str, prefix: str = "") -> list[str]:
        bucket, _, base = lake_root[len("s3://"):].partition("/")
        keys = []
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{base}/{prefix}"):
            keys += [o["Key"][len(base) + 1:] for o in page.get("Contents", [])]
        return sorted(keys)

    return _keys


@pytest.fixture
def catalog_matches_lake():
    """``check(resources, tables)``: each table registered from its declaration with exactly the lake's
    non-empty partitions (read with pyarrow from the files), and SQL over the catalog counting their rows."""
    from lake_assets.catalog.base import scan_partitions

    def _check(resources, tables) -> None:
        storage = resources["lake"].storage
        for t in tables:
            reg = resources["catalog"].describe(t)
            assert reg is not None, t.qualified_name
            assert reg.columns == [(f.name, f.dataType.simpleString()) for f in t.columns], t.qualified_name
            assert reg.partition_keys == [(k.name, k.type) for k in t.partition_keys], t.qualified_name
            assert reg.location.rstrip("/") == storage.uri(t.location)
            found = {e.path: e.rows for e in scan_partitions(storage, t)}
            assert reg.partitions == found, t.qualified_name
            n = resources["sql"].query(f"SELECT count(*) AS n FROM {t.qualified_name}").column("n")[0].as_py()
            assert n == sum(found.values()), t.qualified_name

    return _check


# -- the lake, read back and run: one way for every test (conftest modules are not importable, so
# -- test modules get these through the fixtures below) ---------------------------------------------
def read_parquet(storage, prefix: str, *, hive: Mapping[str, str] | None = None):
    """Every Parquet file under a lake prefix (a local or S3 ``LakeStorage``), read file by file with
    pyarrow, never with the code under test, as one table: files in path order, hidden ones skipped,
    a column some files lack null in the others, no file an empty table.

    A file read alone gets no column from its hive folders (``key=value``), so partition columns are
    the files' own; ``hive`` maps such a key to a column given each row's folder value (a string;
    null for a file whose path has no such folder)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for f in storage.list_files(prefix):
        if not f.path.endswith(".parquet"):
            continue
        with storage.open_random(f.path) as fh:
            table = pq.read_table(fh, partitioning=None)
        folders = dict(part.split("=", 1) for part in f.path.split("/")[:-1] if "=" in part)
        for key, column in (hive or {}).items():
            table = table.append_column(column, pa.array([folders.get(key)] * table.num_rows, pa.string()))
        tables.append(table)
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})


def run_lake(lake, instance, domain: str, *, settings=None, **kw):
    """`lake run`'s path for a domain fed through raw/ (``"logs"``, ``"commerce"``): its ingest job,
    then its builds (``run_landing_domain``, which takes ``kw``). ``lake``: a lake root (local or
    ``s3://``), its definitions built here with ``settings``, or definitions already built. Returns
    the domain's run report."""
    from lake_assets.definitions import build_defs
    from lake_assets.domains import DOMAINS
    from lake_assets.pipeline import run_landing_domain

    defs = build_defs(lake, settings) if isinstance(lake, str) else lake
    kw.setdefault("build_job", DOMAINS[domain].build_job_name)  # the domain's build jobs, in order
    return run_landing_domain(defs, instance, defs.resources["lake"].storage, DOMAINS[domain].landing(), **kw)


@pytest.fixture(scope="session", name="read_parquet")
def read_parquet_fixture():
    """``read_parquet(storage, prefix, hive=None)``: see :func:`read_parquet`."""
    return read_parquet


@pytest.fixture(scope="session", name="run_lake")
def run_lake_fixture():
    """``run_lake(lake, instance, domain, settings=None, **kw)``: see :func:`run_lake`."""
    return run_lake


#: ``<name>_<UTC token>[_<run id>]``: how bronze, archive and rejected copies are named (the run's part
#: differs between two runs of the same data); ``extracted_at=<time>``: an orders landing set.
_RUN_PART = re.compile(r"_\d{8}T\d{6,12}Z(_[0-9a-f]{8}-[0-9a-f-]{27})?|extracted_at=[0-9T.Z:-]+")


def lake_snapshot(root: str) -> dict:
    """What a lake holds, in terms two runs' lakes can be compared by: rows per table and partition
    (every declared table), gold and analytics values (columns not starting with ``_``), and the
    archive, rejected, validated, quarantine and bronze file sets (run-specific name parts removed)."""
    import pyarrow.parquet as pq

    from lake_assets.definitions import registry
    from lake_assets.lake import LakeStorage

    storage = LakeStorage(root)
    out: dict = {"tables": {}, "gold": {}}
    for table in registry():
        rows: list[tuple[str, int]] = []
        values = []
        for f in table.data_files(storage):
            with storage.open_random(f.path) as fh:
                pf = pq.ParquetFile(fh)
                rows.append((_RUN_PART.sub("", f.path[len(table.location):]), pf.metadata.num_rows))
                if table.zone in ("gold", "analytics") and pf.metadata.num_rows:
                    values += [tuple(sorted((k, str(v)) for k, v in r.items() if not k.startswith("_")))
                               for r in pf.read().to_pylist()]
        out["tables"][table.qualified_name] = sorted(rows)
        if values:
            out["gold"][table.qualified_name] = sorted(values)
    for zone in ("archive", "rejected", "validated", "quarantine", "bronze"):
        out[zone] = sorted(_RUN_PART.sub("", f.path) for f in storage.list_files(zone)
                           if "/_manifests/" not in f.path)
    out["raw"] = [f.path for f in storage.list_files("raw")]
    return out


@pytest.fixture(scope="session", name="lake_snapshot")
def lake_snapshot_fixture():
    """``lake_snapshot(root)``: see :func:`lake_snapshot`."""
    return lake_snapshot


# -- a fault-injecting proxy in front of moto's S3 ----------------------------------------------

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class FaultyProxy:  # noqa: D101 (documented below)
    """``every``-th request answered 503 SlowDown, each ``drop_every``-th dropped; ``fail_first``
    (a path fragment) makes the first PUT whose path holds it lose its connection (a publish cut)."""

    def __init__(self, upstream: str, *, every: int = 5, drop_every: int = 7, fail_first: str | None = None):
        self.upstream = urlparse(upstream)
        self.every, self.drop_every, self.fail_first = every, drop_every, fail_first
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path?query) of every request, in order
        self.faults = {"slow_down": 0, "dropped": 0, "publish_cut": 0}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms stall per answer (Nagle against delayed ACKs)

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    raw = b""
                    while True:
                        line = self.rfile.readline()
                        raw += line
                        size = int(line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while True:  # trailers, then the blank line
                                trailer = self.rfile.readline()
                                raw += trailer
                                if trailer in (b"\r\n", b"\n", b""):
                                    return raw
                        raw += self.rfile.read(size + 2)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self):
                body = self._body()
                action = proxy._decide(self.command, self.path)
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if action == "slow_down":
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                headers = {k: v for k, v in self.headers.items()}
                conn.request(self.command, self.path, body=body, headers=headers, encode_chunked=False)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                # A HEAD answer carries the object's length, not its (empty) body's.
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _decide(self, method: str, path: str) -> str:
        with self.lock:
            self.requests.append((method, path))
            n = self.count
            if self.fail_first and method == "PUT" and self.fail_first in path:
                self.fail_first = None
                self.faults["publish_cut"] += 1
                return "drop"
            if n % self.drop_every == 0:
                self.faults["dropped"] += 1
                return "drop"
            if n % self.every == 0:
                self.faults["slow_down"] += 1
                return "slow_down"
        return "forward"

    @property
    def count(self) -> int:
        """Requests seen so far."""
        return len(self.requests)

    def __enter__(self) -> "FaultyProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session", name="faulty_proxy")
def faulty_proxy_fixture():
    """``FaultyProxy(upstream, every=, drop_every=, fail_first=)``: a context manager whose ``url``
    fronts ``upstream`` (moto) with 503 SlowDown answers and dropped connections."""
    return FaultyProxy


def check_resources(root: str) -> dict:
    """What a materialization of lake assets with their checks needs, on ``root``, without a catalog."""
    from lake_assets.catalog.resource import CatalogResource
    from lake_assets.io_managers import LakeParquetIOManager
    from lake_assets.resources import LakeResource
    from lake_assets.spark import spark_resource_from_env

    lake, spark, catalog = LakeResource(root=root), spark_resource_from_env(), CatalogResource(kind="none")
    return {"lake": lake, "spark": spark, "catalog": catalog,
            "lake_io_manager": LakeParquetIOManager(lake=lake, spark=spark, catalog=catalog)}


def check_metadata(evaluation) -> dict:
    """An asset check evaluation's metadata as plain values."""
    return {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}


@pytest.fixture(scope="session", name="check_resources")
def check_resources_fixture():
    """``check_resources(root)``: see :func:`check_resources`."""
    return check_resources


@pytest.fixture(scope="session", name="check_metadata")
def check_metadata_fixture():
    """``check_metadata(evaluation)``: see :func:`check_metadata`."""
    return check_metadata
