"""Event-time parsing, once in Python (ingestion routes by it) and once in Spark.

Both read the same patterns below, and ``lake_assets_tests/quality/test_timestamps``
holds them to the same answers on a shared corpus, so a record is dated
identically whether ingestion or the processed stage looks at it.

Accepted forms (the contracts' words): an ISO-8601 string with ``Z`` or an
offset, or a number of epoch seconds or milliseconds (above 10^11 is
milliseconds). Numbers may arrive as JSON numbers or as strings of digits.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

# ASCII digits only and a true end of text ((?![\s\S]), not $, which also matches before a
# final newline): Python's and Java's regex engines must accept exactly the same strings.
#: ISO-8601 date-time with seconds, up to nanosecond fractions, and a zone within +-18:00.
ISO_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
               r"(Z|[+-](0[0-9]|1[0-7]):[0-5][0-9]|[+-]18:00)(?![\s\S])")
#: A plain decimal number (JSON numbers render this way, exponents included).
NUMBER_PATTERN = r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?(?![\s\S])"
#: Epoch values above this are milliseconds.
MILLIS_THRESHOLD = 10**11
#: Instants outside years 1..9999 are not dates either engine can hold.
MIN_EPOCH_SECONDS = -62135596800  # 0001-01-01T00:00:00Z
MAX_EPOCH_SECONDS = 253402300799  # 9999-12-31T23:59:59Z

_ISO = re.compile(ISO_PATTERN)
_NUMBER = re.compile(NUMBER_PATTERN)
_DIGITS = re.compile(r"[0-9]+")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def parse_event_time(value: object) -> dt.datetime | None:
    """The UTC instant a timestamp value names, or None when it names none."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        # Exact integer arithmetic: what the Decimal path below gives for an integer, faster.
        unit = 1000 if value > MILLIS_THRESHOLD else 1  # per second
        if not MIN_EPOCH_SECONDS * unit <= value <= MAX_EPOCH_SECONDS * unit:
            return None
        return _EPOCH + dt.timedelta(microseconds=value * (1_000_000 // unit))
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    if _ISO.match(text):
        # Python keeps microseconds; trim longer fractions as Spark does.
        head, _, rest = text.partition(".")
        if rest:
            digits = _DIGITS.match(rest).group(0)
            text = f"{head}.{digits[:6]}{rest[len(digits):]}"
        try:
            ts = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
        except (ValueError, OverflowError):
            return None
        return ts if MIN_EPOCH_SECONDS <= ts.timestamp() <= MAX_EPOCH_SECONDS + 1 else None
    if _NUMBER.match(text):
        try:
            seconds = Decimal(text)
        except InvalidOperation:
            return None
        if seconds > MILLIS_THRESHOLD:
            seconds = seconds / 1000
        if not MIN_EPOCH_SECONDS <= seconds <= MAX_EPOCH_SECONDS:
            return None
        micros = int((seconds * 1_000_000).to_integral_value(rounding="ROUND_FLOOR"))
        return _EPOCH + dt.timedelta(microseconds=micros)
    return None


def event_time_column(text):
    """Spark column: the UTC timestamp a string column names, or null (ANSI-safe).

    Built from ``try_cast`` and guarded branches only, so Spark's ANSI mode never
    fails a job on a bad value.
    """
    from pyspark.sql import functions as F

    number = text.try_cast("decimal(38,9)")
    seconds = F.when(number > MILLIS_THRESHOLD, number / 1000).otherwise(number)
    micros = F.floor(seconds * 1_000_000).try_cast("bigint")
    epoch = F.when(seconds.between(MIN_EPOCH_SECONDS, MAX_EPOCH_SECONDS), F.timestamp_micros(micros))
    iso = text.try_cast("timestamp")
    iso_in_range = iso.between(F.timestamp_micros(F.lit(MIN_EPOCH_SECONDS * 10**6)),
                               F.timestamp_micros(F.lit((MAX_EPOCH_SECONDS + 1) * 10**6 - 1)))
    return (
        F.when(text.rlike(ISO_PATTERN), F.when(iso_in_range, iso))
        .when(text.rlike(NUMBER_PATTERN), epoch)
    )
