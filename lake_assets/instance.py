"""The Dagster instance ``lake`` records its runs in: its ``dagster.yaml`` and its event log.

Every run the CLI starts, and every run ``lake ui`` launches, stores one event per
step start, output, materialization (one per partition) and check evaluation (one
per partition checked) in the instance's SQLite event log. A month-partitioned
backfill of the tpcds lake stores about 5,000; Dagster's SQLite storage opens a
new engine and connection for each of the two or three transactions an event
takes, and in WAL mode closing the last connection to a database checkpoints it,
deletes its ``-wal`` file and syncs the folder: about 10 ms an event on a 2-vCPU
VM, as much time as Spark spends on a daily batch.

:class:`LakeEventLogStorage` is that storage with one change: a shard's engine
(the run's database, the cross-run index) is kept and its pooled connection
reused, so each event is its transactions alone (about 3 ms). Durability is
SQLite's default (``synchronous=FULL``: every commit is synced). Stock Dagster
reads and writes the same files (same schema, same layout); only the pooling
differs. Two things the per-event close did as a side effect are kept on purpose:

* Dagster's UI follows a live run by watching its database *file* for writes; in
  WAL mode with a connection kept open, commits land in ``-wal`` and the database
  file changes only at a checkpoint, so after each write to a run's shard its
  file's times are touched (a file-watch event, no data written);
* engines are kept for the most recent shards only (a webserver reads many runs).
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from contextlib import contextmanager

from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)

#: Run shards whose engine (one open connection each) a storage keeps, besides the index's.
KEPT_SHARDS = 8

#: The first line of the ``dagster.yaml`` ``lake`` writes: while it is there, the file is lake's.
OURS = "# Written by lake (lake_assets.instance); rewritten while this line is here: delete it to keep edits."
#: What ``lake`` writes as an instance's ``dagster.yaml`` (``{runs}``: the event log's folder, in the home).
INSTANCE_YAML = OURS + """
telemetry:
  enabled: false
event_log_storage:
  module: lake_assets.instance
  class: LakeEventLogStorage
  config:
    base_dir: {runs}
"""
#: The file ``lake`` wrote before the event log storage was its own: upgraded in place, as ours.
_EARLIER_YAML = "telemetry:\n  enabled: false\n"


class LakeEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log storage with each shard's engine and connection kept (module docstring).

    Configured in ``dagster.yaml`` as ``event_log_storage`` (module ``lake_assets.instance``,
    class ``LakeEventLogStorage``, ``base_dir`` as for Dagster's own): :func:`ensure_instance_yaml`.
    """

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict = OrderedDict()
        self._tables: set[str] = set()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "LakeEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str):
        """The shard's kept engine (created, and its database initialised, on first use); the index
        always kept, the least recently used run beyond :data:`KEPT_SHARDS` disposed. An engine whose
        file was deleted or replaced since (``dagster run wipe`` in another process) is let go, not
        written into a deleted file. Called under ``_db_lock``."""
        from sqlalchemy import create_engine

        path = self.path_for_shard(shard)
        engine, inode = self._engines.pop(shard, (None, None))
        if engine is not None and _inode(path) != inode:
            engine.dispose()
            engine = None
            self._initialized_dbs.discard(shard)  # a wiped shard is created again
        if engine is None:
            # One connection kept; the few more Dagster's schema setup opens are closed after it.
            engine = create_engine(self.conn_string_for_shard(shard), pool_size=1,
                                   connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
            try:
                if shard not in self._initialized_dbs:
                    self._initdb(engine)
                    self._initialized_dbs.add(shard)
            except BaseException:
                engine.dispose()
                raise
            inode = _inode(path)
        self._engines[shard] = (engine, inode)
        runs = [k for k in self._engines if k != INDEX_SHARD_NAME]
        for oldest in runs[:max(0, len(runs) - KEPT_SHARDS)]:
            self._engines.pop(oldest)[0].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str):
        with self._db_lock:
            engine = self._engine(shard)
            with engine.connect() as conn:
                changes = conn.connection.dbapi_connection.total_changes  # the connection's, so far
                with conn.begin():
                    yield conn
                wrote = conn.connection.dbapi_connection.total_changes != changes
            if wrote and shard != INDEX_SHARD_NAME:
                try:
                    os.utime(self.path_for_shard(shard))  # the UI's file watch sees the write (never a read's)
                except FileNotFoundError:
                    pass  # deleted meanwhile: nothing to watch

    def has_table(self, table_name: str) -> bool:
        # Asked on every check evaluation (``supports_asset_checks``); a table, once there, stays.
        if table_name in self._tables:
            return True
        found = super().has_table(table_name)
        if found:
            self._tables.add(table_name)
        return found

    def _dispose_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1][0].dispose()

    def wipe(self) -> None:
        self._dispose_engines()  # no connection left open on a file about to be deleted
        super().wipe()

    def dispose(self) -> None:
        super().dispose()  # the file watch stopped first: no callback opens an engine after
        self._dispose_engines()


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def ensure_instance_yaml(home: str, *, lakes_own: bool = False) -> str:
    """The ``dagster.yaml`` of the instance at ``home``, as ``lake`` wants it; returns its path.

    ``lake``'s file (its first line :data:`OURS`) names :class:`LakeEventLogStorage`, which every
    Dagster process opening the home must then be able to import. So it goes only where the home
    is lake's: ``lakes_own`` (the project-local home ``lake`` makes) or a fresh home (no file, no
    run history yet); a home already holding another instance's history gets at most the
    telemetry-off file ``lake`` has always written, and a file the user wrote is left as it is.

    Written atomically (several ``lake`` processes may start together on a fresh home). ``lake``'s
    file is rewritten when it differs, e.g. in a home moved or copied elsewhere, where it still names
    the old home's event log folder (the storage's ``base_dir`` is a path: Dagster's configuration
    has no "relative to the instance"); the earlier telemetry-only file is upgraded in lake's own home.
    """
    path = os.path.join(home, "dagster.yaml")
    # (a JSON string is a YAML string: any path, quoted; non-ASCII kept as it is, never escaped)
    runs = json.dumps(os.path.join(os.path.abspath(home), "history", "runs"), ensure_ascii=False)
    wanted = INSTANCE_YAML.format(runs=runs)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            found = f.read()
        if found == wanted or not (found.startswith(OURS + "\n") or (found == _EARLIER_YAML and lakes_own)):
            return path
    elif not lakes_own and os.path.exists(os.path.join(home, "history")):
        wanted = _EARLIER_YAML  # another instance's home: telemetry off, its storage its own
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(wanted)
    os.replace(tmp, path)
    return path
