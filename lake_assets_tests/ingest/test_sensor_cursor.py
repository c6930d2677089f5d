"""The landing sensor's cursor: which raw files count as new, in what order, across ticks."""
from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from dagster import AssetKey, SensorResult, SkipReason, build_sensor_context

from lake_assets.ingest.formats import JSON_GZIP, NDJSON, XML_ERRORS
from lake_assets.ingest.jobs import (
    LandingSpec,
    RequestLedger,
    build_ingest_job,
    build_landing_sensor,
    file_key,
    oldest_first,
)
from lake_assets.lake import LakeFile
from lake_assets.resources import LakeResource

SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC  # a fixed instant, whole seconds (as S3's LastModified)


def lf(path: str, mtime_s: float, size: int = 10) -> LakeFile:
    return LakeFile(path, size, int(T0 + mtime_s * SEC))


# -- which files are due -----------------------------------------------------------------
def new_files(files: list[LakeFile], requested: set[str]) -> list[LakeFile]:
    """What the sensor requests on a tick, given the keys it requested a moment ago."""
    ledger = RequestLedger({k: 0.0 for k in requested}, {})
    waiting = oldest_first(files)
    return [waiting[k] for k in ledger.due(list(waiting), now=1.0, retry_after=900)]


def test_new_files_with_nothing_requested_returns_everything_oldest_first():
    files = [lf("raw/ndjson/c", 3), lf("raw/ndjson/a", 2), lf("raw/ndjson/b", 2), lf("raw/xml_errors/z", 1)]
    assert [f.path for f in new_files(files, set())] == [
        "raw/xml_errors/z", "raw/ndjson/a", "raw/ndjson/b", "raw/ndjson/c"]


def test_new_files_skips_requested_files_whatever_their_mtime():
    files = [lf("raw/ndjson/old", 50), lf("raw/ndjson/seen", 100), lf("raw/ndjson/new", 150),
             lf("raw/ndjson/older-but-new", 10)]
    got = new_files(files, {file_key(files[0]), file_key(files[1])})
    assert [f.path for f in got] == ["raw/ndjson/older-but-new", "raw/ndjson/new"]


def test_a_file_rewritten_in_place_is_new_again():
    before, after = lf("raw/ndjson/f", 100, size=10), lf("raw/ndjson/f", 130, size=12)
    assert new_files([after], {file_key(before)}) == [after]
    assert new_files([before], {file_key(before)}) == []
    assert new_files([], {file_key(before)}) == []


def test_the_ledger_forgets_what_left_retries_what_waits_too_long_and_marks_retried_run_keys():
    ledger = RequestLedger.load(json.dumps({"requested": {"a": 100.0, "b": 100.0}, "last_modified_ns": 7}))
    assert ledger.due(["a", "c"], now=200.0, retry_after=900) == ["c"]
    assert ledger.requested == {"a": 100.0}  # b left: forgotten
    assert ledger.due(["a", "c"], now=1000.0, retry_after=900) == ["a", "c"]
    assert ledger.run_key("k", ["a"], 1000.0) == "k#retry@1000" and ledger.run_key("k", ["c"], 1000.0) == "k"
    ledger.mark(["a", "c"], 1000.0)
    assert json.loads(ledger.dump()) == {"last_modified_ns": 7, "requested": {"a": 1000.0, "c": 1000.0}}


# -- the sensor over a real lake ------------------------------------------------------------
@pytest.fixture(scope="module")
def sensors():
    """The landing sensor of a logs-like spec, by ``max_files_per_run`` (built once)."""
    spec = LandingSpec(
        name="logs",
        formats={"ndjson": NDJSON, "json_gzip": JSON_GZIP, "xml_errors": XML_ERRORS},
        date_of=lambda record, ts, start: None,
        validated_asset=AssetKey("validated_logs"),
        claims_unknown=True,
    )
    job = build_ingest_job(spec, dt.date(2024, 1, 1))
    built = {}

    def _get(max_files_per_run: int):
        if max_files_per_run not in built:
            built[max_files_per_run] = build_landing_sensor(spec, job, max_files_per_run=max_files_per_run)
        return built[max_files_per_run]

    return _get


@pytest.fixture(scope="module")
def dagster_instance():
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def tick(sensors, lake_root, dagster_instance):
    """``tick(cursor, max_files_per_run=50)``: one evaluation of the landing sensor on the test's lake."""

    def _tick(cursor: str | None, max_files_per_run: int = 50):
        context = build_sensor_context(cursor=cursor, resources={"lake": LakeResource(root=lake_root)},
                                       instance=dagster_instance)
        return sensors(max_files_per_run)(context)

    return _tick


def put(lake_root: str, rel: str, mtime_s: float, data: bytes = b'{"a":1}\n') -> None:
    path = os.path.join(lake_root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    ns = int(T0 + mtime_s * SEC)
    os.utime(path, ns=(ns, ns))


def pending(result) -> list[str]:
    """The paths the cursor remembers as requested and still waiting in raw/."""
    return sorted(k.split("@", 1)[0] for k in json.loads(result.cursor)["requested"])


def requested(result) -> list[str]:
    assert isinstance(result, SensorResult), result
    return [p for r in result.run_requests for p in r.run_config["ops"]["ingest_logs"]["config"]["paths"]]


def test_sensor_cursor_across_ticks(tick, lake_root):
    put(lake_root, "raw/ndjson/b.ndjson", 20)
    put(lake_root, "raw/ndjson/a.ndjson", 10)
    put(lake_root, "raw/xml_errors/e.xml", 20, b"<errors/>")

    first = tick(None)
    assert requested(first) == ["raw/ndjson/a.ndjson", "raw/ndjson/b.ndjson", "raw/xml_errors/e.xml"]
    cursor = json.loads(first.cursor)
    assert cursor["last_modified_ns"] == T0 + 20 * SEC
    assert pending(first) == ["raw/ndjson/a.ndjson", "raw/ndjson/b.ndjson", "raw/xml_errors/e.xml"]

    # Nothing new: skip, and the cursor stays.
    again = tick(first.cursor)
    assert isinstance(again, SkipReason)

    # A file at the cursor's very instant, not yet seen: requested alone; the cursor remembers all three.
    put(lake_root, "raw/ndjson/c.ndjson", 20)
    third = tick(first.cursor)
    assert requested(third) == ["raw/ndjson/c.ndjson"]
    assert pending(third) == ["raw/ndjson/a.ndjson", "raw/ndjson/b.ndjson", "raw/ndjson/c.ndjson",
                              "raw/xml_errors/e.xml"]
    assert isinstance(tick(third.cursor), SkipReason)

    # Newer files: only they are requested, oldest first; the cursor moves on.
    put(lake_root, "raw/json_gzip/z.json.gz", 40, b"\x1f\x8b")
    put(lake_root, "raw/ndjson/d.ndjson", 30)
    put(lake_root, "raw/ndjson/e.ndjson", 40)
    fourth = tick(third.cursor)
    assert requested(fourth) == ["raw/ndjson/d.ndjson", "raw/json_gzip/z.json.gz", "raw/ndjson/e.ndjson"]
    assert json.loads(fourth.cursor)["last_modified_ns"] == T0 + 40 * SEC
    # Files ingested (gone from raw/) leave the cursor: it only holds what still waits.
    for name in ("a", "b", "c", "d", "e"):
        os.remove(os.path.join(lake_root, f"raw/ndjson/{name}.ndjson"))
    fifth = tick(fourth.cursor)
    assert isinstance(fifth, SkipReason)


def test_sensor_ignores_hidden_files_and_requests_unknown_folders(tick, lake_root):
    put(lake_root, "raw/ndjson/.upload-in-progress", 10)
    put(lake_root, "raw/ndjson/_tmp/part", 10)
    put(lake_root, "raw/csv/table.csv", 20, b"a,b\n")
    put(lake_root, "raw/stray.ndjson", 30)
    result = tick(None)
    # Unknown folders are requested so the job can reject them whole, never left behind.
    assert requested(result) == ["raw/csv/table.csv", "raw/stray.ndjson"]
    assert pending(result) == ["raw/csv/table.csv", "raw/stray.ndjson"]
    # A hidden file becoming newer than the cursor is still not requested.
    put(lake_root, "raw/ndjson/.upload-in-progress", 40)
    assert isinstance(tick(result.cursor), SkipReason)


def test_landing_zones_sharing_raw_read_only_their_own_folders(lake_root):
    """Two domains share raw/: each lists its own folders; the catch-all one takes unclaimed folders."""
    from lake_assets.lake import LakeStorage

    put(lake_root, "raw/ndjson/a.ndjson", 10)
    put(lake_root, "raw/orders_feed/b.csv", 10, b"a,b\n")
    put(lake_root, "raw/mystery/c.bin", 10)
    other = LandingSpec(name="feed", formats={"orders_feed": NDJSON}, date_of=lambda r, ts, start: None,
                        validated_asset=AssetKey("validated_feed"))
    catch_all = LandingSpec(name="logs", formats={"ndjson": NDJSON}, date_of=lambda r, ts, start: None,
                            validated_asset=AssetKey("validated_logs"), claims_unknown=True)
    storage = LakeStorage(lake_root)
    assert [f.path for f in other.raw_files(storage, ())] == ["raw/orders_feed/b.csv"]
    # The catch-all zone is told the folders other zones claim (when definitions are built) ...
    assert sorted(f.path for f in catch_all.raw_files(storage, other.folders)) == [
        "raw/mystery/c.bin", "raw/ndjson/a.ndjson"]
    # ... and without being told, takes every folder but its own as unknown: nothing is claimed at import.
    assert sorted(f.path for f in catch_all.raw_files(storage, ())) == [
        "raw/mystery/c.bin", "raw/ndjson/a.ndjson", "raw/orders_feed/b.csv"]


def test_definitions_tell_the_catch_all_zone_every_domains_folders(lake_root):
    """Built definitions claim every domain's raw folders, so logs (the catch-all) never takes commerce's files."""
    from lake_assets.definitions import build_resources
    from lake_assets.domains.logs.assets import LANDING

    put(lake_root, "raw/events/e.ndjson", 10)
    put(lake_root, "raw/mystery/c.bin", 10)
    lake = build_resources(lake_root)["lake"]
    assert {"raw/events", "raw/users", "raw/transactions", "raw/ndjson"} <= set(lake.claimed_raw_folders)
    assert [f.path for f in LANDING.raw_files(lake.storage, lake.claimed_raw_folders)] == ["raw/mystery/c.bin"]


def test_sensor_with_no_raw_folder_skips(tick):
    assert isinstance(tick(None), SkipReason)


def test_sensor_batches_files_and_keys_runs_by_file_state(tick, lake_root):
    for i in range(5):
        put(lake_root, f"raw/ndjson/f{i}.ndjson", 10 + i)
    result = tick(None, max_files_per_run=2)
    batches = [r.run_config["ops"]["ingest_logs"]["config"]["paths"] for r in result.run_requests]
    assert batches == [["raw/ndjson/f0.ndjson", "raw/ndjson/f1.ndjson"],
                       ["raw/ndjson/f2.ndjson", "raw/ndjson/f3.ndjson"], ["raw/ndjson/f4.ndjson"]]
    keys = [r.run_key for r in result.run_requests]
    assert len(set(keys)) == 3
    assert keys[2] == f"raw/ndjson/f4.ndjson@{T0 + 14 * SEC}:8"
    assert [r.tags["lake/files"] for r in result.run_requests] == ["2", "2", "1"]
    # The same listing gives the same run keys (Dagster then starts each run once).
    assert [r.run_key for r in tick(None, max_files_per_run=2).run_requests] == keys

    # The same name delivered again later is a new file with a new run key.
    put(lake_root, "raw/ndjson/f4.ndjson", 60, b'{"a":2}\n{"b":3}\n')
    redelivered = tick(result.cursor, max_files_per_run=2)
    assert requested(redelivered) == ["raw/ndjson/f4.ndjson"]
    assert redelivered.run_requests[0].run_key == f"raw/ndjson/f4.ndjson@{T0 + 60 * SEC}:16"


def test_sensor_requests_a_file_that_lands_with_an_older_mtime(tick, lake_root):
    put(lake_root, "raw/ndjson/first.ndjson", 100)
    first = tick(None)
    assert requested(first) == ["raw/ndjson/first.ndjson"]
    # Written at t=50 elsewhere, moved into raw/ after the tick: mv keeps its mtime.
    put(lake_root, "raw/ndjson/moved-in.ndjson", 50)
    later = tick(first.cursor)
    assert isinstance(later, SensorResult) and requested(later) == ["raw/ndjson/moved-in.ndjson"]
