"""The dsdgen raw format for the shared ingestion: a streaming line reader (contract §1, §2).

Ingestion reads a file to its end before anything is published: a file that
cannot be (a corrupt or truncated gzip, bytes that are not UTF-8, a line past
the size cap) raises :class:`~lake_assets.ingest.formats.UnreadableFile` and is
quarantined whole; otherwise every line becomes a record with its 0-based
``position`` (the contract's 1-based ``line`` is ``position + 1``), passed
through as text (bronze's Spark parse types it). Unlike the JSON formats, a blank line is a record too: the contract
counts every raw line in bronze or quarantine, and a blank one is a
``wrong_field_count`` line, not nothing.

TODO(ingest): this belongs in ``lake_assets/ingest/formats.py`` beside the other
readers (it uses that module's gzip caps); it lives here only while that module
has another helper's uncommitted edits.
"""
from __future__ import annotations

import io
from typing import IO, Iterator

from lake_assets.ingest.formats import ReadLimits, Record, UnreadableFile, _CappedInflater


def read_dsdgen(stream: IO[bytes], limits: ReadLimits, name: str) -> Iterator[Record]:
    """The lines of a dsdgen ``.dat`` (or ``.dat.gz``, by name) file as records; ``position`` is 0-based, as
    every reader's is (the contract's 1-based ``line`` is ``position + 1``, see ``bronze.lines_from_validated``)."""
    source = _CappedInflater(stream, limits) if name.endswith(".gz") else stream
    buffered = io.BufferedReader(source, 1 << 20) if not isinstance(source, io.BufferedIOBase) else source
    number = 0
    while True:
        raw = buffered.readline(limits.max_record_bytes + 2)
        if not raw:
            return
        number += 1
        body = raw[:-1] if raw.endswith(b"\n") else raw
        if len(body) > limits.max_record_bytes:
            raise UnreadableFile("record_too_large", f"line {number} exceeds {limits.max_record_bytes} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnreadableFile("not_utf8", f"line {number}: {exc}") from exc
        # dsdgen ends lines with '\n'; a file written on Windows may add '\r', which is no field's.
        yield Record(text[:-1] if text.endswith("\r") else text, None, number - 1)
