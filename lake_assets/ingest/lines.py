"""Line files converted whole: every line a record, read in large blocks, written as Parquet.

A format whose records carry no date of their own (dsdgen's ``.dat`` files,
contract tpcds §1–§2) need not be routed record by record: its whole file is one
validated file on the ingest date, and what ingestion must do is split it into
lines exactly and refuse it whole when it cannot be read to its end. Done a line
at a time in Python that costs microseconds per line (an SF 1 warehouse has 20 M);
here the Python work is per block of megabytes: a block ends at its last
``\\n`` (the partial line after it starts the next one), ``bytes.replace`` drops
the line ends, NumPy finds where lines end, and Arrow builds the block's strings
from those offsets without a Python object per line (and checks each is UTF-8).

Semantics (each line of the file is a record, as the contract counts them):
a blank line is a record (an empty one: bronze calls it ``wrong_field_count``);
a final line without ``\\n`` is one; a file ending in ``\\n`` has no empty line
after it; one ``\\r`` before a line's end is not the line's (a file written on
Windows). ``position`` is the 0-based line index (the contract's 1-based
``line`` is ``position + 1``).
"""
from __future__ import annotations

import contextlib
import os
from typing import IO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lake_assets.ingest.formats import RawFormat, ReadLimits, Record, UnreadableFile, _CappedInflater

#: Bytes read (inflated, for gzip) per block: one Parquet row group or so. Memory stays a few times this,
#: whatever the file's size (plus one line, at most ``ReadLimits.max_record_bytes``, carried over).
BLOCK_BYTES = 8 * 1024 * 1024

#: The validated file of a converted line file: each line's text and its 0-based index in the file.
LINES_SCHEMA = pa.schema([
    pa.field("record", pa.string(), nullable=False),
    pa.field("position", pa.int64(), nullable=False),
])


def _open(local_path: str, limits: ReadLimits, name: str) -> IO[bytes]:
    """The file's bytes: inflated under the caps when its name ends with ``.gz``."""
    raw = open(local_path, "rb", buffering=0)
    return _CappedInflater(raw, limits) if name.endswith(".gz") else raw


def _read_block(stream: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at the end of the stream."""
    data = stream.read(size)
    if not data or len(data) == size:
        return data or b""
    parts = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _too_large(line: int, limits: ReadLimits) -> UnreadableFile:
    return UnreadableFile("record_too_large", f"line {line} exceeds {limits.max_record_bytes} bytes")


def _first_bad_line(values: bytes, offsets: np.ndarray, first: int, limits: ReadLimits) -> UnreadableFile:
    """Why a block is refused, for its first line that is too long or not UTF-8 (the error path only)."""
    bounds = offsets.tolist()
    for i in range(len(bounds) - 1):
        text = values[bounds[i]:bounds[i + 1]]
        if len(text) > limits.max_record_bytes:
            return _too_large(first + i + 1, limits)
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as exc:
            return UnreadableFile("not_utf8", f"line {first + i + 1}: {exc}")
    return UnreadableFile("not_utf8", f"lines {first + 1} to {first + len(bounds) - 1}")  # not reached


def _block_strings(block: bytes, first: int, limits: ReadLimits) -> pa.StringArray:
    """The lines of ``block`` (whole lines, each ending in ``\\n``) as one Arrow string array.

    Line ends are removed with two C scans (``\\r\\n`` to ``\\n`` when the block
    holds a ``\\r`` at all, then every ``\\n``); the line ends' positions in the
    block, less the line ends before them, are the strings' offsets in what is
    left. Casting to string checks each line is UTF-8 by itself (a character
    cut by a line end is refused, though its two halves meet once the
    ``\\n`` between them is gone). ``first`` is the block's first line's index.
    """
    if b"\r" in block:
        # Non-overlapping, left to right: "a\r\r\n" keeps "a\r", one "\r" per line end at most.
        block = block.replace(b"\r\n", b"\n")
    ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
    n = len(ends)
    # The i-th line ends at ends[i] in the block, at ends[i] - i once the i line ends before it are gone.
    offsets = np.empty(n + 1, np.int32)  # a block is a few times BLOCK_BYTES, far below 2 GiB
    offsets[0] = 0
    offsets[1:] = ends - np.arange(n)
    values = block.replace(b"\n", b"")
    if n and int(np.diff(offsets).max()) > limits.max_record_bytes:
        raise _first_bad_line(values, offsets, first, limits)
    binary = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(values)])
    try:
        return binary.cast(pa.string())
    except pa.ArrowInvalid:
        raise _first_bad_line(values, offsets, first, limits) from None


def line_blocks(stream: IO[bytes], limits: ReadLimits, *, block_bytes: int = BLOCK_BYTES,
                gzip: bool = False) -> Iterator[tuple[int, pa.Array]]:
    """``(index of the first line, its block's lines as strings)`` for each block of the stream.

    A block is ``block_bytes`` read, cut after its last ``\\n``; the rest starts
    the next block. A line longer than ``max_record_bytes`` stops the read as
    soon as that is known, so memory stays bounded by the block and the cap.
    With ``gzip`` (the stream is a :class:`_CappedInflater`), a stream that holds
    no byte at all is a gzip truncated to nothing, refused as ``corrupt_gzip``.
    """
    first = 0
    carry = b""
    while data := _read_block(stream, block_bytes):
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry += data
        else:
            block = data if cut == len(data) else data[:cut]
            if carry:
                block = carry + block
            carry = data[cut:] if cut < len(data) else b""
            lines = _block_strings(block, first, limits)
            yield first, lines
            first += len(lines)
        if len(carry) > limits.max_record_bytes + 1:  # + 1: a "\r" before its end would not count
            raise _too_large(first + 1, limits)
    if carry:
        lines = _block_strings(carry + b"\n", first, limits)  # a last line without "\n" is a line
        yield first, lines
        first += len(lines)
    if gzip and first == 0 and stream.source.count == 0:
        raise UnreadableFile("corrupt_gzip", "empty file (a gzip truncated to nothing)")


def lines_to_parquet(local_path: str, limits: ReadLimits, name: str, out_path: str, *,
                     block_bytes: int = BLOCK_BYTES) -> int:
    """Convert the line file at ``local_path`` to Parquet at ``out_path``; the number of lines.

    ``name`` (the file's name in ``raw/``) says whether it is gzip (``.gz``).
    Columns: ``record`` (the line's text) and ``position`` (its 0-based index),
    Snappy, a row group per block. A file with no line (empty) writes no file
    and returns 0. A file that cannot be read to its end raises
    :class:`UnreadableFile` (``corrupt_gzip``, ``gzip_inflation_limit``,
    ``not_utf8`` and ``record_too_large`` with the line's 1-based number) and
    leaves nothing at ``out_path``.
    """
    writer = None
    count = 0
    try:
        with contextlib.closing(_open(local_path, limits, name)) as stream:
            for first, lines in line_blocks(stream, limits, block_bytes=block_bytes, gzip=name.endswith(".gz")):
                if writer is None:
                    # Lines are (nearly) all distinct: a dictionary would be built to be dropped, and min/max
                    # of whole lines tell a reader nothing. Positions keep their statistics (row group ranges).
                    writer = pq.ParquetWriter(out_path, LINES_SCHEMA, compression="snappy",
                                              use_dictionary=False, write_statistics=["position"])
                positions = pa.array(np.arange(first, first + len(lines), dtype=np.int64))
                writer.write_table(pa.Table.from_arrays([lines, positions], schema=LINES_SCHEMA),
                                   row_group_size=max(len(lines), 1))
                count += len(lines)
        if writer is not None:
            writer.close()
            writer = None
        return count
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(out_path)
        raise


def read_lines(stream: IO[bytes], limits: ReadLimits, name: str) -> Iterator[Record]:
    """The same lines as :func:`lines_to_parquet` writes, one :class:`Record` each (value None).

    What :meth:`RawFormat.records` gives for a line format, for a caller that
    wants records one by one; ingestion converts the file whole instead.
    """
    gz = name.endswith(".gz")
    source = _CappedInflater(stream, limits) if gz else stream
    for first, lines in line_blocks(source, limits, gzip=gz):
        for i, text in enumerate(lines.to_pylist()):
            yield Record(text, None, first + i)


def no_date(record: Record, ingest_ts, start=None) -> None:
    """The ``date_of`` of a landing zone whose formats are converted whole (none of its records is dated).

    A module-level function, not a lambda: ingestion hands it to its worker processes, which
    must unpickle it.
    """
    return None


def dsdgen_format(table: str) -> RawFormat:
    """The raw format of ``raw/tpcds/<table>/``: dsdgen's ``.dat`` (or ``.dat.gz``) line files.

    Converted whole (:func:`lines_to_parquet`) into one numbered ``.parquet``
    validated file per source, on the ingest date; the same bytes under any name
    are one delivery (``content_identity``, contract §1).
    """
    return RawFormat(table, read_lines, ".parquet", by_name=True, numbered=True,
                     convert=lines_to_parquet, content_identity=True)
