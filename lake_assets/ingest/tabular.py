"""Readers for files of flat records in any common format, told apart by extension and content.

JSON (one array of objects, or one or more objects), NDJSON, CSV (header row,
comma), TXT (header row, ``|``), gzip of any of those, and Parquet. Each
record comes out as a dict and as JSON text (the "original record" kept with a
rejected row), with its position in the file (delivery order for
deduplication). A record that is not an object (an NDJSON line that is not
JSON, a CSV row with the wrong number of fields) is kept as a malformed record;
a file that cannot be read to its end raises :class:`UnreadableFile`.
"""
from __future__ import annotations

import base64
import codecs
import csv
import datetime as dt
import decimal
import io
import json
from typing import IO, Any, Iterator

from lake_assets.ingest.formats import (
    RawFormat,
    ReadLimits,
    Record,
    UnreadableFile,
    _CappedInflater,
    _lines,
    json_errors,
    object_decoder,
)

PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _digits_as_text(value: Any) -> Any:
    """The parsed value as its text reads back: each Decimal as the string of its digits (no re-parse)."""
    if isinstance(value, dict):
        return {k: _digits_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_digits_as_text(v) for v in value]
    return str(value) if isinstance(value, decimal.Decimal) else value


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        # A timestamp without a zone (pandas' default) is UTC, as the contracts say every date is.
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
        return aware.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def detect_format(name: str, head: bytes) -> str:
    """``json``, ``ndjson``, ``csv``, ``txt`` or ``parquet`` from the (decompressed) name and first bytes."""
    lower = name.lower()
    for ext, kind in ((".parquet", "parquet"), (".ndjson", "ndjson"), (".jsonl", "ndjson"),
                      (".json", "json"), (".csv", "csv"), (".txt", "txt"), (".tsv", "tsv")):
        if lower.endswith(ext):
            return kind
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    text = head.lstrip()
    if text[:1] in (b"[", b"{"):
        return "json"
    first = head.split(b"\n", 1)[0]
    return "txt" if first.count(b"|") > first.count(b",") else "csv"


def read_any(stream: IO[bytes], limits: ReadLimits, name: str) -> Iterator[Record]:
    """The records of one file, whatever its format (gzip by extension or magic bytes)."""
    buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream, 1 << 20)
    lower = name.lower()
    head = buffered.peek(8)[:8]
    if lower.endswith(".gz") or lower.endswith(".gzip") or head.startswith(GZIP_MAGIC):
        lower = lower.rsplit(".", 1)[0] if lower.endswith((".gz", ".gzip")) else lower
        buffered = io.BufferedReader(_CappedInflater(buffered, limits), 1 << 20)
        head = buffered.peek(4096)[:4096]
        if not head and "parquet" not in lower:
            return
    else:
        head = buffered.peek(4096)[:4096]
    kind = detect_format(lower, head)
    if kind == "parquet":
        yield from _read_parquet(buffered, limits)
    elif kind == "ndjson":
        to_object = object_decoder()
        for position, (_, text) in enumerate(_lines(buffered, limits)):
            yield Record(text, to_object(text), position)
    elif kind == "json":
        yield from _read_json(buffered, limits)
    else:
        yield from _read_delimited(buffered, limits, {"csv": ",", "txt": "|", "tsv": "\t"}[kind])


def _read_json(stream: IO[bytes], limits: ReadLimits) -> Iterator[Record]:
    """One array of records, or one or more top-level objects (a single object, or concatenated)."""
    import ijson

    head = stream.peek(4096)[:4096].lstrip()
    backend = ijson.get_backend(limits.json_backend)
    prefix = "item" if head.startswith(b"[") else ""
    # Numbers with a fraction or exponent come as Decimal, kept digit for digit (a float would round a
    # 17-digit amount and write 1e400 as Infinity); they are written as JSON strings of those digits,
    # which silver casts like any string-typed number, and the value routing dates is that same text.
    with json_errors(limits):
        for position, value in enumerate(backend.items(stream, prefix, use_float=False, multiple_values=True)):
            text = _dumps(value)
            if len(text) > limits.max_record_bytes:
                raise UnreadableFile("record_too_large", f"record {position} exceeds {limits.max_record_bytes} bytes")
            yield Record(text, _digits_as_text(value) if isinstance(value, dict) else None, position)


def _read_delimited(stream: IO[bytes], limits: ReadLimits, delimiter: str) -> Iterator[Record]:
    """A header row, then one record per row; a row of the wrong width is a malformed record."""
    csv.field_size_limit(limits.max_record_bytes)
    text = codecs.getreader("utf-8")(stream, errors="strict")
    reader = csv.reader(text, delimiter=delimiter, strict=False)
    try:
        header = None
        position = 0
        for row in reader:
            if header is None:
                if not row or not any(c.strip() for c in row):
                    continue
                header = [c.strip().lstrip("\ufeff") for c in row]
                if len(set(header)) != len(header) or not all(header):
                    raise UnreadableFile("bad_header", f"header {header!r} has blank or repeated names")
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if any("\x00" in c for c in row):
                raise UnreadableFile("binary_content", f"NUL bytes in data row {position + 1}")
            if len(row) == len(header):
                value = dict(zip(header, row))
                yield Record(_dumps(value), value, position)
            else:
                yield Record(_dumps(row), None, position)
            position += 1
    except UnicodeDecodeError as exc:
        raise UnreadableFile("not_utf8", str(exc)) from exc
    except csv.Error as exc:
        raise UnreadableFile("binary_content" if "NUL" in str(exc) else "malformed_delimited", str(exc)) from exc


def _read_parquet(stream: IO[bytes], limits: ReadLimits) -> Iterator[Record]:
    """Rows of a Parquet file (random access: read from a local file), in batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(getattr(stream, "raw", None), _CappedInflater):
        # A gzipped Parquet file: inflate to memory under the caps (Parquet needs random access).
        data = stream.read()
        source = pa.BufferReader(data)
    else:
        source = stream
    try:
        pf = pq.ParquetFile(source)
        position = 0
        for batch in pf.iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                text = _dumps(row)
                if len(text) > limits.max_record_bytes:
                    raise UnreadableFile("record_too_large", f"row {position} exceeds {limits.max_record_bytes} bytes")
                # The value is what the text says (ISO text, decimal strings): ingestion dates
                # the record from it, and the parser takes text and numbers, not datetimes.
                yield Record(text, json.loads(text), position)
                position += 1
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableFile("corrupt_parquet", str(exc) or type(exc).__name__) from exc


def tabular_format(dataset: str) -> RawFormat:
    """The raw format of a dataset folder holding any of the formats above.

    Its records are kept in ``validated/`` form as numbered NDJSON lines
    (``<position>\\t<json>``), one gzip file per source and date.
    """
    return RawFormat(dataset, read_any, ".ndjson.gz", compress=True, by_name=True, numbered=True)
