"""Holds the synthetic log generator to the contract it feeds (shared/contracts/logs.md).

Pipeline tests trust the generator's counts, so these tests re-read every file it
writes with an independent reading of the contract and check the counts, the bad
records and the bad files against it.
"""
from __future__ import annotations

import collections
import datetime as dt
import gzip
import json
import re
import xml.etree.ElementTree as ET
import xml.parsers.expat
import zlib
from dataclasses import dataclass

import pytest

from lake_assets.domains.logs import generator
from lake_assets.domains.logs.generator import GeneratedLogs, generate_logs

UTC = dt.timezone.utc
START = dt.date(2024, 3, 1)
DAYS = 3
NOW = dt.datetime(2024, 3, 10, 8, 0, tzinfo=UTC)
LAKE_START = dt.date(2024, 1, 1)
ARGS = dict(start=START, days=DAYS, records_per_day=3000, bad_share=0.03, bad_files=5, seed=11, now=NOW)

ACCESS_REQUIRED = ("timestamp", "service", "request_id", "method", "path", "status")
ERROR_REQUIRED = ("timestamp", "service", "level", "message")
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
LEVELS = {"WARN", "ERROR", "CRITICAL"}
KNOWN_ACCESS_FIELDS = set(ACCESS_REQUIRED) | {"host", "client_ip", "user_id", "user_agent", "bytes_sent",
                                              "latency_ms"}
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
NUMBER = re.compile(r"-?\d+(\.\d+)?")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
MALFORMED = object()


# --------------------------------------------------------------------------- an independent reader


def run(**overrides) -> tuple[dict[str, bytes], GeneratedLogs]:
    files: dict[str, bytes] = {}

    def write(path: str, data: bytes) -> None:
        assert path not in files, f"{path} written twice"
        assert isinstance(data, bytes)
        files[path] = data

    return files, generate_logs(write, **{**ARGS, **overrides})


def parse_xml(data: bytes) -> list[tuple[str, dict[str, str]]]:
    """Root children as (tag, {child: text}); any DTD is refused, as the contract requires."""
    parser = xml.parsers.expat.ParserCreate()

    def forbid(*_args):
        raise ValueError("document declares a DTD or entities")

    parser.StartDoctypeDeclHandler = forbid
    parser.EntityDeclHandler = forbid
    stack: list[str] = []
    text: list[str] = []
    out: list[tuple[str, dict[str, str]]] = []

    def start(tag, _attrs):
        stack.append(tag)
        text.clear()
        if len(stack) == 2:
            out.append((tag, {}))

    def end(tag):
        if len(stack) == 3:
            out[-1][1][tag] = "".join(text)
        stack.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    parser.Parse(data, True)
    return out


def event_time(value) -> dt.datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and ISO.fullmatch(value):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            return None
    if isinstance(value, str) and NUMBER.fullmatch(value):
        value = float(value)
    if not isinstance(value, (int, float)):
        return None
    seconds = value / 1000 if value > 10**11 else value
    return EPOCH + dt.timedelta(seconds=seconds)


def contract_reasons(rec, kind: str) -> list[str]:
    """Every rule the record breaks, in the contract's order."""
    if rec is MALFORMED or not isinstance(rec, dict):
        return ["malformed_record"]
    required = ACCESS_REQUIRED if kind == "access" else ERROR_REQUIRED
    missing = {f for f in required
               if rec.get(f) is None or (rec.get(f) == "" and not (kind == "error" and f == "message"))}
    out = [f"missing_field:{f}" for f in required if f in missing]
    if "timestamp" not in missing:
        t = event_time(rec["timestamp"])
        if t is None:
            out.append("invalid_timestamp")
        elif t.date() < LAKE_START or t > NOW + dt.timedelta(days=1):
            out.append("timestamp_out_of_range")
    if kind == "access":
        status = rec.get("status")
        if "status" not in missing:
            ok = (isinstance(status, int) and not isinstance(status, bool)) or (
                isinstance(status, str) and status.isdigit())
            if not ok or not 100 <= int(status) <= 599:
                out.append("invalid_status")
        if "method" not in missing:
            if not isinstance(rec["method"], str) or rec["method"].upper() not in METHODS:
                out.append("invalid_method")
        for name in ("bytes_sent", "latency_ms"):
            value = rec.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                out.append(f"negative_value:{name}")
    elif "level" not in missing and rec["level"].upper() not in LEVELS:
        out.append("invalid_level")
    return out


@dataclass
class Rec:
    path: str
    kind: str  # access | error
    raw: str
    value: object  # parsed JSON value, XML fields dict, or MALFORMED
    reasons: list[str]


def read_records(files: dict[str, bytes], skip: set[str]) -> list[Rec]:
    out: list[Rec] = []

    def lines(path: str, text: str) -> None:
        for line in text.split("\n"):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                value = MALFORMED
            out.append(Rec(path, "access", line, value, contract_reasons(value, "access")))

    for path, data in files.items():
        if path in skip:
            continue
        if path.startswith("raw/ndjson/"):
            lines(path, data.decode("utf-8"))
        elif path.startswith("raw/json_gzip/"):
            text = gzip.decompress(data).decode("utf-8")
            if text.lstrip().startswith("["):
                for value in json.loads(text):
                    out.append(Rec(path, "access", json.dumps(value), value, contract_reasons(value, "access")))
            else:
                lines(path, text)
        elif path.startswith("raw/xml_errors/"):
            for tag, fields in parse_xml(data):
                value = fields if tag == "error" else MALFORMED
                out.append(Rec(path, "error", repr((tag, fields)), value, contract_reasons(value, "error")))
        else:
            raise AssertionError(f"unexpected prefix: {path}")
    return out


@pytest.fixture(scope="module")
def generated() -> tuple[dict[str, bytes], GeneratedLogs, list[Rec]]:
    files, result = run()
    return files, result, read_records(files, set(result.bad_files))


# --------------------------------------------------------------------------- tests


def test_same_arguments_give_the_same_bytes():
    args = dict(records_per_day=800, now=None)
    first, result = run(**args)
    second, again = run(**args)
    assert list(first.items()) == list(second.items())
    assert result == again
    # gzip headers carry no clock
    assert all(d[4:8] == b"\0\0\0\0" for p, d in first.items() if p.endswith(".gz"))
    other, _ = run(**args, seed=12)
    assert other != first


def test_counts_match_what_was_written(generated):
    files, result, records = generated
    assert result.files == len(files)
    assert set(result.bad_files) <= set(files)
    assert result.records == len(records)
    assert result.access_records == sum(r.kind == "access" for r in records)
    assert result.error_records == sum(r.kind == "error" for r in records)
    assert result.access_records + result.error_records == result.records
    assert 0.85 < result.access_records / result.records < 0.95
    assert {p.split("/")[1] for p in files} == {"ndjson", "json_gzip", "xml_errors"}


def test_bad_files_cannot_be_read(generated):
    files, result, _ = generated
    assert len(result.bad_files) == ARGS["bad_files"] == 5
    for path in result.bad_files:
        data = files[path]
        if path.endswith(".gz"):
            assert data[:2] == b"\x1f\x8b"
            with pytest.raises((EOFError, OSError, zlib.error)):
                gzip.decompress(data)
        elif path.endswith(".xml"):
            with pytest.raises((ValueError, xml.parsers.expat.ExpatError)):
                parse_xml(data)
        else:
            with pytest.raises(UnicodeDecodeError):
                data.decode("utf-8")
    xml_bad = [files[p] for p in result.bad_files if p.endswith(".xml")]
    assert any(b"<!ENTITY lol" in d for d in xml_bad), "billion laughs"
    assert any(b'SYSTEM "file:///etc/passwd"' in d for d in xml_bad), "external entity"
    not_well_formed = [d for d in xml_bad if b"<!DOCTYPE" not in d]
    assert not_well_formed
    for data in not_well_formed:  # broken even for a parser that allows DTDs
        with pytest.raises(ET.ParseError):
            ET.fromstring(data)


def test_bad_records_are_the_ones_reported(generated):
    _, result, records = generated
    bad = [r for r in records if r.reasons]
    assert result.bad_records == len(bad)
    assert result.bad_access_records == sum(r.kind == "access" for r in bad)
    assert result.reason_counts == dict(collections.Counter(r.reasons[0] for r in bad))
    assert result.bad_records / result.records == pytest.approx(ARGS["bad_share"], abs=0.005)


def test_every_rule_appears(generated):
    _, _, records = generated
    seen = {(r.kind, reason) for r in records for reason in r.reasons}
    expected = {("access", "malformed_record"), ("error", "malformed_record"),
                ("access", "invalid_timestamp"), ("error", "invalid_timestamp"),
                ("access", "timestamp_out_of_range"), ("error", "timestamp_out_of_range"),
                ("access", "invalid_status"), ("access", "invalid_method"), ("error", "invalid_level"),
                ("access", "negative_value:bytes_sent"), ("access", "negative_value:latency_ms")}
    expected |= {("access", f"missing_field:{f}") for f in ACCESS_REQUIRED}
    expected |= {("error", f"missing_field:{f}") for f in ERROR_REQUIRED}
    assert expected <= seen, expected - seen
    assert any(len(r.reasons) >= 2 for r in records if r.kind == "access")
    assert any(len(r.reasons) >= 2 for r in records if r.kind == "error")
    # missing means absent, null and empty alike
    for f in ACCESS_REQUIRED:
        forms = {("absent" if f not in r.value else repr(r.value[f])) for r in records
                 if r.kind == "access" and f"missing_field:{f}" in r.reasons}
        assert {"absent", "None", "''"} <= forms, (f, forms)
    # the malformed kinds: text that is not JSON, and JSON that is not an object
    malformed = [r for r in records if r.reasons == ["malformed_record"] and r.kind == "access"]
    assert any(r.value is MALFORMED for r in malformed)
    assert any(isinstance(r.value, list) for r in malformed)
    assert any(isinstance(r.value, (int, float)) for r in malformed)


def test_valid_events_fall_on_the_requested_days_and_files_span_adjacent_days(generated):
    _, _, records = generated
    days = {START + dt.timedelta(days=i) for i in range(DAYS)}
    per_file: dict[str, set[dt.date]] = collections.defaultdict(set)
    for r in records:
        if not r.reasons:
            day = event_time(r.value["timestamp"]).date()
            assert day in days, r.raw
            per_file[r.path].add(day)
    for path, dates in per_file.items():
        assert (max(dates) - min(dates)).days <= 2, (path, dates)
    assert any(len(d) > 1 for p, d in per_file.items() if "/xml_errors/" not in p)
    assert any(len(d) > 1 for p, d in per_file.items() if "/xml_errors/" in p)
    assert all(any(day in d for d in per_file.values()) for day in days)


def test_inputs_vary_as_the_contract_allows(generated):
    files, _, records = generated
    access = [r.value for r in records if r.kind == "access" and not r.reasons]
    errors = [r.value for r in records if r.kind == "error" and not r.reasons]
    stamps = [a["timestamp"] for a in access]
    assert any(isinstance(t, str) and t.endswith("Z") for t in stamps)
    assert any(isinstance(t, str) and t[-6] == "+" for t in stamps)
    assert any(isinstance(t, str) and t[-6] == "-" for t in stamps)
    assert any(type(t) is int and t < 10**11 for t in stamps)
    assert any(type(t) is float for t in stamps)
    assert any(type(t) is int and t > 10**11 for t in stamps)
    # an offset that puts the local date on another day than the UTC date
    assert any(isinstance(t, str) and t[-1] != "Z" and t[:10] != str(event_time(t).date()) for t in stamps)
    assert any(a["method"] != a["method"].upper() for a in access)
    assert any(isinstance(a["status"], str) for a in access)
    assert any(400 <= int(a["status"]) < 500 for a in access)
    assert any(int(a["status"]) >= 500 for a in access)
    assert any("user_id" in a and a["user_id"] is None for a in access)
    assert len({a["service"] for a in access}) >= 5
    extras = [set(a) - KNOWN_ACCESS_FIELDS for a in access]
    assert any(extras) and any(isinstance(a.get("client"), dict) for a in access)
    assert any(e["level"] != e["level"].upper() for e in errors)
    assert any(e.get("message") == "" for e in errors)
    assert any("<" in e.get("message", "") and "&" in e.get("message", "") for e in errors)
    assert any("host" not in e for e in errors)
    error_only = {e["service"] for e in errors} - {a["service"] for a in access}
    assert error_only, "a service with errors but no access records"
    assert any(b"\n\n" in d for p, d in files.items() if p.endswith(".ndjson"))
    gz = [gzip.decompress(d).lstrip()[:1] for p, d in files.items() if p.endswith(".gz")
          and p not in generated[1].bad_files]
    assert b"[" in gz and b"{" in gz


def test_duplicate_deliveries_are_identical_and_in_another_file(generated):
    _, result, records = generated
    by_id = collections.defaultdict(list)
    for r in records:
        if r.kind == "access" and not r.reasons:
            by_id[r.value["request_id"]].append(r)
    repeats = [group for group in by_id.values() if len(group) > 1]
    assert result.duplicate_deliveries == sum(len(g) - 1 for g in repeats) > 0
    assert 0.003 < result.duplicate_deliveries / result.access_records < 0.03
    for group in repeats:
        assert all(r.value == group[0].value for r in group)
        assert len({r.path for r in group}) == len(group)


def test_files_stay_below_the_size_limit(monkeypatch):
    monkeypatch.setattr(generator, "_MAX_FILE_RECORDS", 200)
    files, result = run(days=2, records_per_day=2000, bad_files=0)
    records = read_records(files, set())
    sizes = collections.Counter(r.path for r in records)
    assert max(sizes.values()) <= 240
    assert result.files >= 2 * 2000 * 0.9 * 1.4 / 200


def test_no_bad_records_when_asked_for_none():
    files, result = run(days=2, records_per_day=500, bad_share=0.0, bad_files=0)
    records = read_records(files, set())
    assert result.bad_records == 0 and result.bad_files == [] and result.reason_counts == {}
    assert not [r for r in records if r.reasons]
    assert result.records == len(records) == 2 * 500 + result.duplicate_deliveries


def test_bad_files_cycle_beyond_three():
    _, result = run(days=1, records_per_day=100, bad_files=7)
    assert len(result.bad_files) == len(set(result.bad_files)) == 7
    assert sum(p.endswith(".xml") for p in result.bad_files) == 4


def test_rejects_impossible_arguments():
    for bad in (dict(days=-1), dict(records_per_day=-1), dict(bad_share=1.5), dict(bad_files=-1)):
        with pytest.raises(ValueError):
            run(**bad)
