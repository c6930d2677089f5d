"""Holds event dating to one answer: ``parse_event_time`` (Python, ingestion routes by it)
and ``event_time_column`` (Spark, the processed stage dates by it) must name the same
instant for every timestamp value, or both none.

The corpus is written as JSON literals: Python reads them with ``json.loads`` (as
ingestion does), Spark reads them with ``from_json`` into a string field (as the
processed stage does), and string literals are also fed to Spark directly. All
Spark answers come from one ``collect``.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest

from lake_assets.quality.timestamps import event_time_column, parse_event_time

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def U(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def micros(value: dt.datetime | None) -> int | None:
    if value is None:
        return None
    assert value.tzinfo is not None and value.utcoffset() == dt.timedelta(0), value
    return (value - EPOCH) // dt.timedelta(microseconds=1)


# (JSON literal, the instant it names or None). Expected values are written by hand.
EXPECTED = [
    # ISO with Z and with offsets, crossing midnight both ways, a month, a year and a leap day.
    ('"2025-03-04T10:00:00Z"', U(2025, 3, 4, 10, 0, 0)),
    ('"2025-03-04T23:59:59.250+02:00"', U(2025, 3, 4, 21, 59, 59, 250000)),
    ('"2025-03-04T23:30:00-02:00"', U(2025, 3, 5, 1, 30)),
    ('"2025-03-05T01:00:00+02:00"', U(2025, 3, 4, 23, 0)),
    ('"2025-03-31T22:00:00-05:00"', U(2025, 4, 1, 3, 0)),
    ('"2025-01-01T00:30:00+01:00"', U(2024, 12, 31, 23, 30)),
    ('"2024-03-01T00:15:00+00:30"', U(2024, 2, 29, 23, 45)),
    ('"2025-03-04T10:00:00+14:00"', U(2025, 3, 3, 20, 0)),
    ('"2025-03-04T10:00:00-12:00"', U(2025, 3, 4, 22, 0)),
    ('"2025-03-04T10:00:00+00:00"', U(2025, 3, 4, 10, 0)),
    ('"2025-03-04T10:00:00-00:00"', U(2025, 3, 4, 10, 0)),
    ('"2024-02-29T12:00:00Z"', U(2024, 2, 29, 12, 0)),
    # Fractions of 1..9 digits: microseconds kept, finer digits truncated (never rounded up).
    ('"2025-03-04T10:00:00.1Z"', U(2025, 3, 4, 10, 0, 0, 100000)),
    ('"2025-03-04T10:00:00.12Z"', U(2025, 3, 4, 10, 0, 0, 120000)),
    ('"2025-03-04T10:00:00.123Z"', U(2025, 3, 4, 10, 0, 0, 123000)),
    ('"2025-03-04T10:00:00.1234Z"', U(2025, 3, 4, 10, 0, 0, 123400)),
    ('"2025-03-04T10:00:00.12345Z"', U(2025, 3, 4, 10, 0, 0, 123450)),
    ('"2025-03-04T10:00:00.123456Z"', U(2025, 3, 4, 10, 0, 0, 123456)),
    ('"2025-03-04T10:00:00.1234567Z"', U(2025, 3, 4, 10, 0, 0, 123456)),
    ('"2025-03-04T10:00:00.12345678Z"', U(2025, 3, 4, 10, 0, 0, 123456)),
    ('"2025-03-04T10:00:00.123456789Z"', U(2025, 3, 4, 10, 0, 0, 123456)),
    ('"2025-03-04T23:59:59.999999999Z"', U(2025, 3, 4, 23, 59, 59, 999999)),
    ('"2025-03-04T23:59:59.9999999-01:00"', U(2025, 3, 5, 0, 59, 59, 999999)),
    ('"2025-03-04T10:00:00.000000001+02:00"', U(2025, 3, 4, 8, 0, 0, 0)),
    # ISO forms the contract does not allow.
    ('"2025-03-04T10:00:00"', None),  # no offset
    ('"2025-03-04T10:00:00.5"', None),  # no offset
    ('"2025-03-04T10:00:00+0200"', None),
    ('"2025-03-04T10:00:00+02"', None),
    ('"2025-03-04T10:00Z"', None),  # no seconds
    ('"2025-03-04 10:00:00Z"', None),
    ('"2025-03-04"', None),
    ('"2025-03-04T10:00:00.Z"', None),
    ('"2025-03-04T10:00:00.1234567890Z"', None),  # 10 fraction digits
    ('"2025-03-04T24:00:00Z"', None),
    ('"2025-13-01T00:00:00Z"', None),
    ('"2025-00-10T00:00:00Z"', None),
    ('"2025-02-29T00:00:00Z"', None),
    ('"2025-03-32T00:00:00Z"', None),
    ('"2025-03-04T10:60:00Z"', None),
    ('"2025-03-04T10:00:61Z"', None),
    ('"25-03-04T10:00:00Z"', None),
    (' "2025-03-04T10:00:00Z "', None),
    # Epoch seconds: int, float, string, exponent; and negatives.
    ("1700000000", U(2023, 11, 14, 22, 13, 20)),
    ("1700000000.0", U(2023, 11, 14, 22, 13, 20)),
    ("1700000000.5", U(2023, 11, 14, 22, 13, 20, 500000)),
    ("1700000000.123456789", U(2023, 11, 14, 22, 13, 20, 123456)),
    ('"1700000000"', U(2023, 11, 14, 22, 13, 20)),
    ('"1700000000.25"', U(2023, 11, 14, 22, 13, 20, 250000)),
    ("1.7e9", U(2023, 11, 14, 22, 13, 20)),
    ("17E8", U(2023, 11, 14, 22, 13, 20)),
    ("1.7e+9", U(2023, 11, 14, 22, 13, 20)),
    ('"1.7e9"', U(2023, 11, 14, 22, 13, 20)),
    ('"1.7E+9"', U(2023, 11, 14, 22, 13, 20)),
    ('"1e-3"', U(1970, 1, 1, 0, 0, 0, 1000)),
    ("0", U(1970, 1, 1)),
    ("1704067199", U(2023, 12, 31, 23, 59, 59)),
    ("-1", U(1969, 12, 31, 23, 59, 59)),
    ("-0.5", U(1969, 12, 31, 23, 59, 59, 500000)),
    ('"-1.5"', U(1969, 12, 31, 23, 59, 58, 500000)),
    ("-86400", U(1969, 12, 31)),
    # Epoch milliseconds: above 10^11 (10^11 itself is still seconds).
    ("100000000000", U(5138, 11, 16, 9, 46, 40)),
    ("100000000001", U(1973, 3, 3, 9, 46, 40, 1000)),
    ("1700000000123", U(2023, 11, 14, 22, 13, 20, 123000)),
    ('"1700000000123"', U(2023, 11, 14, 22, 13, 20, 123000)),
    ("1700000000123.5", U(2023, 11, 14, 22, 13, 20, 123500)),
    ("1.7e12", U(2023, 11, 14, 22, 13, 20)),
    ('"1.7E12"', U(2023, 11, 14, 22, 13, 20)),
    ("253402300799000", U(9999, 12, 31, 23, 59, 59)),
    # Huge: beyond 9999-12-31 (or beyond any decimal) names no instant.
    ("253402300800000", None),
    ("-253402300800", None),
    ("1e300", None),
    ('"1e300"', None),
    ("123456789012345678901234567890", None),
    ('"99999999999999999999999999999999999999999"', None),
    # Not timestamps at all.
    ("true", None),
    ("false", None),
    ("null", None),
    ('""', None),
    ('" "', None),
    ('"abc"', None),
    ('"now"', None),
    ('"NaN"', None),
    ('"Infinity"', None),
    ('"0x10"', None),
    ('"+1700000000"', None),
    ('"1_700_000_000"', None),
    ('"1,5"', None),
    ('".5"', None),
    ('"5."', None),
    ('"1700000000 "', None),
    ('" 1700000000"', None),
    ('"1e"', None),
    ('"--1"', None),
    ("[1700000000]", None),
    ('{"seconds": 1700000000}', None),
]

# Values where the two sides are known to disagree (see the report): the Python
# side crashes, or Python and Spark read different patterns.
AGREEMENT_ONLY = [
    ('"1700000000\\n"', None),  # both refuse a trailing newline now
    ("1.0000000001e9", None),
    ("1699999999.9999999", None),
    ("-1700000000.123456", None),
    ("-62135596800", None),  # 0001-01-01T00:00:00Z, the first instant both can hold
    ('"0001-01-01T00:00:00Z"', None),
    ('"9999-12-31T23:59:59.999999Z"', None),
    ('"9999-12-31T23:59:59+01:00"', None),
    ("253402300799999", None),  # the last epoch second plus .999: both call it out of range
]

#: Edge cases where the two engines once disagreed (offsets beyond +-18:00, instants outside
#: years 1..9999, year 0, a trailing newline, non-ASCII digits): both must now say the same.
EDGE_CASES = [
    '"2025-03-04T10:00:00+19:00"',
    '"2025-03-04T10:00:00+18:30"',
    '"2025-03-04T10:00:00+02:60"',
    "-100000000000",
    '"-62135596801"',
    '"0001-01-01T00:00:00+01:00"',
    '"9999-12-31T23:59:59-01:00"',
    '"0000-06-01T00:00:00Z"',
    '"2025-03-04T10:00:00Z\\n"',
    '"\uff11\uff17\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff10"',
]

ALL_LITERALS = [raw for raw, _ in EXPECTED + AGREEMENT_ONLY] + EDGE_CASES
assert len(set(ALL_LITERALS)) == len(ALL_LITERALS), "duplicate corpus entries"


def _python(raw: str) -> dt.datetime | None:
    return parse_event_time(json.loads(raw))


@pytest.fixture(scope="module")
def spark_micros(spark) -> dict[str, tuple[int | None, int | None]]:
    """Per literal: (instant via from_json, instant of the string itself or None), in epoch micros."""
    from pyspark.sql import functions as F

    rows = []
    for i, raw in enumerate(ALL_LITERALS):
        value = json.loads(raw)
        rows.append((i, '{"timestamp": ' + raw + "}", value if isinstance(value, str) else None))
    df = spark.createDataFrame(rows, "i int, record string, s string")
    # As the processed stage reads a field: from_json into a string (numbers keep their JSON text).
    field = F.from_json("record", "timestamp string").getField("timestamp")
    out = df.select(
        "i",
        F.unix_micros(event_time_column(field)).alias("via_json"),
        F.unix_micros(event_time_column(F.col("s"))).alias("direct"),
    ).collect()
    assert len(out) == len(ALL_LITERALS)
    return {ALL_LITERALS[r["i"]]: (r["via_json"], r["direct"]) for r in out}


@pytest.mark.parametrize("raw", [raw for raw, _ in EXPECTED + AGREEMENT_ONLY] + EDGE_CASES)
def test_python_and_spark_name_the_same_instant(raw, spark_micros):
    py = micros(_python(raw))
    via_json, direct = spark_micros[raw]
    assert via_json == py, f"{raw}: spark {via_json} != python {py}"
    if isinstance(json.loads(raw), str):
        assert direct == py, f"{raw} (string column): spark {direct} != python {py}"


@pytest.mark.parametrize("raw,expected", EXPECTED, ids=[raw for raw, _ in EXPECTED])
def test_expected_instant(raw, expected, spark_micros):
    py = _python(raw)
    assert py == expected
    if py is not None:
        assert py.utcoffset() == dt.timedelta(0)
    assert spark_micros[raw][0] == micros(expected)


@pytest.mark.parametrize(
    "value",
    [True, False, None, [], {}, {"timestamp": 1}, b"1700000000", dt.datetime(2025, 3, 4, tzinfo=UTC),
     dt.date(2025, 3, 4), decimal.Decimal("NaN"), float("nan"), float("inf"), float("-inf")],
    ids=repr,
)
def test_python_non_timestamps_are_none(value):
    assert parse_event_time(value) is None


def test_python_number_forms_agree():
    """An int, a float and a string of the same epoch value name one instant."""
    expected = U(2023, 11, 14, 22, 13, 20)
    assert {parse_event_time(v) for v in (1700000000, 1700000000.0, "1700000000", "1700000000.000",
                                          1700000000000, "1700000000000", 1.7e12, "1.7e9")} == {expected}
    # True == 1 in Python, but a boolean is not a timestamp.
    assert parse_event_time(1) == U(1970, 1, 1, 0, 0, 1)
    assert parse_event_time(True) is None
