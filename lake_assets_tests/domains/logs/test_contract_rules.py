"""Holds the logs rules (contract.parse_access / parse_errors / valid_rows / rejected_rows)
to shared/contracts/logs.md: one case per rule and per required field.

Every case is one text record; all access cases go through Spark in one DataFrame
(and so do all error cases), keyed by ``source_file`` = the case id, and are
collected once per module.
"""
from __future__ import annotations

import datetime as dt
import json

import pytest

from lake_assets.domains.logs import contract
from lake_assets.ingest.formats import Record

UTC = dt.timezone.utc
START = dt.date(2024, 1, 1)
INGEST_TS = dt.datetime(2025, 3, 5, 12, 0, tzinfo=UTC)
ROUTED = dt.date(2025, 3, 5)
RUN_ID = "run-0001"
#: Rules that leave a record without an event date in the lake's range (routed to its ingest date).
UNDATED_RULES = ("malformed_record", "missing_field:timestamp", "invalid_timestamp", "timestamp_out_of_range")

# The contract's table order of required fields, written out independently of the code.
ACCESS_REQUIRED = ["timestamp", "service", "request_id", "method", "path", "status"]
ERROR_REQUIRED = ["timestamp", "service", "level", "message"]
RULE_ORDER = ["malformed_record", *[f"missing_field:{f}" for f in ACCESS_REQUIRED],
              "invalid_timestamp", "timestamp_out_of_range", "invalid_status", "invalid_method",
              "negative_value:bytes_sent", "negative_value:latency_ms"]

BASE = {
    "timestamp": "2025-03-04T10:00:00Z",
    "service": "checkout",
    "request_id": "req-1",
    "method": "GET",
    "path": "/cart",
    "status": 200,
}


def access(**changes) -> str:
    """A valid access record with fields changed; a value of ``...`` removes the field."""
    rec = dict(BASE)
    for k, v in changes.items():
        if v is ...:
            rec.pop(k, None)
        else:
            rec[k] = v
    return json.dumps(rec)


def error(**changes) -> str:
    """A valid ``<error>`` record with elements changed (``...`` removes, ``""`` empties)."""
    fields = {"timestamp": "2025-03-04T10:00:00Z", "service": "billing", "level": "ERROR", "message": "boom"}
    for k, v in changes.items():
        if v is ...:
            fields.pop(k, None)
        else:
            fields[k] = v
    body = "".join(f"<{k}/>" if v == "" else f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f"<error>{body}</error>"


# ---------------------------------------------------------------------------- access cases
# id -> (record text, expected reasons in order)
ACCESS_CASES: dict[str, tuple[str, list[str]]] = {
    "valid": (access(), []),
    "valid_all_optional": (access(host="h1", client_ip="10.0.0.1", user_id="u1", user_agent="curl/8",
                                  bytes_sent=512, latency_ms=12.5), []),
    "valid_optional_nulls": (access(host=None, client_ip=None, user_id=None, user_agent=None,
                                    bytes_sent=None, latency_ms=None), []),
    "valid_zero_values": (access(bytes_sent=0, latency_ms=0.0), []),
    "valid_epoch_seconds": (access(timestamp=1741082400), []),
    "valid_epoch_millis": (access(timestamp=1741082400123), []),
    "valid_status_bounds_low": (access(status=100), []),
    "valid_status_bounds_high": (access(status=599), []),
    # malformed_record
    "malformed_text": ("this is not json", ["malformed_record"]),
    "malformed_array": (json.dumps([BASE]), ["malformed_record"]),
    "malformed_string": (json.dumps("GET /cart 200"), ["malformed_record"]),
    "malformed_number": ("42", ["malformed_record"]),
    "malformed_truncated": (access()[:-5], ["malformed_record"]),
    "malformed_empty": ("", ["malformed_record"]),
    "malformed_trailing_text": (access() + " trailing", ["malformed_record"]),
    "malformed_two_objects": (access() + "{}", ["malformed_record"]),
    "malformed_single_quotes": (access().replace('"', "'"), ["malformed_record"]),
    "malformed_comma_then_object": (access() + ', {"a": 1}', ["malformed_record"]),
    "malformed_closing_bracket_after": (access() + "]", ["malformed_record"]),
    "malformed_whitespace_then_array": (" \t" + json.dumps([BASE]), ["malformed_record"]),
    "valid_leading_and_trailing_whitespace": (" \t" + access() + " \r", []),
    # The strict check's sentinel, written after the object by a producer: still two values.
    "malformed_sentinel_after_object": (access() + ',"lake:end-of-record:5b1e0c"', ["malformed_record"]),
    # A repeated key keeps its last value, as Python's json does when ingestion dates the record.
    "duplicate_key_last_wins": (access(status="abc")[:-1] + ', "status": 200}', []),
    "duplicate_key_last_breaks": (access()[:-1] + ', "status": "abc"}', ["invalid_status"]),
    # every required field missing: an empty object
    "empty_object": ("{}", [f"missing_field:{f}" for f in ACCESS_REQUIRED]),
    # several missing, in a scrambled record order: reported in the contract's table order
    "several_missing": (json.dumps({"path": None, "status": 200, "service": "", "method": "GET",
                                    "request_id": "r"}),
                        ["missing_field:timestamp", "missing_field:service", "missing_field:path"]),
    # invalid_timestamp
    "ts_garbage": (access(timestamp="yesterday"), ["invalid_timestamp"]),
    "ts_no_offset": (access(timestamp="2025-03-04T10:00:00"), ["invalid_timestamp"]),
    "ts_bad_offset": (access(timestamp="2025-03-04T10:00:00+0200"), ["invalid_timestamp"]),
    "ts_boolean": (access(timestamp=True), ["invalid_timestamp"]),
    "ts_month_13": (access(timestamp="2025-13-04T10:00:00Z"), ["invalid_timestamp"]),
    # timestamp_out_of_range: before LAKE_START_DATE, or more than one day after ingestion
    "ts_before_start": (access(timestamp="2023-12-31T23:59:59Z"), ["timestamp_out_of_range"]),
    "ts_before_start_by_offset": (access(timestamp="2024-01-01T01:00:00+02:00"), ["timestamp_out_of_range"]),
    "ts_before_start_epoch": (access(timestamp=1704067199), ["timestamp_out_of_range"]),
    "ts_start_exactly": (access(timestamp="2024-01-01T00:00:00Z"), []),
    "ts_one_day_after_ingest": (access(timestamp="2025-03-06T12:00:00Z"), []),
    "ts_one_day_after_ingest_offset": (access(timestamp="2025-03-06T14:00:00+02:00"), []),
    "ts_past_one_day_after_ingest": (access(timestamp="2025-03-06T12:00:00.001Z"), ["timestamp_out_of_range"]),
    "ts_far_future": (access(timestamp="2030-01-01T00:00:00Z"), ["timestamp_out_of_range"]),
    # invalid_status
    "status_700": (access(status=700), ["invalid_status"]),
    "status_600": (access(status=600), ["invalid_status"]),
    "status_99": (access(status=99), ["invalid_status"]),
    "status_0": (access(status=0), ["invalid_status"]),
    "status_negative": (access(status=-200), ["invalid_status"]),
    "status_abc": (access(status="abc"), ["invalid_status"]),
    "status_20x": (access(status="20x"), ["invalid_status"]),
    "status_float": (access(status=200.5), ["invalid_status"]),
    "status_bool": (access(status=True), ["invalid_status"]),
    "status_string_404": (access(status="404"), []),
    # invalid_method
    "method_fetch": (access(method="FETCH"), ["invalid_method"]),
    "method_padded": (access(method=" GET"), ["invalid_method"]),
    "method_number": (access(method=1), ["invalid_method"]),
    "method_lower": (access(method="get"), []),
    "method_mixed": (access(method="Patch"), []),
    # negative_value
    "negative_bytes": (access(bytes_sent=-1), ["negative_value:bytes_sent"]),
    "negative_latency": (access(latency_ms=-0.5), ["negative_value:latency_ms"]),
    "negative_both": (access(bytes_sent=-10, latency_ms=-1), ["negative_value:bytes_sent",
                                                              "negative_value:latency_ms"]),
    # several rules at once: reason is the first in contract order, reasons all of them in order
    "many_broken": (json.dumps({"latency_ms": -2, "bytes_sent": -1, "method": "FETCH", "status": 700,
                                "path": "/x", "request_id": "r", "timestamp": "not a time"}),
                    ["missing_field:service", "invalid_timestamp", "invalid_status", "invalid_method",
                     "negative_value:bytes_sent", "negative_value:latency_ms"]),
    "many_broken_out_of_range": (access(timestamp="2023-06-01T00:00:00Z", status="20x", method="fetch",
                                        latency_ms=-3),
                                 ["timestamp_out_of_range", "invalid_status", "invalid_method",
                                  "negative_value:latency_ms"]),
    # extra fields are not a reason to reject
    "extras": (access(region="eu-west-1", retries=3, ratio=0.5, as_text="7",
                      meta={"a": [1, 2.5, "x"], "b": {"c": None}}, flag=True, nothing=None,
                      user_id="u9"), []),
}
# missing_field:<f> for every required field, as absent, null and empty string.
for _f in ACCESS_REQUIRED:
    for _how, _value in (("absent", ...), ("null", None), ("empty", "")):
        ACCESS_CASES[f"missing_{_f}_{_how}"] = (access(**{_f: _value}), [f"missing_field:{_f}"])

def _params(cases: dict) -> list:
    return [pytest.param(case) for case in cases]


# ---------------------------------------------------------------------------- error cases
ERROR_CASES: dict[str, tuple[str, list[str]]] = {
    "valid": (error(), []),
    "valid_optional": (error(host="db-1", code="E42", request_id="req-9"), []),
    "valid_empty_message": (error(message=""), []),  # <message/>
    "valid_empty_message_pair": (error(message="").replace("<message/>", "<message></message>"), []),
    "valid_level_lower": (error(level="critical"), []),
    "valid_level_mixed": (error(level="Warn"), []),
    "valid_epoch": (error(timestamp="1741082400"), []),
    "valid_escaped": (error(message="a &amp; b&#10;c"), []),
    "malformed_warning": (error().replace("<error>", "<warning>").replace("</error>", "</warning>"),
                          ["malformed_record"]),
    "malformed_errors_root": (error().replace("<error>", "<errors>").replace("</error>", "</errors>"),
                              ["malformed_record"]),
    "malformed_text": ("not xml at all", ["malformed_record"]),
    "empty_error": ("<error/>", [f"missing_field:{f}" for f in ERROR_REQUIRED]),
    "several_missing": (error(service=..., message=..., timestamp=""),
                        ["missing_field:timestamp", "missing_field:service", "missing_field:message"]),
    "invalid_level_debug": (error(level="DEBUG"), ["invalid_level"]),
    "invalid_level_warning": (error(level="WARNING"), ["invalid_level"]),
    "invalid_timestamp": (error(timestamp="soon"), ["invalid_timestamp"]),
    "ts_before_start": (error(timestamp="2023-12-31T23:59:59Z"), ["timestamp_out_of_range"]),
    "ts_past_one_day_after_ingest": (error(timestamp="2025-03-06T12:00:01Z"), ["timestamp_out_of_range"]),
    "ts_one_day_after_ingest": (error(timestamp="2025-03-06T12:00:00Z"), []),
    "many_broken": (error(service=..., timestamp="2025-03-04", level="debug"),
                    ["missing_field:service", "invalid_timestamp", "invalid_level"]),
}
for _f in ERROR_REQUIRED:
    ERROR_CASES[f"missing_{_f}_absent"] = (error(**{_f: ...}), [f"missing_field:{_f}"])
    if _f != "message":  # an empty message is allowed
        ERROR_CASES[f"missing_{_f}_empty"] = (error(**{_f: ""}), [f"missing_field:{_f}"])


def _text_df(spark, cases: dict[str, tuple[str, list[str]]], source_format: str):
    rows = [(text, ROUTED, source_format, case, RUN_ID, INGEST_TS) for case, (text, _) in cases.items()]
    return spark.createDataFrame(rows, contract.TEXT_INPUT_SCHEMA)


@pytest.fixture(scope="module")
def parsed_access(spark):
    df = contract.parse_access(_text_df(spark, ACCESS_CASES, "ndjson"), START)
    rows = {r["source_file"]: r for r in df.collect()}
    assert set(rows) == set(ACCESS_CASES)
    return rows


@pytest.fixture(scope="module")
def parsed_errors(spark):
    df = contract.parse_errors(_text_df(spark, ERROR_CASES, "xml_errors"), START)
    rows = {r["source_file"]: r for r in df.collect()}
    assert set(rows) == set(ERROR_CASES)
    return rows


def _as_utc(ts: dt.datetime) -> dt.datetime:
    """Spark hands timestamps back as naive local time."""
    return ts.astimezone(UTC)


# ---------------------------------------------------------------------------- access tests
@pytest.mark.parametrize("case", _params(ACCESS_CASES))
def test_access_reasons(case, parsed_access):
    _, expected = ACCESS_CASES[case]
    assert list(parsed_access[case]["reasons"]) == expected


def test_access_expected_reasons_follow_contract_order():
    """The expectations above are themselves in contract order (guards the test data)."""
    for case, (_, expected) in ACCESS_CASES.items():
        assert expected == sorted(expected, key=RULE_ORDER.index), case


def test_access_valid_record_is_typed(parsed_access):
    r = parsed_access["valid_all_optional"]
    assert _as_utc(r["event_ts"]) == dt.datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    assert r["event_date"] == dt.date(2025, 3, 4)
    assert (r["service"], r["host"], r["request_id"], r["client_ip"], r["user_id"], r["method"], r["path"],
            r["user_agent"]) == ("checkout", "h1", "req-1", "10.0.0.1", "u1", "GET", "/cart", "curl/8")
    assert r["status"] == 200 and r["bytes_sent"] == 512 and r["latency_ms"] == 12.5
    assert r["attributes"] is None


def test_access_status_string_is_typed_int(parsed_access):
    r = parsed_access["status_string_404"]
    assert r["status"] == 404 and type(r["status"]) is int


def test_access_method_is_upper_cased(parsed_access):
    assert parsed_access["method_lower"]["method"] == "GET"
    assert parsed_access["method_mixed"]["method"] == "PATCH"


def test_access_offset_dates_in_utc(parsed_access):
    # 2025-03-06T14:00+02:00 is 12:00Z, exactly one day after ingestion: in range.
    r = parsed_access["ts_one_day_after_ingest_offset"]
    assert _as_utc(r["event_ts"]) == INGEST_TS + dt.timedelta(days=1)
    assert r["event_date"] == dt.date(2025, 3, 6)
    assert _as_utc(parsed_access["valid_epoch_millis"]["event_ts"]) == \
        dt.datetime(2025, 3, 4, 10, 0, 0, 123000, tzinfo=UTC)


def test_access_extra_fields_kept_in_attributes_with_types(parsed_access):
    attrs = parsed_access["extras"]["attributes"]
    assert isinstance(attrs, str)
    value = json.loads(attrs)
    assert value == {"region": "eu-west-1", "retries": 3, "ratio": 0.5, "as_text": "7",
                     "meta": {"a": [1, 2.5, "x"], "b": {"c": None}}, "flag": True, "nothing": None}
    assert type(value["retries"]) is int
    assert type(value["ratio"]) is float
    assert type(value["as_text"]) is str
    assert type(value["flag"]) is bool
    # Contract fields are columns, not attributes.
    assert not set(value) & set(contract.ACCESS_FIELDS)
    assert parsed_access["extras"]["user_id"] == "u9"


def test_access_no_extras_means_null_attributes(parsed_access):
    for case in ("valid", "valid_optional_nulls", "status_string_404"):
        assert parsed_access[case]["attributes"] is None, case


def test_access_valid_rows_schema_and_content(spark):
    cases = {c: ACCESS_CASES[c] for c in ("valid", "extras", "status_700", "malformed_text", "missing_path_null",
                                           "status_string_404")}
    valid = contract.valid_rows(contract.parse_access(_text_df(spark, cases, "json_gzip"), START),
                                contract.ACCESS_SCHEMA)
    assert [(f.name, f.dataType) for f in valid.schema.fields] == \
        [(f.name, f.dataType) for f in contract.ACCESS_SCHEMA.fields]
    rows = {r["source_file"]: r for r in valid.collect()}
    assert set(rows) == {"valid", "extras", "status_string_404"}
    r = rows["status_string_404"]
    assert r["status"] == 404 and r["method"] == "GET"
    assert r["source_format"] == "json_gzip" and r["ingest_run_id"] == RUN_ID
    assert r["event_date"] == dt.date(2025, 3, 4)
    assert json.loads(rows["extras"]["attributes"])["retries"] == 3


# ---------------------------------------------------------------------------- routing (Python) vs Spark
def _python_record(text: str) -> Record:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return Record(text, value if isinstance(value, dict) else None)


@pytest.mark.parametrize("case", _params(ACCESS_CASES))
def test_routing_date_agrees_with_spark(case, parsed_access):
    """Ingestion's routing date is the event date Spark finds, or None when Spark finds none in range."""
    text, _ = ACCESS_CASES[case]
    row = parsed_access[case]
    undated = any(r in UNDATED_RULES for r in row["reasons"])
    spark_date = None if undated else row["event_date"]
    assert contract.routing_date(_python_record(text), INGEST_TS, START) == spark_date


def test_routing_date_values():
    ok = Record("", {"timestamp": "2025-03-04T23:30:00-02:00"})
    assert contract.routing_date(ok, INGEST_TS, START) == dt.date(2025, 3, 5)
    assert contract.routing_date(Record("x", None), INGEST_TS, START) is None
    assert contract.routing_date(Record("{}", {}), INGEST_TS, START) is None
    edge = Record("", {"timestamp": "2025-03-06T12:00:00Z"})
    assert contract.routing_date(edge, INGEST_TS, START) == dt.date(2025, 3, 6)
    late = Record("", {"timestamp": "2025-03-06T12:00:00.000001Z"})
    assert contract.routing_date(late, INGEST_TS, START) is None
    early = Record("", {"timestamp": "2023-12-31T23:59:59Z"})
    assert contract.routing_date(early, INGEST_TS, START) is None
    assert contract.routing_date(Record("", {"timestamp": 1704067200}), INGEST_TS, START) == START


# ---------------------------------------------------------------------------- error tests
@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_error_reasons(case, parsed_errors):
    _, expected = ERROR_CASES[case]
    assert list(parsed_errors[case]["reasons"]) == expected


def test_error_empty_message_is_valid_empty_string(parsed_errors):
    for case in ("valid_empty_message", "valid_empty_message_pair"):
        r = parsed_errors[case]
        assert r["message"] == "" and list(r["reasons"]) == [], case


def test_error_level_upper_cased(parsed_errors):
    assert parsed_errors["valid_level_lower"]["level"] == "CRITICAL"
    assert parsed_errors["valid_level_mixed"]["level"] == "WARN"
    assert parsed_errors["valid"]["level"] == "ERROR"


def test_error_valid_record_is_typed(parsed_errors):
    r = parsed_errors["valid_optional"]
    assert _as_utc(r["event_ts"]) == dt.datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    assert r["event_date"] == dt.date(2025, 3, 4)
    assert (r["service"], r["host"], r["level"], r["code"], r["message"], r["request_id"]) == \
        ("billing", "db-1", "ERROR", "E42", "boom", "req-9")
    plain = parsed_errors["valid"]
    assert plain["host"] is None and plain["code"] is None and plain["request_id"] is None
    assert parsed_errors["valid_escaped"]["message"] == "a & b\nc"
    assert _as_utc(parsed_errors["valid_epoch"]["event_ts"]) == dt.datetime(2025, 3, 4, 10, 0, tzinfo=UTC)


def test_error_valid_rows_schema(spark):
    cases = {c: ERROR_CASES[c] for c in ("valid", "valid_empty_message", "invalid_level_debug")}
    valid = contract.valid_rows(contract.parse_errors(_text_df(spark, cases, "xml_errors"), START),
                                contract.ERROR_SCHEMA)
    assert [(f.name, f.dataType) for f in valid.schema.fields] == \
        [(f.name, f.dataType) for f in contract.ERROR_SCHEMA.fields]
    rows = {r["source_file"]: r for r in valid.collect()}
    assert set(rows) == {"valid", "valid_empty_message"}
    assert rows["valid_empty_message"]["message"] == ""


# ---------------------------------------------------------------------------- rejected rows
REJECT_COLUMNS = ["record", "reason", "reasons", "source_format", "source_file", "stage", "ingest_run_id",
                  "rejected_at", "_partition_date"]


def test_rejected_rows_shape_and_content(spark):
    from pyspark.sql import types as T

    records = [
        # (case id, text, routed date, format)
        ("bad_status", '  {"timestamp": "2025-03-04T10:00:00Z", "service": "caf\u00e9", "request_id": "r", '
                       '"method": "GET", "path": "/", "status": 700}  ', dt.date(2025, 3, 4), "ndjson"),
        ("malformed", "{not json \u2603", dt.date(2025, 3, 5), "json_gzip"),
        ("many", json.dumps({"status": "abc", "method": "nope", "timestamp": "x"}), dt.date(2025, 3, 1), "ndjson"),
        ("ok", access(), dt.date(2025, 3, 4), "ndjson"),
    ]
    rows = [(text, routed, fmt, case, RUN_ID, INGEST_TS) for case, text, routed, fmt in records]
    parsed = contract.parse_access(spark.createDataFrame(rows, contract.TEXT_INPUT_SCHEMA), START)
    rejected = contract.rejected_rows(parsed)
    assert rejected.columns == REJECT_COLUMNS
    types = {f.name: f.dataType for f in rejected.schema.fields}
    assert isinstance(types["reasons"], T.ArrayType) and types["reasons"].elementType == T.StringType()
    assert all(types[n] == T.StringType() for n in REJECT_COLUMNS
               if n not in ("reasons", "rejected_at", "_partition_date"))
    assert types["rejected_at"] == T.TimestampType() and types["_partition_date"] == T.DateType()
    before = dt.datetime.now(UTC) - dt.timedelta(seconds=1)
    got = {r["source_file"]: r for r in rejected.collect()}
    after = dt.datetime.now(UTC) + dt.timedelta(seconds=1)
    assert set(got) == {"bad_status", "malformed", "many"}
    by_case = {case: (text, routed, fmt) for case, text, routed, fmt in records}
    for case, r in got.items():
        text, routed, fmt = by_case[case]
        assert r["record"] == text  # the original text, unchanged
        assert r["reason"] == r["reasons"][0]
        assert r["source_format"] == fmt
        assert r["stage"] == "processed"
        assert r["ingest_run_id"] == RUN_ID
        assert r["_partition_date"] == routed
        assert before <= _as_utc(r["rejected_at"]) <= after
    assert list(got["bad_status"]["reasons"]) == ["invalid_status"]
    assert list(got["malformed"]["reasons"]) == ["malformed_record"]
    assert got["many"]["reason"] == "missing_field:service"
    assert list(got["many"]["reasons"]) == ["missing_field:service", "missing_field:request_id",
                                            "missing_field:path", "invalid_timestamp", "invalid_status",
                                            "invalid_method"]


def test_rejected_error_rows(spark):
    cases = {c: ERROR_CASES[c] for c in ("valid", "malformed_warning", "invalid_level_debug")}
    rejected = contract.rejected_rows(contract.parse_errors(_text_df(spark, cases, "xml_errors"), START))
    got = {r["source_file"]: r for r in rejected.collect()}
    assert set(got) == {"malformed_warning", "invalid_level_debug"}
    for case, r in got.items():
        assert r["record"] == ERROR_CASES[case][0]
        assert r["source_format"] == "xml_errors" and r["stage"] == "processed"
        assert r["_partition_date"] == ROUTED
    assert got["malformed_warning"]["reason"] == "malformed_record"
    assert got["invalid_level_debug"]["reason"] == "invalid_level"


def test_every_record_is_valid_or_rejected(parsed_access, parsed_errors):
    """Each case lands in exactly one of valid (no reasons) and rejected (reasons), per its expectation."""
    for cases, parsed in ((ACCESS_CASES, parsed_access), (ERROR_CASES, parsed_errors)):
        for case, (_, expected) in cases.items():
            assert bool(parsed[case]["reasons"]) == bool(expected), case
