"""``lake_assets.ingest.tabular``: every raw format of the commerce contract read to records,
malformed records kept, unreadable files refused with a specific reason. No Spark."""
from __future__ import annotations

import datetime as dt
import decimal
import gzip
import io
import json

import pytest

from lake_assets.ingest.formats import ReadLimits, Record, UnreadableFile
from lake_assets.ingest.tabular import read_any, tabular_format

LIMITS = ReadLimits()
UTC = dt.timezone.utc

# The same three records, whatever the format.
ROWS = [
    {"event_id": "e1", "user_id": "u1", "note": "a, b"},
    {"event_id": "e2", "user_id": "u2", "note": "plain"},
    {"event_id": "e3", "user_id": "u3", "note": ""},
]


def read(data: bytes, name: str) -> list[Record]:
    return list(read_any(io.BytesIO(data), LIMITS, name))


def refused(data: bytes, name: str) -> UnreadableFile:
    with pytest.raises(UnreadableFile) as info:
        read(data, name)
    return info.value


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def parquet_bytes(table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


JSON_ARRAY = json.dumps(ROWS).encode()
NDJSON_TEXT = "\n".join(json.dumps(r) for r in ROWS).encode() + b"\n"
CSV_TEXT = b'event_id,user_id,note\ne1,u1,"a, b"\ne2,u2,plain\ne3,u3,\n'
TXT_TEXT = b"event_id|user_id|note\ne1|u1|a, b\ne2|u2|plain\ne3|u3|\n"

TEXT_FORMATS = {
    "events.json": JSON_ARRAY,
    "events.ndjson": NDJSON_TEXT,
    "events.jsonl": NDJSON_TEXT,
    "events.csv": CSV_TEXT,
    "events.txt": TXT_TEXT,
}


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("name", sorted(TEXT_FORMATS))
def test_every_text_format_gives_the_same_records_in_order(name, compressed):
    data = TEXT_FORMATS[name]
    if compressed:
        data, name = gz(data), name + ".gz"
    records = read(data, name)
    assert [r.value for r in records] == ROWS
    assert [r.position for r in records] == [0, 1, 2]
    assert [json.loads(r.text) for r in records] == ROWS


def test_gzip_is_recognised_by_magic_bytes_without_the_extension():
    records = read(gz(NDJSON_TEXT), "events_without_extension")
    assert [r.value for r in records] == ROWS


def test_single_pretty_printed_json_object_is_one_record():
    data = json.dumps({"user_id": "u1", "email": "a@example.com", "tags": [1, 2]}, indent=2).encode()
    for name, payload in (("users.json", data), ("users.json.gz", gz(data))):
        records = read(payload, name)
        assert len(records) == 1
        assert records[0].value == {"user_id": "u1", "email": "a@example.com", "tags": [1, 2]}
        assert records[0].position == 0
        assert json.loads(records[0].text) == records[0].value


def test_json_array_element_that_is_not_an_object_is_a_malformed_record():
    records = read(b'[{"a": 1}, 42, "x", {"a": 2}]', "x.json")
    assert [r.value for r in records] == [{"a": 1}, None, None, {"a": 2}]
    assert [r.text for r in records] == ['{"a":1}', "42", '"x"', '{"a":2}']
    assert [r.position for r in records] == [0, 1, 2, 3]


def test_bad_ndjson_line_is_a_malformed_record_and_blank_lines_are_skipped():
    data = b'{"a": 1}\nnot json\n\n[1, 2]\n{"a": 2}\n'
    records = read(data, "x.ndjson")
    assert [r.value for r in records] == [{"a": 1}, None, None, {"a": 2}]
    assert records[1].text == "not json"
    assert [r.position for r in records] == [0, 1, 2, 3]


def test_csv_row_of_wrong_width_is_a_malformed_record():
    data = b"a,b\n1,2\n1,2,3\n4\n5,6\n"
    records = read(data, "x.csv")
    assert [r.value for r in records] == [{"a": "1", "b": "2"}, None, None, {"a": "5", "b": "6"}]
    assert json.loads(records[1].text) == ["1", "2", "3"]
    assert [r.position for r in records] == [0, 1, 2, 3]


def test_csv_header_is_trimmed_and_bom_dropped():
    records = read("\ufeffa , b\n1,2\n".encode(), "x.csv")
    assert [r.value for r in records] == [{"a": "1", "b": "2"}]


def test_format_detected_by_content_when_the_name_says_nothing():
    assert [r.value for r in read(JSON_ARRAY, "blob")] == ROWS
    assert [r.value for r in read(TXT_TEXT, "blob")] == ROWS
    assert [r.value for r in read(b"a,b\n1,2\n", "blob")] == [{"a": "1", "b": "2"}]


# -- Parquet -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def typed_parquet() -> bytes:
    import pyarrow as pa

    table = pa.table({
        "transaction_id": pa.array(["t1", "t2"], pa.string()),
        "amount": pa.array([decimal.Decimal("12.50"), decimal.Decimal("3.00")], pa.decimal128(18, 2)),
        "created_at": pa.array([dt.datetime(2025, 3, 4, 10, 0, tzinfo=UTC),
                                dt.datetime(2025, 3, 4, 23, 59, 59, 123000, tzinfo=UTC)],
                               pa.timestamp("us", tz="UTC")),
        "qty": pa.array([1, None], pa.int64()),
    })
    return parquet_bytes(table)


EXPECTED_PARQUET = [
    {"transaction_id": "t1", "amount": "12.50", "created_at": "2025-03-04T10:00:00Z", "qty": 1},
    {"transaction_id": "t2", "amount": "3.00", "created_at": "2025-03-04T23:59:59.123000Z", "qty": None},
]


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_parquet_typed_values_become_json_text(typed_parquet, compressed):
    data, name = (gz(typed_parquet), "tx.parquet.gz") if compressed else (typed_parquet, "tx.parquet")
    records = read(data, name)
    assert [json.loads(r.text) for r in records] == EXPECTED_PARQUET
    assert [r.position for r in records] == [0, 1]
    # The parsed value is what the text says (ingestion dates a record from it).
    assert [r.value for r in records] == EXPECTED_PARQUET


def test_parquet_recognised_by_magic_bytes(typed_parquet):
    assert [r.value for r in read(typed_parquet, "tx_blob")] == EXPECTED_PARQUET


def test_parquet_record_is_routed_to_its_timestamp_date(typed_parquet):
    """Ingestion dates a Parquet record by its typed timestamp, not the ingest date."""
    from lake_assets.domains.commerce import silver
    from lake_assets.domains.commerce.spec import TRANSACTIONS

    records = read(typed_parquet, "tx.parquet")
    ingest_ts = dt.datetime(2025, 3, 6, tzinfo=UTC)
    dates = [silver.routing_date(TRANSACTIONS, r, ingest_ts, dt.date(2024, 1, 1)) for r in records]
    assert dates == [dt.date(2025, 3, 4), dt.date(2025, 3, 4)]


# -- unreadable files ----------------------------------------------------------------
def test_truncated_gzip_is_corrupt_gzip():
    data = gz(NDJSON_TEXT * 50)
    for name in ("x.ndjson.gz", "x.csv.gz", "x.json.gz"):
        payload = gz(JSON_ARRAY * 1) if name == "x.json.gz" else data
        assert refused(payload[: len(payload) - 12], name).reason == "corrupt_gzip"


def test_truncated_parquet_is_corrupt_parquet(typed_parquet):
    cut = typed_parquet[: len(typed_parquet) // 2]
    assert refused(cut, "tx.parquet").reason == "corrupt_parquet"
    assert refused(gz(cut), "tx.parquet.gz").reason == "corrupt_parquet"


def test_nul_bytes_in_csv_are_binary_content():
    assert refused(b"a,b\n1,\x002\n", "x.csv").reason == "binary_content"
    assert refused(gz(b"a|b\n1|\x00\x00\n"), "x.txt.gz").reason == "binary_content"


@pytest.mark.parametrize("name,data", [
    ("x.csv", b"a,b\n\xff\xfe,2\n"),
    ("x.txt", b"a|b\n1|caf\xe9\n"),
    ("x.ndjson", b'{"a": "caf\xe9"}\n'),
    ("x.json", b'[{"a": "caf\xe9"}]'),
])
def test_invalid_utf8_is_not_utf8(name, data):
    assert refused(data, name).reason == "not_utf8"


@pytest.mark.parametrize("data", [b'[{"a": 1}, {"a": ', b'[{"a": 1}', b'{"a": 1, "b"'])
def test_json_cut_short_is_malformed_json(data):
    assert refused(data, "x.json").reason == "malformed_json"
    assert refused(gz(data), "x.json.gz").reason == "malformed_json"


@pytest.mark.parametrize("header", [b"a,a,b", b"a,,b", b"a, ,b"])
def test_repeated_or_blank_csv_header_is_bad_header(header):
    assert refused(header + b"\n1,2,3\n", "x.csv").reason == "bad_header"


def test_empty_gzip_has_no_records():
    assert read(gz(b""), "x.csv.gz") == []


# -- the validated sink --------------------------------------------------------------
def test_tabular_format_sink_writes_numbered_gzipped_json_lines(tmp_path):
    fmt = tabular_format("events")
    assert fmt.name == "events" and fmt.extension == ".ndjson.gz"
    records = list(fmt.records(io.BytesIO(CSV_TEXT), LIMITS, "events.csv"))
    path = tmp_path / ("part" + fmt.extension)
    sink = fmt.sink(str(path))
    for r in records[::-1]:  # positions are the records', not the write order
        sink.write(r)
    sink.close()
    assert sink.count == 3
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert [line.split("\t", 1)[0] for line in lines] == ["2", "1", "0"]
    assert [json.loads(line.split("\t", 1)[1]) for line in lines] == ROWS[::-1]


def test_parquet_timestamp_without_zone_is_read_as_utc():
    """pandas writes zone-less timestamps by default; the contracts say every date is UTC."""
    import datetime as _dt
    import io as _io

    import pyarrow as _pa
    import pyarrow.parquet as _pq

    from lake_assets.ingest.formats import ReadLimits as _Limits
    from lake_assets.ingest.tabular import read_any as _read_any

    buf = _io.BytesIO()
    _pq.write_table(_pa.table({"ts": _pa.array([_dt.datetime(2024, 3, 1, 23, 30)], _pa.timestamp("us"))}), buf)
    (record,) = list(_read_any(_io.BufferedReader(_io.BytesIO(buf.getvalue())), _Limits(), "naive.parquet"))
    assert record.value == {"ts": "2024-03-01T23:30:00Z"}


def test_json_numbers_keep_every_digit():
    """A 17-digit amount or an exponent survives a JSON array whole (as the digits' text)."""
    import io as _io

    from lake_assets.ingest.formats import ReadLimits as _Limits
    from lake_assets.ingest.tabular import read_any as _read_any

    data = b'[{"amount": 1234567890123456.78, "big": 1e400, "n": 3, "ts": 1709380800000}]'
    (record,) = list(_read_any(_io.BufferedReader(_io.BytesIO(data)), _Limits(), "a.json"))
    assert record.value == {"amount": "1234567890123456.78", "big": "1E+400", "n": 3, "ts": 1709380800000}
