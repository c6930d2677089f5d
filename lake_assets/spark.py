"""Spark: the session settings, and the one bridge between Spark and the lake's storage.

Which path runs when:

* local lake (a folder): Spark reads and writes the lake's files itself;
* ``s3://`` lake with ``LAKE_SPARK_S3_SCHEME=s3a`` (or ``s3`` on EMR/EMRFS):
  Spark reads and writes ``s3a://bucket/prefix/...`` itself;
* ``s3://`` lake without it (no s3a jars, as on a laptop without Maven): the
  files cross through Arrow: inputs are downloaded to a local staging folder
  and read from there, outputs are written there and uploaded. This needs the
  driver and executors to share a filesystem, i.e. ``local[*]`` (or a Connect
  server on the same machine).

The session is created lazily, on the first asset that needs it, never at import
or definition-load time; with the in-process executor one session serves a run.
``lake run`` starts it a little ahead, on a background thread, once its settings
are read (:func:`start_session_early`), so a fresh process's JVM start overlaps
the definitions being built and ``raw/`` being ingested.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass

from dagster_pyspark import LazyPySparkResource

from lake_assets.lake import LakeFile, LakeStorage
from lake_assets.lake.layout import join


#: The Parquet row group size of every file Spark writes (see spark_config_from_env).
ROW_GROUP_BYTES = 16 * 1024 * 1024

#: The JVM option that lets the JIT compile Spark's large generated methods (see spark_config_from_env).
HUGE_METHODS_COMPILED = "-XX:-DontCompileHugeMethods"


def spark_config_from_env(submitted: bool = False) -> dict[str, str]:
    """Session settings: ``SPARK_REMOTE`` (Spark Connect) or ``SPARK_MASTER`` (default ``local[*]``).

    ``submitted``: the process was launched by ``spark-submit`` (EMR, EMR Serverless,
    Glue), which already chose the master and the driver's address: only the SQL
    settings apply.
    """
    # Everything Spark binds stays on loopback unless told otherwise.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    conf = {
        "spark.app.name": os.environ.get("SPARK_APP_NAME", "lake_assets"),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "true",
        "spark.sql.shuffle.partitions": os.environ.get("SPARK_SHUFFLE_PARTITIONS", "8"),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.parquet.compression.codec": "zstd",
        # INT64 microseconds marked UTC (not legacy INT96): what Arrow, DuckDB and Athena read as UTC.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.sources.partitionOverwriteMode": "static",
        # List input files on the driver: a distributed listing job per read costs more than it saves.
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
        # A JSON object with a repeated key keeps the last value, as Python's json does (ingestion).
        "spark.sql.variant.allowDuplicateKeys": "true",
        # Parquet row groups of 16 MiB, not 128: Spark reads a file in splits of whole row groups, and
        # the lake writes one file per partition or delivery, so a file of one row group is read by
        # one task whatever the cores (a TPC-DS SF 1 inventory delivery: its silver build ran on one).
        "spark.hadoop.parquet.block.size": str(ROW_GROUP_BYTES),
    }
    if submitted:
        return {**conf, **_s3_encryption_conf(), **_conf_overrides()}
    remote = os.environ.get("SPARK_REMOTE")
    if remote:  # the Connect server's own settings say how it reaches S3
        conf["spark.remote"] = remote
        return conf
    conf.update(_s3_encryption_conf())
    master = os.environ.get("SPARK_MASTER", "local[*]")
    cores = local_cores(master)
    if cores:
        # Input splits: several per core, so a heavy split does not leave the other cores idle.
        conf["spark.sql.files.minPartitionNum"] = str(SPLITS_PER_CORE * cores)
        # A cached frame is read back once or twice per run: compressing it costs more than it saves here.
        conf["spark.sql.inMemoryColumnarStorage.compressed"] = "false"
    conf.update(
        {
            "spark.master": master,
            "spark.driver.host": os.environ.get("SPARK_DRIVER_HOST", "127.0.0.1"),
            "spark.driver.bindAddress": os.environ.get("SPARK_DRIVER_BIND_ADDRESS", "127.0.0.1"),
            "spark.ui.enabled": os.environ.get("SPARK_UI_ENABLED", "false"),
            "spark.driver.memory": os.environ.get("SPARK_DRIVER_MEMORY", "4g"),
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.ui.showConsoleProgress": "false",
            # Local tasks have nowhere better to wait for: don't (the 3 s default stalls cached stages).
            "spark.locality.wait": os.environ.get("SPARK_LOCALITY_WAIT", "0s"),
            # Off: with it on, every Column built in Python (each F.col, F.when, cast...) also walks the
            # Python stack and sends it to the JVM, about six more py4j round trips per call, for the
            # call site Spark would name in a failed expression's error. A table's parse builds
            # thousands: it halved the plan-building time of a TPC-DS bronze table (0.68 -> 0.30 s)
            # and took about 10% off a warm commerce run. Dagster's traceback still names the asset
            # and the line; SPARK_CONF_spark__python__sql__dataFrameDebugging__enabled=true restores it.
            "spark.python.sql.dataFrameDebugging.enabled": "false",
            # HotSpot compiles no method over 8,000 bytes of bytecode: the rest run in its interpreter.
            # A wide table's whole-stage generated code is over it (a TPC-DS fact's bronze parse,
            # 23 typed fields and their rules: processNext is 16.6 kB), and then runs several times
            # slower than compiled (that parse on 2.9 M store_sales lines: 15-21 s -> 8.5 s).
            # The *default* options, so that SPARK_CONF_spark__driver__extraJavaOptions adds to them.
            "spark.driver.defaultJavaOptions": HUGE_METHODS_COMPILED,
            "spark.executor.defaultJavaOptions": HUGE_METHODS_COMPILED,
        }
    )
    conf.update(_conf_overrides())
    return conf


def _s3_encryption_conf() -> dict[str, str]:
    """When Spark writes S3 itself (s3a, or EMRFS's s3), its writes name the lake's KMS key as the
    lake's own writes do (``LAKE_SSE=kms``, ``LAKE_KMS_KEY_ID``); nothing otherwise."""
    from lake_assets.lake.storage import configured_sse

    scheme = os.environ.get("LAKE_SPARK_S3_SCHEME")
    key = configured_sse()[1] if scheme else None
    if not key:
        return {}
    if scheme == "s3a":
        return {"spark.hadoop.fs.s3a.encryption.algorithm": "SSE-KMS", "spark.hadoop.fs.s3a.encryption.key": key}
    return {"spark.hadoop.fs.s3.enableServerSideEncryption": "true",
            "spark.hadoop.fs.s3.serverSideEncryption.kms.keyId": key}


def _conf_overrides() -> dict[str, str]:
    """Any other setting: SPARK_CONF_spark__executor__memory=2g -> spark.executor.memory=2g."""
    return {key[len("SPARK_CONF_"):].replace("__", "."): value
            for key, value in os.environ.items() if key.startswith("SPARK_CONF_")}


def launched_by_spark_submit() -> bool:
    """True in a Python driver that spark-submit started (it hands over its JVM's gateway)."""
    return bool(os.environ.get("PYSPARK_GATEWAY_PORT"))


#: Input splits per local core (``spark.sql.files.minPartitionNum``).
SPLITS_PER_CORE = 8


def local_cores(master: str) -> int | None:
    """The cores of a ``local``, ``local[N]`` or ``local[*]`` master (None for a cluster)."""
    m = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\s*\d+)?\])?", master.strip())
    if not m:
        return None
    if m.group(1) == "*":
        return os.cpu_count() or 1
    return int(m.group(1) or 1)


class LakeSparkResource(LazyPySparkResource):
    """dagster-pyspark's lazy session, failing fast when a Spark Connect server is unreachable
    (pyspark's own retry policy would keep a run waiting for ten minutes)."""

    def _init_session(self) -> None:
        remote = self.spark_config.get("spark.remote")
        if remote and self._spark_session is None:
            check_reachable(remote)
        super()._init_session()


def check_reachable(remote: str, timeout: float = 10.0) -> None:
    """Raise a clear error when nothing listens at a Spark Connect URL (``sc://host:port/...``)."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(remote)
    host, port = url.hostname or "127.0.0.1", url.port or 15002
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(
            f"SPARK_REMOTE={remote}: no Spark Connect server answers at {host}:{port} ({exc}); "
            "start one (sbin/start-connect-server.sh) or unset SPARK_REMOTE to run Spark locally"
        ) from exc


def start_session_early(spark_config: dict[str, str]) -> threading.Thread | None:
    """Start this process's Spark session on a daemon thread and warm it (:func:`warm_up`), unless a
    session is already running here, spark-submit launched the process, or the session is a Spark
    Connect client. Returns the thread.

    Why: ``lake run`` ingests ``raw/`` in Python before its first Spark step, and in a fresh process
    that step used to carry the JVM's start, the SparkContext's and the first query's class loading
    and compilation (most of the step, on a daily batch). Started here, that work overlaps ingestion.
    The steps' resource gets this same session from ``getOrCreate`` (pyspark's builder lock makes it
    wait while the session is still starting), built from the same settings. A failure is left for
    the first Spark step to meet and report, exactly as without the head start.
    """
    from pyspark import SparkContext

    if spark_config.get("spark.remote") or launched_by_spark_submit() or SparkContext._active_spark_context is not None:
        # A Connect client starts nothing; spark-submit has started the JVM (and knows the master);
        # a running session is already warm.
        return None

    local = local_cores(spark_config.get("spark.master", "local[*]")) is not None

    def _start() -> None:
        from dagster_pyspark.resources import spark_session_from_config

        try:
            warm_up(spark_session_from_config(spark_config), local)
        except Exception:  # noqa: BLE001 - the first step starts the session again and reports the error
            pass

    thread = threading.Thread(target=_start, name="lake-spark-start", daemon=True)
    thread.start()
    return thread


def warm_up(spark, local: bool) -> None:
    """Run what every step's first job needs loaded and compiled, on a few generated rows: typed
    expressions, a shuffle and an aggregate, and (``local``: the driver's disk is the executors')
    a Parquet file written and read back in the process's staging folder."""
    df = (spark.range(256, numPartitions=2)
          .selectExpr("id % 8 AS k", "CAST(id AS STRING) AS s", "CAST(id AS DECIMAL(12, 2)) AS amount",
                      "TIMESTAMP '2024-01-01 00:00:00' + make_interval(0, 0, 0, 0, 0, 0, id) AS at")
          .groupBy("k").agg({"amount": "sum", "at": "max", "s": "count"}))
    if not local:
        df.count()
        return
    scratch = os.path.join(_local_staging_root(), f"warm-up-{uuid.uuid4().hex}")
    try:
        path = "file://" + scratch  # never the default filesystem (it may be a bucket)
        df.write.parquet(path)
        spark.read.parquet(path).count()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def spark_resource_from_env() -> LakeSparkResource:
    return LakeSparkResource(spark_config=spark_config_from_env())


_STAGING_ROOT: str | None = None


def _local_staging_root() -> str:
    """A process-wide scratch folder for the Arrow crossing, removed at exit."""
    global _STAGING_ROOT
    if _STAGING_ROOT is None:
        _STAGING_ROOT = tempfile.mkdtemp(prefix="lake-spark-", dir=os.environ.get("LAKE_STAGING_DIR"))
        atexit.register(shutil.rmtree, _STAGING_ROOT, True)
    return _STAGING_ROOT


@dataclass
class SparkStage:
    """A folder Spark writes into before files are published to their lake paths.

    On a local lake, and with s3a, it sits inside the lake root (``_staging/``)
    so publishing is a rename or a server-side copy; otherwise it is local scratch.
    """

    storage: LakeStorage  # the storage the staged files live in
    rel: str  # the stage folder, relative to that storage
    lake: LakeStorage

    @classmethod
    def create(cls, lake: LakeStorage) -> "SparkStage":
        token = uuid.uuid4().hex
        if lake.spark_direct:
            return cls(lake, join("_staging", token), lake)
        local = LakeStorage(os.path.join(_local_staging_root(), token))
        return cls(local, "", lake)

    @property
    def spark_uri(self) -> str:
        return self.storage.spark_uri(self.rel) if self.storage is self.lake else self.storage.local_path(self.rel)

    def files(self) -> list[LakeFile]:
        return [f for f in self.storage.list_files(self.rel) if f.path.endswith(".parquet")]

    def publish(self, f: LakeFile, dest: str) -> None:
        """Make a staged file the lake file ``dest``, replacing it atomically."""
        if self.storage is self.lake:
            self.lake.move(f.path, dest)
        else:
            self.lake.put_file(self.storage.local_path(f.path), dest, move=True)

    def cleanup(self) -> None:
        self.storage.delete_dir(self.rel)


@contextlib.contextmanager
def kept(frame, keep: bool = True):
    """``frame`` persisted for the block, then released: its first Spark job keeps its rows for the
    jobs after it, which read them instead of computing them again. Worth it only where a frame is
    read more than once and computing it costs more than holding it; ``keep`` False yields it as is."""
    if not keep:
        yield frame
        return
    frame = frame.persist()
    try:
        yield frame
    finally:
        frame.unpersist()


def spark_paths(lake: LakeStorage, rels: list[str]) -> list[str]:
    """Paths Spark can read for these lake files or folders (downloaded when it cannot reach them)."""
    if lake.spark_direct:
        return [lake.spark_uri(r) for r in rels]
    root = os.path.join(_local_staging_root(), "inputs", uuid.uuid4().hex)
    out = []
    for rel in rels:
        files = [LakeFile(rel, 0, 0)] if lake.is_file(rel) else lake.list_files(rel)
        for f in files:
            local = os.path.join(root, f.path)
            lake.download(f.path, local)
        out.append(os.path.join(root, rel))
    return out
