"""ingest_file (and ingest_paths) against a real lake: what lands where, and what a crash and a retry leave.

Every outcome is read back independently: ``os.walk`` and ``open`` for a local
lake, boto3 for S3; record counts come from the validated files' own lines.
"""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import xml.etree.ElementTree as ET

import pytest

from lake_assets.domains.logs import contract
from lake_assets.ingest.formats import JSON_GZIP, NDJSON, XML_ERRORS, ReadLimits
from lake_assets.ingest.router import ingest_file, ts_token
from lake_assets.lake import LakeStorage

UTC = dt.timezone.utc
LAKE_START = dt.date(2024, 1, 1)
NOW = dt.datetime(2024, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)


def date_of(record, ts):
    return contract.routing_date(record, ts, LAKE_START)


# -- reading the lake back independently -------------------------------------------
def tree(root: str) -> list[str]:
    """Every file under a local lake root (hidden ones too), relative, sorted."""
    out = []
    for dirpath, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/") for f in files]
    return sorted(out)


def under(paths: list[str], prefix: str) -> list[str]:
    return [p for p in paths if p.startswith(prefix)]


def data_files(paths: list[str], fmt: str) -> list[str]:
    """The validated data files of a format (manifests excluded)."""
    return under(paths, f"validated/{fmt}/year=")


def record_lines(fmt: str, data: bytes) -> list[str]:
    """The record lines of one validated file, read without the code under test."""
    if fmt == "json_gzip":
        data = gzip.decompress(data)
    lines = [ln for ln in data.decode("utf-8").split("\n") if ln]
    if fmt == "xml_errors":
        assert lines[0] == "<errors>" and lines[-1] == "</errors>"
        ET.fromstring(data)  # the validated file is a well-formed document
        lines = lines[1:-1]
    return lines


def day_of(path: str) -> str:
    parts = dict(p.split("=", 1) for p in path.split("/") if "=" in p)
    return f"{parts['year']}-{parts['month']}-{parts['day']}"


def local_counts(root: str, fmt: str) -> dict[str, int]:
    """Validated records per date of one format, counted from the files on disk."""
    counts: dict[str, int] = {}
    for p in data_files(tree(root), fmt):
        with open(os.path.join(root, p), "rb") as f:
            counts[day_of(p)] = counts.get(day_of(p), 0) + len(record_lines(fmt, f.read()))
    return counts


def local_records(root: str, fmt: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in data_files(tree(root), fmt):
        with open(os.path.join(root, p), "rb") as f:
            out.setdefault(day_of(p), []).extend(record_lines(fmt, f.read()))
    return out


def read_json(root: str, rel: str) -> dict:
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return json.load(f)


def access(request_id: str, timestamp) -> dict:
    return {"timestamp": timestamp, "service": "api", "request_id": request_id, "method": "GET",
            "path": "/x", "status": 200}


def ndjson(records) -> bytes:
    return b"".join((r if isinstance(r, str) else json.dumps(r)).encode("utf-8") + b"\n" for r in records)


SPLIT_RECORDS = [
    access("r1", "2024-03-04T23:59:59.250+02:00"),  # 21:59:59Z on the 4th
    access("r2", "2024-03-04T23:30:00-02:00"),  # 01:30Z on the 5th: crosses midnight forwards
    access("r3", "2024-03-05T01:30:00+02:00"),  # 23:30Z on the 4th: crosses midnight backwards
    access("r4", 1709683200),  # epoch seconds: 2024-03-06T00:00:00Z
    access("r5", 1709683199999),  # epoch millis: 2024-03-05T23:59:59.999Z
    access("r6", "2024-03-05T00:00:00Z"),
]
SPLIT_EXPECTED = {"2024-03-04": {"r1", "r3"}, "2024-03-05": {"r2", "r5", "r6"}, "2024-03-06": {"r4"}}


def ids(lines: list[str]) -> set[str]:
    return {json.loads(ln)["request_id"] for ln in lines}


# -- routing ---------------------------------------------------------------------------
def test_records_split_by_utc_event_date(local_lake, lake_root):
    data = ndjson(SPLIT_RECORDS)
    sha = hashlib.sha256(data).hexdigest()
    local_lake.write_bytes("raw/ndjson/batch-1.ndjson", data)

    result = ingest_file(local_lake, "raw/ndjson/batch-1.ndjson", NDJSON, date_of, run_id="run-1", now=NOW)

    archive = f"archive/validated/ndjson/batch-1.ndjson_{ts_token(NOW)}_run-1"
    validated = [f"validated/ndjson/year=2024/month=03/day={d}/{sha}.ndjson" for d in ("04", "05", "06")]
    assert tree(lake_root) == sorted(validated + [archive, f"validated/_manifests/ndjson/{sha}.json"])
    assert {d: ids(lines) for d, lines in local_records(lake_root, "ndjson").items()} == SPLIT_EXPECTED
    with open(os.path.join(lake_root, archive), "rb") as f:
        assert f.read() == data  # the original bytes

    assert result.status == "ingested" and result.sha256 == sha
    assert result.records_by_date == {"2024-03-04": 2, "2024-03-05": 3, "2024-03-06": 1}
    assert sorted(result.written) == sorted(validated + [archive])

    manifest = read_json(lake_root, f"validated/_manifests/ndjson/{sha}.json")
    assert manifest["status"] == "ingested"
    assert manifest["ingest_run_id"] == "run-1"
    assert manifest["source_path"] == "raw/ndjson/batch-1.ndjson"
    assert manifest["archive_path"] == archive
    assert manifest["records_by_date"] == result.records_by_date
    assert sorted(manifest["validated_files"]) == validated
    assert dt.datetime.fromisoformat(manifest["ingest_ts"]) == NOW
    assert manifest["size"] == len(data)


def test_records_keep_their_original_text(local_lake, lake_root):
    lines = ['{"timestamp":"2024-03-05T00:00:00Z",  "request_id": "a", "x": 1.50}',
             '{ "request_id" : "b", "timestamp" : 1709683200 }']
    local_lake.write_bytes("raw/ndjson/f", ("\n".join(lines) + "\n").encode())
    ingest_file(local_lake, "raw/ndjson/f", NDJSON, date_of, run_id="r", now=NOW)
    assert local_records(lake_root, "ndjson") == {"2024-03-05": [lines[0]], "2024-03-06": [lines[1]]}


def test_undatable_and_out_of_range_records_land_under_the_ingest_date(local_lake, lake_root):
    undated = [
        "not json at all",
        "[1, 2, 3]",
        json.dumps({"service": "api", "request_id": "no-ts"}),
        json.dumps(access("bad-ts", "yesterday")),
        json.dumps(access("bool-ts", True)),
        json.dumps(access("null-ts", None)),
        json.dumps(access("before-start", "2023-12-31T23:59:59Z")),
        json.dumps(access("before-start-utc", "2024-01-01T01:00:00+02:00")),  # 2023-12-31T23:00Z
        json.dumps(access("too-late", "2024-03-11T12:00:01Z")),  # more than a day after NOW
    ]
    dated = [
        json.dumps(access("lake-start", "2024-01-01T00:00:00Z")),
        json.dumps(access("a-day-ahead", "2024-03-11T12:00:00.123456Z")),  # exactly NOW + 1 day
    ]
    local_lake.write_bytes("raw/ndjson/mixed.ndjson", ndjson(undated + dated))

    result = ingest_file(local_lake, "raw/ndjson/mixed.ndjson", NDJSON, date_of, run_id="run-1", now=NOW)

    records = local_records(lake_root, "ndjson")
    assert records == {"2024-03-10": undated, "2024-01-01": [dated[0]], "2024-03-11": [dated[1]]}
    assert result.records_by_date == {"2024-01-01": 1, "2024-03-10": 9, "2024-03-11": 1}
    assert "raw/ndjson/mixed.ndjson" not in tree(lake_root)
    # The manifest says how many of the ingest date's records are there for want of a date.
    manifest = json.loads(local_lake.read_text(f"validated/_manifests/ndjson/{result.sha256}.json"))
    assert manifest["undated_by_date"] == {"2024-03-10": 9}


def test_ingest_date_is_the_utc_date_whatever_the_zone_of_now(local_lake, lake_root):
    now = dt.datetime(2024, 3, 11, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=5)))  # 2024-03-10T20:00Z
    local_lake.write_bytes("raw/ndjson/f", b"not json\n")
    ingest_file(local_lake, "raw/ndjson/f", NDJSON, date_of, run_id="run-1", now=now)
    assert local_counts(lake_root, "ndjson") == {"2024-03-10": 1}


def test_validated_names_are_the_sha256_of_the_raw_bytes(tmp_path):
    data = ndjson(SPLIT_RECORDS)
    sha = hashlib.sha256(data).hexdigest()
    lakes = []
    for i in (1, 2):
        root = tmp_path / f"lake{i}"
        root.mkdir()
        storage = LakeStorage(str(root))
        storage.write_bytes(f"raw/ndjson/delivery-{i}.ndjson", data)
        ingest_file(storage, f"raw/ndjson/delivery-{i}.ndjson", NDJSON, date_of, run_id=f"run-{i}",
                    now=NOW + dt.timedelta(hours=i))
        lakes.append(str(root))

    files = [data_files(tree(r), "ndjson") for r in lakes]
    assert files[0] == files[1]  # same bytes, same paths, whatever the name, run or time
    assert {p.rsplit("/", 1)[1] for p in files[0]} == {f"{sha}.ndjson"}
    for p in files[0]:
        with open(os.path.join(lakes[0], p), "rb") as a, open(os.path.join(lakes[1], p), "rb") as b:
            assert a.read() == b.read()


def test_xml_and_json_gzip_are_routed_in_their_own_format(local_lake, lake_root):
    xml = (b'<?xml version="1.0" encoding="UTF-8"?>\n<errors>\n'
           b"  <error><timestamp>2024-03-04T23:30:00-02:00</timestamp><service>api</service>"
           b"<level>error</level><message>line one\nline two &amp; more</message></error>\n"
           b"  <error><timestamp>2024-03-04T10:00:00Z</timestamp><service>api</service>"
           b"<level>WARN</level><message/></error>\n"
           b"  <notice>kept as malformed</notice>\n"
           b"</errors>\n")
    local_lake.write_bytes("raw/xml_errors/e.xml", xml)
    gz_body = json.dumps(SPLIT_RECORDS, indent=2).encode()
    local_lake.write_bytes("raw/json_gzip/a.json.gz", gzip.compress(gz_body))

    rx = ingest_file(local_lake, "raw/xml_errors/e.xml", XML_ERRORS, date_of, run_id="run-x", now=NOW)
    rg = ingest_file(local_lake, "raw/json_gzip/a.json.gz", JSON_GZIP, date_of, run_id="run-g", now=NOW)

    assert rx.records_by_date == {"2024-03-04": 1, "2024-03-05": 1, "2024-03-10": 1}
    xml_records = local_records(lake_root, "xml_errors")
    assert {d: len(v) for d, v in xml_records.items()} == {"2024-03-04": 1, "2024-03-05": 1, "2024-03-10": 1}
    [first] = xml_records["2024-03-05"]
    assert ET.fromstring(first).find("message").text == "line one\nline two & more"
    assert ET.fromstring(xml_records["2024-03-10"][0]).tag == "notice"

    assert rg.records_by_date == {"2024-03-04": 2, "2024-03-05": 3, "2024-03-06": 1}
    assert {d: ids(v) for d, v in local_records(lake_root, "json_gzip").items()} == SPLIT_EXPECTED
    for p in data_files(tree(lake_root), "json_gzip"):
        assert p.endswith(".json.gz")
    for p in data_files(tree(lake_root), "xml_errors"):
        assert p.endswith(".xml")
    assert under(tree(lake_root), "raw/") == []


def test_empty_ndjson_file_is_archived_with_no_records(local_lake, lake_root):
    local_lake.write_bytes("raw/ndjson/empty.ndjson", b"")
    result = ingest_file(local_lake, "raw/ndjson/empty.ndjson", NDJSON, date_of, run_id="run-1", now=NOW)
    assert result.status == "ingested" and result.records_by_date == {}
    paths = tree(lake_root)
    assert data_files(paths, "ndjson") == []
    assert under(paths, "archive/validated/ndjson/") == [
        f"archive/validated/ndjson/empty.ndjson_{ts_token(NOW)}_run-1"]
    assert under(paths, "raw/") == []


def test_odd_file_names_are_made_safe_in_the_archive(local_lake, lake_root):
    local_lake.write_bytes("raw/ndjson/my file (1);rm -rf.ndjson", ndjson(SPLIT_RECORDS[:1]))
    ingest_file(local_lake, "raw/ndjson/my file (1);rm -rf.ndjson", NDJSON, date_of, run_id="run-1", now=NOW)
    assert under(tree(lake_root), "archive/") == [
        f"archive/validated/ndjson/my_file__1__rm_-rf.ndjson_{ts_token(NOW)}_run-1"]


# -- re-delivery and retries -------------------------------------------------------------
def test_reingesting_the_same_bytes_overwrites_and_keeps_the_first_identity(local_lake, lake_root):
    data = ndjson(SPLIT_RECORDS)
    local_lake.write_bytes("raw/ndjson/batch.ndjson", data)
    ingest_file(local_lake, "raw/ndjson/batch.ndjson", NDJSON, date_of, run_id="run-1", now=NOW)
    first_tree = tree(lake_root)
    first_bytes = {p: open(os.path.join(lake_root, p), "rb").read() for p in data_files(first_tree, "ndjson")}

    local_lake.write_bytes("raw/ndjson/batch.ndjson", data)  # delivered again
    later = NOW + dt.timedelta(hours=3)  # same UTC date
    result = ingest_file(local_lake, "raw/ndjson/batch.ndjson", NDJSON, date_of, run_id="run-2", now=later)

    assert tree(lake_root) == first_tree  # no new archive, no duplicate validated file, raw gone
    assert under(first_tree, "archive/") == [f"archive/validated/ndjson/batch.ndjson_{ts_token(NOW)}_run-1"]
    for p, b in first_bytes.items():
        with open(os.path.join(lake_root, p), "rb") as f:
            assert f.read() == b
    assert local_counts(lake_root, "ndjson") == {"2024-03-04": 2, "2024-03-05": 3, "2024-03-06": 1}
    manifest = read_json(lake_root, f"validated/_manifests/ndjson/{result.sha256}.json")
    assert manifest["ingest_run_id"] == "run-1"
    assert dt.datetime.fromisoformat(manifest["ingest_ts"]) == NOW
    assert manifest["status"] == "ingested"


def test_same_bytes_under_another_name_is_archived_again_but_not_duplicated(local_lake, lake_root):
    data = ndjson(SPLIT_RECORDS)
    local_lake.write_bytes("raw/ndjson/a.ndjson", data)
    ingest_file(local_lake, "raw/ndjson/a.ndjson", NDJSON, date_of, run_id="run-1", now=NOW)
    local_lake.write_bytes("raw/ndjson/b.ndjson", data)
    ingest_file(local_lake, "raw/ndjson/b.ndjson", NDJSON, date_of, run_id="run-2", now=NOW)

    paths = tree(lake_root)
    assert under(paths, "archive/") == [f"archive/validated/ndjson/a.ndjson_{ts_token(NOW)}_run-1",
                                        f"archive/validated/ndjson/b.ndjson_{ts_token(NOW)}_run-2"]
    assert local_counts(lake_root, "ndjson") == {"2024-03-04": 2, "2024-03-05": 3, "2024-03-06": 1}
    assert under(paths, "raw/") == []




def test_crash_before_raw_delete_then_retry(local_lake, lake_root, monkeypatch, crash_once):
    data = ndjson(SPLIT_RECORDS + ["garbage"])
    src = "raw/ndjson/batch.ndjson"
    local_lake.write_bytes(src, data)
    state = crash_once("delete", lambda rel: rel == src)

    with pytest.raises(crash_once.Crash):
        ingest_file(local_lake, src, NDJSON, date_of, run_id="run-1", now=NOW)
    assert state["crashed"]
    after_crash = tree(lake_root)
    assert src in after_crash  # the raw file survives the crash
    expected_counts = {"2024-03-04": 2, "2024-03-05": 3, "2024-03-06": 1, "2024-03-10": 1}
    assert local_counts(lake_root, "ndjson") == expected_counts
    assert len(under(after_crash, "archive/")) == 1

    result = ingest_file(local_lake, src, NDJSON, date_of, run_id="run-2", now=NOW + dt.timedelta(minutes=5))
    paths = tree(lake_root)
    assert result.status == "ingested"
    assert src not in paths
    assert local_counts(lake_root, "ndjson") == expected_counts
    assert under(paths, "archive/") == [f"archive/validated/ndjson/batch.ndjson_{ts_token(NOW)}_run-1"]
    assert sorted(paths) == sorted(p for p in after_crash if p != src)


def test_crash_while_archiving_then_retry(local_lake, lake_root, monkeypatch, crash_once):
    data = ndjson(SPLIT_RECORDS)
    src = "raw/ndjson/batch.ndjson"
    local_lake.write_bytes(src, data)
    crash_once("copy", lambda s, d: d.startswith("archive/"))

    with pytest.raises(crash_once.Crash):
        ingest_file(local_lake, src, NDJSON, date_of, run_id="run-1", now=NOW)
    paths = tree(lake_root)
    assert src in paths and under(paths, "archive/") == []
    sha = hashlib.sha256(data).hexdigest()
    assert read_json(lake_root, f"validated/_manifests/ndjson/{sha}.json")["status"] == "started"

    ingest_file(local_lake, src, NDJSON, date_of, run_id="run-2", now=NOW + dt.timedelta(minutes=5))
    paths = tree(lake_root)
    assert src not in paths
    # The identity was fixed before the crash: the archive carries the first run's name.
    assert under(paths, "archive/") == [f"archive/validated/ndjson/batch.ndjson_{ts_token(NOW)}_run-1"]
    assert local_counts(lake_root, "ndjson") == {"2024-03-04": 2, "2024-03-05": 3, "2024-03-06": 1}
    manifest = read_json(lake_root, f"validated/_manifests/ndjson/{sha}.json")
    assert manifest["status"] == "ingested" and manifest["ingest_run_id"] == "run-1"


def test_crash_while_publishing_validated_then_retry(local_lake, lake_root, monkeypatch, crash_once):
    src = "raw/ndjson/batch.ndjson"
    local_lake.write_bytes(src, ndjson(SPLIT_RECORDS))
    # Crash after the first date's file is published, before the second.
    calls = {"n": 0}

    def second_put(local_path, rel, **kw):
        calls["n"] += 1
        return calls["n"] == 2

    crash_once("put_file", second_put)
    with pytest.raises(crash_once.Crash):
        ingest_file(local_lake, src, NDJSON, date_of, run_id="run-1", now=NOW)
    assert local_counts(lake_root, "ndjson") == {"2024-03-04": 2}
    assert src in tree(lake_root)

    ingest_file(local_lake, src, NDJSON, date_of, run_id="run-2", now=NOW)
    assert local_counts(lake_root, "ndjson") == {"2024-03-04": 2, "2024-03-05": 3, "2024-03-06": 1}
    assert len(under(tree(lake_root), "archive/")) == 1


def test_crash_then_retry_after_midnight_counts_each_record_once(local_lake, lake_root, monkeypatch, crash_once):
    src = "raw/ndjson/batch.ndjson"
    local_lake.write_bytes(src, ndjson(SPLIT_RECORDS + ["garbage", json.dumps(access("x", "soon"))]))
    crash_once("delete", lambda rel: rel == src)
    before_midnight = dt.datetime(2024, 3, 10, 23, 59, 30, tzinfo=UTC)
    with pytest.raises(crash_once.Crash):
        ingest_file(local_lake, src, NDJSON, date_of, run_id="run-1", now=before_midnight)
    counts = local_counts(lake_root, "ndjson")
    assert counts["2024-03-10"] == 2

    ingest_file(local_lake, src, NDJSON, date_of, run_id="run-2", now=before_midnight + dt.timedelta(minutes=1))
    assert sum(local_counts(lake_root, "ndjson").values()) == len(SPLIT_RECORDS) + 2
    assert local_counts(lake_root, "ndjson") == counts


# -- files that cannot be read ------------------------------------------------------------
BILLION_LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE errors [\n <!ENTITY a "aaaaaaaaaa">\n'
                  + b"".join(f' <!ENTITY a{i} "{("&a" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode()
                             for i in range(1, 10))
                  + b"]>\n<errors><error><message>&a9;</message></error></errors>\n")
XXE = (b'<?xml version="1.0"?>\n<!DOCTYPE errors [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
       b"<errors><error><timestamp>2024-03-05T00:00:00Z</timestamp><service>x</service>"
       b"<level>ERROR</level><message>&xxe;</message></error></errors>\n")
GOOD_GZ = gzip.compress(ndjson(SPLIT_RECORDS * 50))

UNREADABLE = [
    pytest.param(NDJSON, "bad.ndjson", ndjson(SPLIT_RECORDS[:2]) + b'{"x": "caf\xe9"}\n' + ndjson(SPLIT_RECORDS[2:]),
                 "not_utf8", id="ndjson-not-utf8"),
    pytest.param(NDJSON, "huge.ndjson", ndjson(SPLIT_RECORDS[:2]) + b'{"x": "' + b"y" * 5000 + b'"}\n',
                 "record_too_large", id="ndjson-too-large"),
    pytest.param(JSON_GZIP, "cut.json.gz", GOOD_GZ[: len(GOOD_GZ) * 2 // 3], "corrupt_gzip", id="gzip-truncated"),
    pytest.param(JSON_GZIP, "plain.json.gz", ndjson(SPLIT_RECORDS), "corrupt_gzip", id="gzip-not-gzip"),
    pytest.param(JSON_GZIP, "bomb.json.gz", gzip.compress(b"\n" * (12 << 20), compresslevel=9),
                 "gzip_inflation_limit", id="gzip-bomb"),
    pytest.param(XML_ERRORS, "broken.xml", b"<errors><error><message>x</message></error><error>", "malformed_xml",
                 id="xml-truncated"),
    pytest.param(XML_ERRORS, "root.xml", b"<log><error/></log>", "unexpected_root", id="xml-wrong-root"),
    pytest.param(XML_ERRORS, "empty.xml", b"", "malformed_xml", id="xml-empty"),
    pytest.param(XML_ERRORS, "laughs.xml", BILLION_LAUGHS, "xml_forbidden_construct", id="xml-billion-laughs"),
    pytest.param(XML_ERRORS, "xxe.xml", XXE, "xml_forbidden_construct", id="xml-xxe"),
]


@pytest.mark.parametrize("fmt,name,data,reason", UNREADABLE)
def test_unreadable_file_lands_whole_in_rejected_system(local_lake, lake_root, fmt, name, data, reason):
    src = f"raw/{fmt.name}/{name}"
    local_lake.write_bytes(src, data)
    limits = ReadLimits(max_record_bytes=4096, max_inflated_bytes=10_000_000)

    result = ingest_file(local_lake, src, fmt, date_of, run_id="run-1", now=NOW, limits=limits)

    target = f"rejected/system/ingest/{fmt.name}/{name}_{ts_token(NOW)}_run-1"
    sha = hashlib.sha256(data).hexdigest()
    assert tree(lake_root) == sorted([target, target + ".reason.json", f"validated/_manifests/{fmt.name}/{sha}.json"])
    with open(os.path.join(lake_root, target), "rb") as f:
        assert f.read() == data  # whole, byte for byte
    why = read_json(lake_root, target + ".reason.json")
    assert why["reason"] == reason
    assert why["source"] == src and why["format"] == fmt.name and why["sha256"] == sha
    assert why["ingest_run_id"] == "run-1"
    assert result.status == "rejected" and result.reason == reason and result.records_by_date == {}
    assert read_json(lake_root, f"validated/_manifests/{fmt.name}/{sha}.json")["status"] == "rejected"


def test_external_entity_content_never_reaches_the_lake(local_lake, lake_root):
    with open("/etc/passwd", "rb") as f:
        passwd_head = f.read().split(b"\n", 1)[0]
    assert passwd_head  # the file the entity names exists here
    local_lake.write_bytes("raw/xml_errors/xxe.xml", XXE)
    ingest_file(local_lake, "raw/xml_errors/xxe.xml", XML_ERRORS, date_of, run_id="run-1", now=NOW)
    for p in tree(lake_root):
        with open(os.path.join(lake_root, p), "rb") as f:
            assert passwd_head not in f.read(), p


def test_rejected_file_retried_keeps_one_copy(local_lake, lake_root):
    data = b"<errors><error>"
    for run in ("run-1", "run-2"):
        local_lake.write_bytes("raw/xml_errors/cut.xml", data)
        ingest_file(local_lake, "raw/xml_errors/cut.xml", XML_ERRORS, date_of, run_id=run,
                    now=NOW + dt.timedelta(minutes=1 if run == "run-2" else 0))
    assert under(tree(lake_root), "rejected/") == [
        f"rejected/system/ingest/xml_errors/cut.xml_{ts_token(NOW)}_run-1",
        f"rejected/system/ingest/xml_errors/cut.xml_{ts_token(NOW)}_run-1.reason.json",
    ]
    assert under(tree(lake_root), "raw/") == []


# -- ordering: the raw file goes last ------------------------------------------------------
def spy_on_raw_delete(monkeypatch, lake_root, src):
    """Record what the lake held at the moment the raw file was deleted."""
    real = LakeStorage.delete
    seen = {}

    def delete(self, rel):
        if rel == src:
            seen["tree"] = tree(lake_root)
            seen["manifests"] = {p: read_json(lake_root, p) for p in seen["tree"] if "/_manifests/" in p}
        return real(self, rel)

    monkeypatch.setattr(LakeStorage, "delete", delete)
    return seen


def test_raw_file_is_deleted_only_after_archive_and_validated_exist(local_lake, lake_root, monkeypatch):
    src = "raw/ndjson/batch.ndjson"
    local_lake.write_bytes(src, ndjson(SPLIT_RECORDS))
    seen = spy_on_raw_delete(monkeypatch, lake_root, src)

    result = ingest_file(local_lake, src, NDJSON, date_of, run_id="run-1", now=NOW)

    assert "tree" in seen, "the raw file was never deleted through LakeStorage.delete"
    at_delete = seen["tree"]
    assert src in at_delete
    for written in result.written:  # every validated file and the archive
        assert written in at_delete
    assert len(data_files(at_delete, "ndjson")) == 3 and len(under(at_delete, "archive/")) == 1
    [manifest] = seen["manifests"].values()
    assert manifest["status"] == "ingested"
    assert src not in tree(lake_root)


def test_rejected_raw_file_is_deleted_only_after_its_copy_and_reason_exist(local_lake, lake_root, monkeypatch):
    src = "raw/xml_errors/bad.xml"
    local_lake.write_bytes(src, b"<errors><oops></errors>")
    seen = spy_on_raw_delete(monkeypatch, lake_root, src)
    ingest_file(local_lake, src, XML_ERRORS, date_of, run_id="run-1", now=NOW)
    rejected = f"rejected/system/ingest/xml_errors/bad.xml_{ts_token(NOW)}_run-1"
    assert {src, rejected, rejected + ".reason.json"} <= set(seen["tree"])
    assert src not in tree(lake_root)


# -- S3 ------------------------------------------------------------------------------------------
def test_ingest_on_s3(s3_lake, s3_lake_root, s3_client, s3_keys, monkeypatch, crash_once):
    bucket, _, base = s3_lake_root[len("s3://"):].partition("/")

    def keys():
        return [k for k in s3_keys(s3_lake_root) if not k.endswith("/")]  # Arrow's folder markers aside

    def get(rel):
        return s3_client.get_object(Bucket=bucket, Key=f"{base}/{rel}")["Body"].read()

    data = ndjson(SPLIT_RECORDS + ["not json"])
    sha = hashlib.sha256(data).hexdigest()
    src = "raw/ndjson/batch.ndjson"
    s3_client.put_object(Bucket=bucket, Key=f"{base}/{src}", Body=data)  # a producer's upload
    crash_once("delete", lambda rel: rel == src)

    with pytest.raises(crash_once.Crash):
        ingest_file(s3_lake, src, NDJSON, date_of, run_id="run-1", now=NOW)
    assert src in keys()
    ingest_file(s3_lake, src, NDJSON, date_of, run_id="run-2", now=NOW)

    archive = f"archive/validated/ndjson/batch.ndjson_{ts_token(NOW)}_run-1"
    days = ("03/day=04", "03/day=05", "03/day=06", "03/day=10")
    validated = [f"validated/ndjson/year=2024/month={d}/{sha}.ndjson" for d in days]
    assert keys() == sorted(validated + [archive, f"validated/_manifests/ndjson/{sha}.json"])
    assert get(archive) == data
    got = {day_of(p): record_lines("ndjson", get(p)) for p in validated}
    assert {d: ids(v) for d, v in got.items() if d != "2024-03-10"} == SPLIT_EXPECTED
    assert got["2024-03-10"] == ["not json"]
    manifest = json.loads(get(f"validated/_manifests/ndjson/{sha}.json"))
    assert manifest["ingest_run_id"] == "run-1" and manifest["status"] == "ingested"

    # An unreadable file on S3 lands whole in rejected/system.
    s3_client.put_object(Bucket=bucket, Key=f"{base}/raw/json_gzip/cut.json.gz", Body=GOOD_GZ[:100])
    result = ingest_file(s3_lake, "raw/json_gzip/cut.json.gz", JSON_GZIP, date_of, run_id="run-3", now=NOW)
    assert result.reason == "corrupt_gzip"
    target = f"rejected/system/ingest/json_gzip/cut.json.gz_{ts_token(NOW)}_run-3"
    assert get(target) == GOOD_GZ[:100]
    assert json.loads(get(target + ".reason.json"))["reason"] == "corrupt_gzip"
    assert [k for k in keys() if k.startswith("raw/")] == []
    assert [k for k in keys() if k.startswith("validated/json_gzip/")] == []


# -- ingest_paths: the job's loop over raw files -------------------------------------------------
@pytest.fixture
def spec():
    from dagster import AssetKey

    from lake_assets.ingest.jobs import LandingSpec

    return LandingSpec(name="logs", formats=contract.FORMATS, date_of=contract.routing_date,
                       validated_asset=AssetKey("validated_logs"))


def test_ingest_paths_rejects_files_outside_known_format_folders(spec, local_lake, lake_root):
    from lake_assets.ingest.jobs import ingest_paths

    local_lake.write_bytes("raw/csv/table.csv", b"a,b\n1,2\n")
    local_lake.write_bytes("raw/loose.ndjson", ndjson(SPLIT_RECORDS))
    local_lake.write_bytes("raw/ndjson/ok.ndjson", ndjson(SPLIT_RECORDS))
    paths = ["raw/csv/table.csv", "raw/loose.ndjson", "raw/ndjson/ok.ndjson"]

    results = ingest_paths(spec, local_lake, paths, run_id="run-9", start=LAKE_START)

    assert [(r.source, r.status, r.reason) for r in results] == [
        ("raw/csv/table.csv", "rejected", "unknown_format"),
        ("raw/loose.ndjson", "rejected", "unknown_format"),
        ("raw/ndjson/ok.ndjson", "ingested", None),
    ]
    after = tree(lake_root)
    unknown = under(after, "rejected/system/ingest/unknown/")
    assert len(unknown) == 4
    copies = [p for p in unknown if not p.endswith(".reason.json")]
    assert sorted(p.rsplit("/", 1)[1].split("_", 1)[0] for p in copies) == ["loose.ndjson", "table.csv"]
    for p in copies:
        assert p.endswith("_run-9")
        assert read_json(lake_root, p + ".reason.json")["reason"] == "unknown_format"
    with open(os.path.join(lake_root, [p for p in copies if "table.csv" in p][0]), "rb") as f:
        assert f.read() == b"a,b\n1,2\n"
    assert under(after, "raw/") == []
    assert local_counts(lake_root, "ndjson") == {"2024-03-04": 2, "2024-03-05": 3, "2024-03-06": 1}


def test_ingest_paths_keeps_the_raw_file_when_storage_fails(spec, local_lake, lake_root, monkeypatch, crash_once):
    from lake_assets.ingest.jobs import ingest_paths

    local_lake.write_bytes("raw/ndjson/a.ndjson", ndjson(SPLIT_RECORDS))
    local_lake.write_bytes("raw/ndjson/b.ndjson", ndjson(SPLIT_RECORDS[:1]))
    crash_once("put_file", lambda local, rel, **kw: True)

    results = ingest_paths(spec, local_lake, ["raw/ndjson/a.ndjson", "raw/ndjson/b.ndjson"], run_id="run-1",
                           start=LAKE_START)
    assert [(r.status, r.reason) for r in results] == [("failed", "Crash"), ("ingested", None)]
    assert under(tree(lake_root), "raw/") == ["raw/ndjson/a.ndjson"]  # left for a retry

    [retry] = ingest_paths(spec, local_lake, ["raw/ndjson/a.ndjson"], run_id="run-2", start=LAKE_START)
    assert retry.status == "ingested"
    assert under(tree(lake_root), "raw/") == []
    assert local_counts(lake_root, "ndjson") == {"2024-03-04": 3, "2024-03-05": 3, "2024-03-06": 1}


def test_big_integer_in_a_json_array_is_ingested_exactly(local_lake):
    """The fast parser gives up on integers beyond 64 bits; ingestion reads the file again exactly."""
    import gzip as _gzip

    record = {"timestamp": "2024-03-05T10:00:00Z", "service": "web", "request_id": "r1", "method": "GET",
              "path": "/", "status": 200, "trace_id": 123456789012345678901234567890}
    local_lake.write_bytes("raw/json_gzip/big.json.gz", _gzip.compress(json.dumps([record, record]).encode()))
    result = ingest_file(local_lake, "raw/json_gzip/big.json.gz", JSON_GZIP, date_of, run_id="run-1", now=NOW)
    assert result.status == "ingested" and result.records_by_date == {"2024-03-05": 2}
    [validated] = [p for p in result.written if p.startswith("validated/")]
    lines = _gzip.decompress(local_lake.read_bytes(validated)).decode().splitlines()
    assert [json.loads(line)["trace_id"] for line in lines] == [123456789012345678901234567890] * 2


def test_big_integer_then_corruption_is_rejected_whole_not_left_in_raw(local_lake):
    """The exact re-read meets the same corruption: the file is rejected whole, not left to fail forever."""
    import gzip as _gzip

    record = {"timestamp": "2024-03-05T10:00:00Z", "service": "web", "request_id": "r1", "method": "GET",
              "path": "/", "status": 200, "trace_id": 123456789012345678901234567890}
    data = _gzip.compress(json.dumps([record] * 50).encode())
    local_lake.write_bytes("raw/json_gzip/cut.json.gz", data[: len(data) - 12])
    result = ingest_file(local_lake, "raw/json_gzip/cut.json.gz", JSON_GZIP, date_of, run_id="run-1", now=NOW)
    assert result.status == "rejected" and result.reason in ("corrupt_gzip", "malformed_json")
    assert local_lake.list_files("raw") == [] and local_lake.list_files("validated/json_gzip") == []
    reason = json.loads(local_lake.read_text(result.written[1]))
    assert reason["reason"] == result.reason and reason["format"] == "json_gzip"
