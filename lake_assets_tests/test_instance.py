"""The Dagster instance lake writes (lake_assets.instance): its dagster.yaml and its event log storage.

The storage keeps each shard's connection open; what must not change is what
Dagster finds in the files (stock Dagster reads them alike), that a live run
is still seen by a file watch (the UI's run page), and that a user's own
``dagster.yaml`` is left alone.
"""
import logging
import os
import threading
import time

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    DagsterEventType,
    DagsterInstance,
    EventRecordsFilter,
    job,
    op,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from lake_assets.instance import LakeEventLogStorage, ensure_instance_yaml

PARTITIONS = [f"2026-01-{d:02d}" for d in range(1, 31)]


@op
def _report(context):
    for key in PARTITIONS:
        context.log_event(AssetMaterialization(asset_key="sales", partition=key))
        context.log_event(AssetCheckEvaluation(asset_key=AssetKey("sales"), check_name="rows_accounted",
                                               passed=key != PARTITIONS[-1], partition=key))


@job
def _reporting_job():
    _report()


def test_lake_instance_stores_runs_that_stock_dagster_reads_alike(tmp_path):
    home = tmp_path / "home with space"
    home.mkdir()
    ensure_instance_yaml(str(home))
    with DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, LakeEventLogStorage)
        run_id = _reporting_job.execute_in_process(instance=instance).run_id
        assert os.path.exists(home / "history" / "runs" / f"{run_id}.db")  # where Dagster's own puts it
        ours = [r.event_log_entry.dagster_event_type for r in instance.get_records_for_run(run_id, limit=1000).records]

    stock = SqliteEventLogStorage(str(home / "history" / "runs"))  # Dagster's own, on the same files
    try:
        assert [r.event_log_entry.dagster_event_type
                for r in stock.get_records_for_run(run_id, limit=1000).records] == ours
        assert ours.count(DagsterEventType.ASSET_MATERIALIZATION) == len(PARTITIONS)
        found = stock.get_event_records(EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION,
                                                           asset_key=AssetKey("sales")), limit=1000)
        assert sorted(r.partition_key for r in found) == PARTITIONS  # the cross-run index shard too
        checks = stock.get_asset_check_execution_history(
            AssetCheckKey(AssetKey("sales"), "rows_accounted"), limit=1000)
        assert len(checks) == len(PARTITIONS)
        assert {(c.partition, c.status.value) for c in checks if c.status.value == "FAILED"} == {
            (PARTITIONS[-1], "FAILED")}
    finally:
        stock.dispose()


def _log_entry(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(error_info=None, level=logging.INFO, user_message=message, run_id=run_id,
                         timestamp=time.time())


def test_a_watcher_sees_each_write_of_a_run_while_the_writer_keeps_its_connection(tmp_path):
    """The UI follows a live run through a file watch on the run's database; with the writer's
    connection kept open its commits stay in the WAL, so each write must still signal the file."""
    base = str(tmp_path / "runs")
    writer, viewer = LakeEventLogStorage(base), LakeEventLogStorage(base)  # two processes' views
    run_id = "4f0c5a9e-0000-4000-8000-000000000001"
    seen, arrived = [], threading.Event()

    def on_event(entry, _cursor):
        seen.append(entry.user_message)
        if len(seen) == 3:
            arrived.set()

    try:
        writer.store_event(_log_entry(run_id, "step one"))  # the run's shard exists
        viewer.watch(run_id, None, on_event)
        time.sleep(0.5)  # the observer is up
        for message in ("step two", "step three"):
            writer.store_event(_log_entry(run_id, message))
        assert arrived.wait(15), f"the watcher saw only {seen}"
        assert seen == ["step one", "step two", "step three"]
    finally:
        viewer.end_watch(run_id, on_event)
        viewer.dispose()
        writer.dispose()


def test_reading_a_run_does_not_signal_its_file(tmp_path):
    """Only writes touch the run's file: a watcher reading on each signal must not signal itself."""
    base = str(tmp_path / "runs")
    storage = LakeEventLogStorage(base)
    run_id = "4f0c5a9e-0000-4000-8000-000000000002"
    try:
        storage.store_event(_log_entry(run_id, "written"))
        path = storage.path_for_shard(run_id)
        os.utime(path, (1_000_000, 1_000_000))
        assert [r.event_log_entry.user_message for r in storage.get_records_for_run(run_id).records] == ["written"]
        assert os.stat(path).st_mtime == 1_000_000
        storage.store_event(_log_entry(run_id, "again"))
        assert os.stat(path).st_mtime > 1_000_000
    finally:
        storage.dispose()


def test_instance_yaml_is_written_once_and_a_users_own_is_kept(tmp_path):
    path = ensure_instance_yaml(str(tmp_path))
    written = open(path).read()
    assert "class: LakeEventLogStorage" in written and "enabled: false" in written

    earlier = "telemetry:\n  enabled: false\n"  # the file lake wrote before
    with open(path, "w") as f:
        f.write(earlier)
    ensure_instance_yaml(str(tmp_path))  # in a home lake was pointed at: left as it is
    assert open(path).read() == earlier
    ensure_instance_yaml(str(tmp_path), lakes_own=True)  # in lake's own home: upgraded
    assert open(path).read() == written

    mine = "telemetry:\n  enabled: true\nrun_monitoring:\n  enabled: true\n"
    with open(path, "w") as f:
        f.write(mine)
    ensure_instance_yaml(str(tmp_path))
    assert open(path).read() == mine
    # lake's own file without its first line is the user's now, edits kept.
    edited = "\n".join(written.splitlines()[1:]).replace("enabled: false", "enabled: true") + "\n"
    with open(path, "w") as f:
        f.write(edited)
    ensure_instance_yaml(str(tmp_path))
    assert open(path).read() == edited
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_home_moved_elsewhere_gets_its_own_event_log_folder_back(tmp_path):
    """The storage's folder is a path in the file: a home copied or moved keeps naming the old one, and
    the runs recorded there would land in the old home. lake points its own file at the home it is in."""
    import shutil

    import yaml

    old, new = tmp_path / "old_home", tmp_path / "new_home"
    old.mkdir()
    ensure_instance_yaml(str(old))
    shutil.move(str(old), str(new))
    assert yaml.safe_load(open(new / "dagster.yaml"))["event_log_storage"]["config"]["base_dir"] == str(
        old / "history" / "runs")
    ensure_instance_yaml(str(new))
    assert yaml.safe_load(open(new / "dagster.yaml"))["event_log_storage"]["config"]["base_dir"] == str(
        new / "history" / "runs")
    with DagsterInstance.from_config(str(new)) as instance:
        run_id = _reporting_job.execute_in_process(instance=instance).run_id
    assert os.path.exists(new / "history" / "runs" / f"{run_id}.db") and not old.exists()


def test_a_home_holding_another_instances_runs_is_not_made_to_need_lake(tmp_path):
    """lake's file names a storage class of lake's: every Dagster process opening that home would need
    lake_assets importable. A DAGSTER_HOME already holding runs and no file (another project's, or one
    shared by several) gets only telemetry off, its storage stays Dagster's; a fresh one is lake's."""
    shared = tmp_path / "shared"
    shared.mkdir()
    with DagsterInstance.from_config(str(shared)) as instance:  # stock, no dagster.yaml
        _reporting_job.execute_in_process(instance=instance)
    ensure_instance_yaml(str(shared))
    assert open(shared / "dagster.yaml").read() == "telemetry:\n  enabled: false\n"
    with DagsterInstance.from_config(str(shared)) as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    ensure_instance_yaml(str(fresh))
    with DagsterInstance.from_config(str(fresh)) as instance:
        assert isinstance(instance.event_log_storage, LakeEventLogStorage)


def test_a_run_wiped_by_another_process_is_written_afresh_not_into_the_deleted_file(tmp_path):
    """``dagster run wipe`` elsewhere deletes the run databases under a kept connection: the next write
    must land in a new file every reader sees, not in the deleted one."""
    base = str(tmp_path / "runs")
    writer, wiper = LakeEventLogStorage(base), LakeEventLogStorage(base)
    run_id = "4f0c5a9e-0000-4000-8000-000000000003"
    try:
        writer.store_event(_log_entry(run_id, "before the wipe"))
        wiper.wipe()
        writer.store_event(_log_entry(run_id, "after the wipe"))
        reader = LakeEventLogStorage(base)
        try:
            assert [r.event_log_entry.user_message for r in reader.get_records_for_run(run_id).records] == [
                "after the wipe"]
        finally:
            reader.dispose()
    finally:
        writer.dispose()
        wiper.dispose()


@pytest.mark.parametrize("home", ["plain", "with space", 'quote"d', "caf\u00e9 \U0001f30a"])
def test_instance_yaml_names_the_event_log_folder_for_any_path(tmp_path, home):
    folder = tmp_path / home
    folder.mkdir()
    ensure_instance_yaml(str(folder))
    import yaml

    config = yaml.safe_load(open(folder / "dagster.yaml"))
    assert config["event_log_storage"]["config"]["base_dir"] == str(folder / "history" / "runs")
    assert config["event_log_storage"]["class"] == LakeEventLogStorage.__name__


def _open_databases(folder: str) -> set[str]:
    """The database files of ``folder`` this process holds open (Linux: /proc/self/fd)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(folder) and target.endswith(".db"):
            found.add(os.path.basename(target))
    return found


def test_a_storage_reading_many_runs_keeps_only_the_latest_open_and_reads_any_again(tmp_path):
    """A webserver reads run after run: the connections it keeps are bounded (the index and the latest
    KEPT_SHARDS runs), and a run whose connection was let go reads back the same."""
    from lake_assets.instance import KEPT_SHARDS

    base = str(tmp_path / "runs")
    storage = LakeEventLogStorage(base)
    runs = [f"4f0c5a9e-0000-4000-8000-{i:012d}" for i in range(KEPT_SHARDS + 4)]
    try:
        for run_id in runs:
            storage.store_event(_log_entry(run_id, f"hello from {run_id[-2:]}"))
        held = _open_databases(base)
        assert len(held - {"index.db"}) <= KEPT_SHARDS
        assert f"{runs[-1]}.db" in held and f"{runs[0]}.db" not in held
        for run_id in runs:
            assert [r.event_log_entry.user_message for r in storage.get_records_for_run(run_id).records] == [
                f"hello from {run_id[-2:]}"]
    finally:
        storage.dispose()
    assert not _open_databases(base)  # disposed: nothing left open
