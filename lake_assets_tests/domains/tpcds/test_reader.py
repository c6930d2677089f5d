"""The dsdgen reader for ingestion: every line a numbered record, unreadable files refused whole (no Spark)."""
from __future__ import annotations

import gzip
import io

import pytest

from lake_assets.domains.tpcds.reader import read_dsdgen
from lake_assets.ingest.formats import ReadLimits, UnreadableFile


def _read(data: bytes, name: str = "t.dat", limits: ReadLimits = ReadLimits()):
    return [(r.position, r.text) for r in read_dsdgen(io.BytesIO(data), limits, name)]


def test_every_line_is_a_record_numbered_from_one():
    data = b"1|a|\n\n2| b |\r\n3|c|"  # a blank line, a Windows line end, no newline at the end
    assert _read(data) == [(0, "1|a|"), (1, ""), (2, "2| b |"), (3, "3|c|")]  # 0-based positions
    assert _read(gzip.compress(data), "t.dat.gz") == _read(data)
    # Two gzip members (a file appended to) are one stream.
    assert _read(gzip.compress(b"1|a|\n") + gzip.compress(b"2|b|\n"), "t.dat.gz") == [(0, "1|a|"), (1, "2|b|")]
    assert _read(b"") == []


@pytest.mark.parametrize("data, name, reason", [
    (gzip.compress(b"1|a|\n" * 1000)[:-30], "t.dat.gz", "corrupt_gzip"),  # truncated
    (b"not gzip at all\n", "t.dat.gz", "corrupt_gzip"),
    (b"1|a|\n2|\xff|\n", "t.dat", "not_utf8"),
    (b"1|" + b"x" * 100 + b"|\n", "t.dat", "record_too_large"),
])
def test_a_file_that_cannot_be_read_to_its_end_is_refused(data, name, reason):
    with pytest.raises(UnreadableFile) as err:
        _read(data, name, ReadLimits(max_record_bytes=64))
    assert err.value.reason == reason
