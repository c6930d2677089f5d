"""ingest_file for a format converted whole (dsdgen's line files, tpcds zones): what lands where, the same
bytes under another name as one delivery, unreadable files, crashes and retries.

Every outcome is read back independently: ``os.walk`` and ``open`` for the lake, pyarrow for the
validated Parquet, ``json`` for the manifests.
"""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os

import pyarrow.parquet as pq
import pytest

from lake_assets.ingest.formats import ReadLimits
from lake_assets.ingest.lines import dsdgen_format, no_date
from lake_assets.ingest.router import Zones, ingest_file, ts_token
from lake_assets.lake import LakeStorage

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)
LATER = dt.datetime(2024, 3, 12, 8, 30, tzinfo=UTC)  # another day: a later run
ZONES = Zones(raw="raw/tpcds", validated="bronze/tpcds/_lines/{format}", archive="archive/tpcds/{format}",
              rejected_files="quarantine/tpcds/_files", manifests="bronze/tpcds/_manifests/{format}",
              archive_name="{name}_{token}_{run_id}")
FMT = dsdgen_format("store_sales")
DATA = b"1|10|2.50|\n2|20||\n\n3|30|7.00|\r\n4|40|1.25|"  # a blank line, a CRLF, no final newline
ROWS = [(0, "1|10|2.50|"), (1, "2|20||"), (2, ""), (3, "3|30|7.00|"), (4, "4|40|1.25|")]


def ingest(storage, src, *, run_id="run-1", now=NOW, **kw):
    return ingest_file(storage, src, FMT, lambda record, ts: no_date(record, ts), run_id=run_id, zones=ZONES,
                       now=now, **kw)


def tree(root: str) -> list[str]:
    """Every file under a local lake root (hidden ones too), relative, sorted."""
    out = []
    for dirpath, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/") for f in files]
    return sorted(out)


def under(paths: list[str], prefix: str) -> list[str]:
    return [p for p in paths if p.startswith(prefix)]


def read_json(root: str, rel: str) -> dict:
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return json.load(f)


def stat(root: str, rels: list[str]) -> dict[str, tuple[int, bytes]]:
    """Each file's mtime and bytes."""
    out = {}
    for rel in rels:
        path = os.path.join(root, rel)
        with open(path, "rb") as f:
            out[rel] = (os.stat(path).st_mtime_ns, f.read())
    return out


def validated_path(sha: str, day: dt.date = NOW.date()) -> str:
    return (f"bronze/tpcds/_lines/store_sales/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"
            f"{sha}.parquet")


def rows_of(root: str, rel: str) -> list[tuple[int, str]]:
    table = pq.read_table(os.path.join(root, rel))
    return list(zip(table["position"].to_pylist(), table["record"].to_pylist()))


@pytest.mark.parametrize("name, data", [("store_sales_1_2.dat", DATA),
                                        ("store_sales_1_2.dat.gz", gzip.compress(DATA, mtime=0))])
def test_a_dsdgen_file_is_converted_whole_to_parquet_on_the_ingest_date(local_lake, lake_root, name, data):
    src = f"raw/tpcds/store_sales/{name}"
    local_lake.write_bytes(src, data)
    result = ingest(local_lake, src)

    sha = hashlib.sha256(data).hexdigest()
    archive = f"archive/tpcds/store_sales/{name}_{ts_token(NOW)}_run-1"
    manifest_rel = f"bronze/tpcds/_manifests/store_sales/{sha}.json"
    assert result.status == "ingested" and result.reason is None and result.sha256 == sha
    assert result.records_by_date == {"2024-03-10": 5}
    assert result.written == [validated_path(sha), archive]
    assert tree(lake_root) == sorted([validated_path(sha), archive, manifest_rel])  # raw gone, no claim left
    assert rows_of(lake_root, validated_path(sha)) == ROWS
    with open(os.path.join(lake_root, archive), "rb") as f:
        assert f.read() == data  # unchanged
    manifest = read_json(lake_root, manifest_rel)
    assert {k: manifest[k] for k in ("status", "source_name", "source_path", "ingest_run_id", "records_by_date",
                                     "undated_by_date", "validated_files", "archive_path", "size")} == {
        "status": "ingested", "source_name": name, "source_path": src, "ingest_run_id": "run-1",
        "records_by_date": {"2024-03-10": 5}, "undated_by_date": {}, "validated_files": [validated_path(sha)],
        "archive_path": archive, "size": len(data)}
    assert dt.datetime.fromisoformat(manifest["ingest_ts"]) == NOW


def test_an_empty_file_is_archived_with_no_validated_file(local_lake, lake_root):
    local_lake.write_bytes("raw/tpcds/store_sales/empty.dat", b"")
    result = ingest(local_lake, "raw/tpcds/store_sales/empty.dat")
    assert result.status == "ingested" and result.records_by_date == {}
    paths = tree(lake_root)
    assert under(paths, "bronze/tpcds/_lines/") == [] and under(paths, "raw/") == []
    assert under(paths, "archive/") == [f"archive/tpcds/store_sales/empty.dat_{ts_token(NOW)}_run-1"]


# -- the same bytes under another name: one delivery -------------------------------------------------------
def test_the_same_bytes_under_other_names_are_archived_and_add_nothing(local_lake, lake_root):
    src = "raw/tpcds/store_sales/store_sales_1_2.dat"
    local_lake.write_bytes(src, DATA)
    first = ingest(local_lake, src)
    sha = first.sha256
    manifest_rel = f"bronze/tpcds/_manifests/store_sales/{sha}.json"
    identity = read_json(lake_root, manifest_rel)
    before = stat(lake_root, under(tree(lake_root), "bronze/tpcds/_lines/") + under(tree(lake_root), "archive/"))

    # The same run, a minute later, under another name; then a later run (another day), under a third.
    local_lake.write_bytes("raw/tpcds/store_sales/copy.dat", DATA)
    again = ingest(local_lake, "raw/tpcds/store_sales/copy.dat", now=NOW + dt.timedelta(minutes=1))
    local_lake.write_bytes("raw/tpcds/store_sales/sub/resent.dat", DATA)
    later = ingest(local_lake, "raw/tpcds/store_sales/sub/resent.dat", run_id="run-2", now=LATER)

    copy_archive = f"archive/tpcds/store_sales/copy.dat_{ts_token(NOW + dt.timedelta(minutes=1))}_run-1"
    resent_archive = f"archive/tpcds/store_sales/resent.dat_{ts_token(LATER)}_run-2"
    for result, archive in ((again, copy_archive), (later, resent_archive)):
        assert result.status == "ingested" and result.records_by_date == {} and result.sha256 == sha
        assert result.reason == "redelivery" and "raw/tpcds/store_sales/store_sales_1_2.dat" in result.detail
        assert result.written == [archive]
    paths = tree(lake_root)
    assert under(paths, "raw/") == [] and under(paths, "quarantine/") == [] and under(paths, "_lake/") == []
    assert under(paths, "bronze/") == [validated_path(sha), manifest_rel]  # nothing on the later days
    assert stat(lake_root, list(before)) == before  # not rewritten: same mtime, same bytes
    assert under(paths, "archive/") == sorted(list(before)[1:] + [copy_archive, resent_archive])
    for archive in (copy_archive, resent_archive):
        with open(os.path.join(lake_root, archive), "rb") as f:
            assert f.read() == DATA
    manifest = read_json(lake_root, manifest_rel)
    redeliveries = manifest.pop("redeliveries")
    assert manifest == identity  # the first delivery's identity, counts and files unchanged
    assert redeliveries == [
        {"source_name": "copy.dat", "source_path": "raw/tpcds/store_sales/copy.dat", "ingest_run_id": "run-1",
         "ingest_ts": (NOW + dt.timedelta(minutes=1)).isoformat(), "archive_path": copy_archive},
        {"source_name": "resent.dat", "source_path": "raw/tpcds/store_sales/sub/resent.dat",
         "ingest_run_id": "run-2", "ingest_ts": LATER.isoformat(), "archive_path": resent_archive}]


def test_a_rejected_content_redelivered_under_another_name_is_archived_not_quarantined_again(local_lake, lake_root):
    bad = gzip.compress(DATA * 50)[:-40]
    local_lake.write_bytes("raw/tpcds/store_sales/a.dat.gz", bad)
    assert ingest(local_lake, "raw/tpcds/store_sales/a.dat.gz").status == "rejected"
    local_lake.write_bytes("raw/tpcds/store_sales/b.dat.gz", bad)
    result = ingest(local_lake, "raw/tpcds/store_sales/b.dat.gz", run_id="run-2", now=LATER)
    assert result.status == "ingested" and result.reason == "redelivery" and result.records_by_date == {}
    paths = tree(lake_root)
    assert len(under(paths, "quarantine/tpcds/_files/")) == 2  # the first copy and its reason only
    assert under(paths, "archive/") == [f"archive/tpcds/store_sales/b.dat.gz_{ts_token(LATER)}_run-2"]
    assert under(paths, "raw/") == [] and under(paths, "bronze/tpcds/_lines/") == []


def test_a_redelivery_retried_after_a_crash_keeps_one_archive_copy(local_lake, lake_root, monkeypatch, crash_once):
    local_lake.write_bytes("raw/tpcds/store_sales/a.dat", DATA)
    ingest(local_lake, "raw/tpcds/store_sales/a.dat")
    src = "raw/tpcds/store_sales/b.dat"
    local_lake.write_bytes(src, DATA)
    crash_once("delete", lambda rel: rel == src)
    with pytest.raises(crash_once.Crash):
        ingest(local_lake, src, run_id="run-2", now=LATER)
    result = ingest(local_lake, src, run_id="run-3", now=LATER + dt.timedelta(hours=1))
    assert result.reason == "redelivery"
    paths = tree(lake_root)
    assert under(paths, "archive/") == sorted([f"archive/tpcds/store_sales/a.dat_{ts_token(NOW)}_run-1",
                                               f"archive/tpcds/store_sales/b.dat_{ts_token(LATER)}_run-2"])
    manifest = read_json(lake_root, f"bronze/tpcds/_manifests/store_sales/{result.sha256}.json")
    assert [r["source_path"] for r in manifest["redeliveries"]] == [src]
    assert under(paths, "raw/") == [] and under(paths, "_lake/") == []


# -- unreadable files ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, data, reason", [
    ("cut.dat.gz", gzip.compress(DATA * 200, mtime=0)[:-50], "corrupt_gzip"),
    ("plain.dat.gz", DATA, "corrupt_gzip"),
    ("latin1.dat", b"1|caf\xe9|\n", "not_utf8"),
    ("long.dat", b"1|" + b"x" * 5000 + b"|\n", "record_too_large"),
])
def test_an_unreadable_file_goes_whole_to_quarantine(local_lake, lake_root, name, data, reason):
    src = f"raw/tpcds/store_sales/{name}"
    local_lake.write_bytes(src, data)
    result = ingest(local_lake, src, limits=ReadLimits(max_record_bytes=4096))

    target = f"quarantine/tpcds/_files/{name}_{ts_token(NOW)}_run-1"
    sha = hashlib.sha256(data).hexdigest()
    assert result.status == "rejected" and result.reason == reason and result.records_by_date == {}
    assert tree(lake_root) == sorted([target, target + ".reason.json",
                                      f"bronze/tpcds/_manifests/store_sales/{sha}.json"])
    with open(os.path.join(lake_root, target), "rb") as f:
        assert f.read() == data  # whole, byte for byte
    why = read_json(lake_root, target + ".reason.json")
    assert (why["reason"], why["source"], why["format"], why["sha256"]) == (reason, src, "store_sales", sha)


# -- crashes -----------------------------------------------------------------------------------------------


def test_a_retry_after_a_crash_between_publishing_and_raw_deletion_changes_nothing(local_lake, lake_root,
                                                                                    monkeypatch, crash_once):
    src = "raw/tpcds/store_sales/store_sales.dat"
    local_lake.write_bytes(src, DATA)
    crash_once("delete", lambda rel: rel == src)
    with pytest.raises(crash_once.Crash):
        ingest(local_lake, src)
    after_crash = tree(lake_root)
    assert src in after_crash and under(after_crash, "_lake/") == []  # the content's claim was released
    published = {p: b for p, (_, b) in stat(lake_root, [p for p in after_crash if p != src]).items()}

    result = ingest(local_lake, src, run_id="run-2", now=LATER)
    assert result.status == "ingested" and result.records_by_date == {"2024-03-10": 5}  # told again, same date
    assert tree(lake_root) == sorted(published)
    assert {p: b for p, (_, b) in stat(lake_root, list(published)).items()} == published  # byte for byte
    assert rows_of(lake_root, validated_path(result.sha256)) == ROWS


def test_another_name_completes_a_crashed_first_delivery_under_its_identity(local_lake, lake_root, monkeypatch, crash_once):
    """The first delivery crashed after publishing its validated file; the same bytes arrive under another
    name the next day: they complete the delivery at the time and by the run it started with (overwriting,
    not adding, on that date), and the first file, retried, is a redelivery."""
    first = "raw/tpcds/store_sales/a.dat"
    local_lake.write_bytes(first, DATA)
    crash_once("copy", lambda s, d: d.startswith("archive/"))
    with pytest.raises(crash_once.Crash):
        ingest(local_lake, first)
    sha = hashlib.sha256(DATA).hexdigest()
    assert under(tree(lake_root), "bronze/tpcds/_lines/") == [validated_path(sha)]

    local_lake.write_bytes("raw/tpcds/store_sales/b.dat", DATA)
    second = ingest(local_lake, "raw/tpcds/store_sales/b.dat", run_id="run-2", now=LATER)
    assert second.reason is None and second.records_by_date == {"2024-03-10": 5}
    retried = ingest(local_lake, first, run_id="run-3", now=LATER + dt.timedelta(hours=1))
    assert retried.reason == "redelivery" and retried.records_by_date == {}

    paths = tree(lake_root)
    assert under(paths, "bronze/tpcds/_lines/") == [validated_path(sha)]
    assert rows_of(lake_root, validated_path(sha)) == ROWS
    assert under(paths, "archive/") == sorted([
        f"archive/tpcds/store_sales/b.dat_{ts_token(NOW)}_run-1",
        f"archive/tpcds/store_sales/a.dat_{ts_token(LATER + dt.timedelta(hours=1))}_run-3"])
    manifest = read_json(lake_root, f"bronze/tpcds/_manifests/store_sales/{sha}.json")
    assert (manifest["source_path"], manifest["ingest_run_id"], manifest["status"]) == (
        "raw/tpcds/store_sales/b.dat", "run-1", "ingested")
    assert [r["source_path"] for r in manifest["redeliveries"]] == [first]
    assert under(paths, "raw/") == []


# -- a batch: the same bytes twice in one run, ingested by parallel processes ---------------------------------
def test_the_same_bytes_twice_in_one_parallel_run_are_one_delivery(lake_root):
    from dagster import AssetKey

    from lake_assets.ingest.jobs import LandingSpec, ingest_paths

    storage = LakeStorage(lake_root)
    spec = LandingSpec(name="tpcds", formats={"store_sales": FMT}, date_of=no_date,
                       validated_asset=AssetKey(["tpcds", "lines"]), zones=ZONES)
    data = (DATA + b"\n") * 20_000
    paths = [f"raw/tpcds/store_sales/{name}" for name in ("a.dat", "b.dat", "c.dat")]
    for p in paths:
        storage.write_bytes(p, data)
    results = ingest_paths(spec, storage, paths, run_id="run-1", start=dt.date(2024, 1, 1), workers=2,
                           parallel_min_bytes=0)
    assert sorted(r.status for r in results) == ["ingested"] * 3
    [first] = [r for r in results if r.reason is None]
    assert sorted(r.reason for r in results if r is not first) == ["redelivery", "redelivery"]
    assert sum(r.records for r in results) == 5 * 20_000 == first.records
    files = [f.path for f in storage.list_files("bronze/tpcds/_lines")]
    assert len(files) == 1
    manifest = json.loads(storage.read_text(f"bronze/tpcds/_manifests/store_sales/{first.sha256}.json"))
    assert manifest["source_path"] == first.source
    assert sorted(r["source_path"] for r in manifest["redeliveries"]) == sorted(set(paths) - {first.source})
    assert len(storage.list_files("archive")) == 3 and storage.list_files("raw") == []


def test_two_files_of_the_same_bytes_ingested_at_once_are_one_delivery(local_lake, lake_root):
    """Two ingestions of the same bytes at the same time (two processes of one run: here two threads, each
    its own claimant): the second waits for the first's claim on the content, then finds it ingested."""
    import dataclasses
    import threading
    import time

    def slow_convert(*args):
        time.sleep(1.0)  # the first is still converting when the second has hashed the same bytes
        return FMT.convert(*args)

    slow = dataclasses.replace(FMT, convert=slow_convert)
    results = {}

    def run(name: str) -> None:
        src = f"raw/tpcds/store_sales/{name}"
        results[name] = ingest_file(local_lake, src, slow, lambda r, ts: None, run_id="run-1", zones=ZONES, now=NOW)

    for name in ("a.dat", "b.dat"):
        local_lake.write_bytes(f"raw/tpcds/store_sales/{name}", DATA)
    first = threading.Thread(target=run, args=("a.dat",))
    second = threading.Thread(target=run, args=("b.dat",))
    first.start()
    time.sleep(0.3)
    second.start()
    first.join(30)
    second.join(30)
    assert results["a.dat"].records_by_date == {"2024-03-10": 5} and results["a.dat"].reason is None
    assert results["b.dat"].records_by_date == {} and results["b.dat"].reason == "redelivery"
    paths = tree(lake_root)
    assert under(paths, "raw/") == [] and under(paths, "_lake/") == []
    assert len(under(paths, "bronze/tpcds/_lines/")) == 1 and len(under(paths, "archive/")) == 2
