"""Streaming readers and writers per raw format.

A reader turns a byte stream into :class:`Record` objects one at a time, so
memory stays bounded whatever the file's size; it raises :class:`UnreadableFile`
with a specific reason when the file cannot be read to its end (corrupt gzip,
inflation beyond the cap, text that is not UTF-8, XML that is not well-formed or
declares a DTD or entities). A writer stores the records of one partition back
in the same format, one record per line, so the processed stage can read them
as text and keep each record's original text.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import json
import zlib
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterator
from xml.etree import ElementTree

import msgspec


class UnreadableFile(Exception):
    """A file that cannot be read to its end; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ExactParserNeeded(Exception):
    """The fast JSON parser met a value it cannot hold (an integer beyond 64 bits): read again."""


@dataclass(frozen=True)
class ReadLimits:
    """Caps that keep a hostile or broken file from exhausting memory or disk."""

    max_record_bytes: int = 16 * 1024 * 1024
    max_inflated_bytes: int = 8 * 1024**3
    max_inflation_ratio: int = 200
    #: Below this much output, the ratio is not enforced (small files compress oddly).
    ratio_floor_bytes: int = 64 * 1024 * 1024
    #: ijson backend for JSON arrays: the C one, or the exact pure-Python one (big integers).
    json_backend: str = "yajl2_c"


@dataclass
class Record:
    """One record: its text as stored in ``validated/`` and its parsed value.

    ``value`` is a dict for a well-formed record and None for a malformed one
    (which is still kept and routed, to be rejected with its reason later).
    A format with :attr:`RawFormat.value_fields` may hold only those keys in it:
    ingestion reads a record's value to date it, and passes its text through.
    """

    text: str
    value: dict[str, Any] | None
    #: Position in its file (0-based), where the reader knows it.
    position: int = 0


class _CountingReader(io.RawIOBase):
    """Counts bytes read from the compressed source (for the inflation ratio)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        return n


class _CappedInflater(io.RawIOBase):
    """A gzip stream that refuses to inflate past the configured caps."""

    def __init__(self, raw: IO[bytes], limits: ReadLimits) -> None:
        self.source = _CountingReader(raw)
        self.gz = gzip.GzipFile(fileobj=io.BufferedReader(self.source, 1 << 20), mode="rb")
        self.limits = limits
        self.inflated = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            data = self.gz.read(len(b))
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableFile("corrupt_gzip", str(exc) or type(exc).__name__) from exc
        n = len(data)
        b[:n] = data
        self.inflated += n
        lim = self.limits
        if self.inflated > lim.max_inflated_bytes:
            raise UnreadableFile(
                "gzip_inflation_limit", f"inflates past {lim.max_inflated_bytes} bytes"
            )
        if (
            self.inflated > lim.ratio_floor_bytes
            and self.inflated > lim.max_inflation_ratio * max(self.source.count, 1)
        ):
            raise UnreadableFile(
                "gzip_inflation_limit",
                f"inflation ratio above {lim.max_inflation_ratio}:1 (a gzip bomb?)",
            )
        return n


def _lines(stream: IO[bytes], limits: ReadLimits) -> Iterator[tuple[int, str]]:
    """Non-blank lines as strict UTF-8 text, each at most ``max_record_bytes``."""
    buffered = stream if isinstance(stream, io.BufferedIOBase) else io.BufferedReader(stream, 1 << 20)
    number = 0
    while True:
        line = buffered.readline(limits.max_record_bytes + 2)
        if not line:
            return
        number += 1
        if len(line.rstrip(b"\r\n")) > limits.max_record_bytes:
            raise UnreadableFile("record_too_large", f"line {number} exceeds {limits.max_record_bytes} bytes")
        try:
            text = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise UnreadableFile("not_utf8", f"line {number}: {exc}") from exc
        if text.strip():
            yield number, text


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


#: The reference decoder: what it refuses is a malformed record (``json.loads`` with an option
#: builds a new decoder per call, hence one for every record).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
#: The fast one (C, no intermediate objects), for the great majority of records it accepts.
_FAST_DECODER = msgspec.json.Decoder()


def _exact_json_object(text: str) -> dict | None:
    try:
        value = _DECODER.decode(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def object_decoder(fields: tuple[str, ...] | None = None) -> Callable[[str], dict | None]:
    """A function from a record's text to the JSON object it holds, or None when it is not exactly one.

    The standard library's decoder defines what is malformed (NaN and Infinity
    refused, big integers exact, the last of duplicate keys wins). msgspec's
    decoder gives the same value for every text it accepts (float rounding,
    escapes and integers included) at a fraction of the cost; a text it refuses
    (malformed, not an object, a number beyond a double, a lone surrogate,
    nesting near the recursion limit) goes to the standard library, which
    decides as it always did. With ``fields``, only those keys are built (the
    whole text is still validated): what dating needs, when the rest of the
    record is passed through as text. Built once per file: the per-record call
    is one C decode and, with ``fields``, one small dict.
    """
    if fields is None:
        fast = _FAST_DECODER.decode

        def whole(text: str) -> dict | None:
            try:
                value = fast(text)
            except (msgspec.DecodeError, RecursionError):
                return _exact_json_object(text)
            return value if isinstance(value, dict) else None

        return whole

    # Struct fields f0, f1, ... renamed to the keys (a key need not be an identifier); absent: UNSET.
    struct = msgspec.defstruct("Fields", [(f"f{i}", object, msgspec.UNSET) for i in range(len(fields))],
                               rename={f"f{i}": name for i, name in enumerate(fields)})
    fast_fields = msgspec.json.Decoder(struct).decode
    astuple, unset = msgspec.structs.astuple, msgspec.UNSET

    def picked(text: str) -> dict | None:
        try:
            values = astuple(fast_fields(text))
        except (msgspec.DecodeError, RecursionError):
            value = _exact_json_object(text)
            return None if value is None else {name: value[name] for name in fields if name in value}
        return {name: v for name, v in zip(fields, values) if v is not unset}

    return picked


def read_ndjson(stream: IO[bytes], limits: ReadLimits, fields: tuple[str, ...] | None = None) -> Iterator[Record]:
    """One JSON object per line; a line that is not one is kept as a malformed record."""
    to_object = object_decoder(fields)
    for _, text in _lines(stream, limits):
        yield Record(text, to_object(text))


#: An array element's text in ``validated/``: compact JSON, non-ASCII kept (``json.dumps`` with these
#: options builds a new encoder per call, hence one for every element).
_ELEMENT_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def read_json_gzip(stream: IO[bytes], limits: ReadLimits, fields: tuple[str, ...] | None = None) -> Iterator[Record]:
    """gzip holding NDJSON or one JSON array, inflated under the caps.

    An array's elements are parsed whole (their text is written back from the
    value), so ``fields`` only narrows the NDJSON case.
    """
    import ijson

    inflater = _CappedInflater(stream, limits)
    inflated = io.BufferedReader(inflater, 1 << 20)
    head = inflated.peek(4096)[:4096].lstrip()
    while not head:
        # Leading whitespace longer than the peek window: skip it and look again.
        if not inflated.read(4096):
            if inflater.source.count == 0:
                raise UnreadableFile("corrupt_gzip", "empty file (a gzip truncated to nothing)")
            return
        head = inflated.peek(4096)[:4096].lstrip()
    if not head.startswith(b"["):
        yield from read_ndjson(inflated, limits, fields)
        return
    with json_errors(limits):
        backend = ijson.get_backend(limits.json_backend)
        for value in backend.items(inflated, "item", use_float=True):
            yield Record(_ELEMENT_ENCODER.encode(value), value if isinstance(value, dict) else None)


@contextlib.contextmanager
def json_errors(limits: ReadLimits) -> Iterator[None]:
    """Streamed JSON's errors as reasons: an integer the fast parser cannot hold asks for the exact one."""
    import ijson

    try:
        yield
    except ijson.JSONError as exc:
        message = str(exc)
        if "overflow" in message.lower() and limits.json_backend != "python":
            raise ExactParserNeeded(message) from exc
        if "utf8" in message.lower() or "utf-8" in message.lower():
            raise UnreadableFile("not_utf8", message) from exc
        raise UnreadableFile("malformed_json", message) from exc
    except UnicodeDecodeError as exc:
        raise UnreadableFile("not_utf8", str(exc)) from exc


#: What ElementTree's ``iterparse`` reads per step; the same steps give the same events and errors.
_XML_STEP = 16 * 1024
#: Steps of a prolog (what comes before the root element) checked on their own, at most: 1 MB,
#: held meanwhile (see :func:`_xml_events`).
_XML_PROLOG_STEPS = 64


def _xml_events(stream: IO[bytes]) -> Iterator[tuple[str, Any]]:
    """``start`` and ``end`` events of an XML stream, DTDs and entities refused, never expanded.

    defusedxml refuses them from expat's DTD and entity handlers, which only the
    pure-Python parser lets it set: reading a file with it cost a third of
    ingesting the file. Such declarations can only come before the root element.
    So the defused parser reads the file's first steps until the root element
    starts: if it starts before any error or refusal, the C parser (the same
    expat, no DTD left to meet) reads the file from its beginning; otherwise (a
    DOCTYPE, an error, a prolog past ``_XML_PROLOG_STEPS``) the defused
    parser does, as it always did. Either reads in ``iterparse``'s steps (it is
    ``iterparse``'s loop), so events and errors come in the same order.
    """
    from defusedxml.ElementTree import DefusedXMLParser

    def defused() -> DefusedXMLParser:
        return DefusedXMLParser(target=ElementTree.TreeBuilder(), forbid_dtd=True, forbid_entities=True,
                                forbid_external=True)

    head: list[bytes] = []
    checker = ElementTree.XMLPullParser(events=("start",), _parser=defused())
    plain = False
    while not plain and len(head) < _XML_PROLOG_STEPS:
        data = stream.read(_XML_STEP)
        if not data:
            break
        head.append(data)
        try:
            checker.feed(data)
            plain = next(checker.read_events(), None) is not None
        except Exception:  # noqa: BLE001  (a refusal or an error: the defused parser, reading again, raises it)
            break
    parser = ElementTree.XMLPullParser(events=("start", "end"), _parser=None if plain else defused())
    for data in itertools.chain(head, iter(lambda: stream.read(_XML_STEP), b"")):
        parser.feed(data)
        yield from parser.read_events()
    parser.close()
    yield from parser.read_events()


def _element_text(elem) -> str:
    """``tostring(elem, encoding="unicode")``, at a third of its cost for the elements records are.

    ``tostring`` first walks the element for namespace prefixes, then writes it
    through a stream. For an element without namespaces (no ``{`` in any tag or
    attribute name), its output is what :func:`_write_plain` writes, with
    ElementTree's own escaping; any other element goes to ``tostring``.
    """
    parts: list[str] = []
    return "".join(parts) if _write_plain(elem, parts.append) else ElementTree.tostring(elem, encoding="unicode")


#: ElementTree's own escaping (private; what ``tostring`` calls), so both writers escape alike.
_escape_cdata, _escape_attrib = ElementTree._escape_cdata, ElementTree._escape_attrib


def _write_plain(elem, write: Callable[[str], Any]) -> bool:
    """ElementTree's ``_serialize_xml`` for an element without namespaces; False (stop) on a namespace."""
    tag = elem.tag
    if not isinstance(tag, str) or "{" in tag:
        return False
    write("<" + tag)
    for key, value in elem.items():
        if not isinstance(key, str) or "{" in key or not isinstance(value, str):
            return False
        write(f' {key}="{_escape_attrib(value)}"')
    text = elem.text
    if text or len(elem):
        write(">")
        if text:
            write(_escape_cdata(text))
        for child in elem:
            if not _write_plain(child, write):
                return False
        write("</" + tag + ">")
    else:
        write(" />")
    if elem.tail:
        write(_escape_cdata(elem.tail))
    return True


def read_xml_errors(stream: IO[bytes], limits: ReadLimits, root_tag: str = "errors",
                    record_tag: str = "error") -> Iterator[Record]:
    """``<errors>`` of ``<error>`` elements, streamed; DTDs and entities refused, never expanded."""
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException

    depth = 0
    root = None
    try:
        for event, elem in _xml_events(stream):
            if event == "start":
                depth += 1
                if depth == 1:
                    if elem.tag != root_tag:
                        raise UnreadableFile("unexpected_root", f"root element <{elem.tag}>, expected <{root_tag}>")
                    root = elem
                continue
            depth -= 1
            if depth != 1:
                continue
            elem.tail = None
            text = _element_text(elem).replace("\r", "&#13;").replace("\n", "&#10;")
            if len(text) > limits.max_record_bytes:
                raise UnreadableFile("record_too_large", f"<{elem.tag}> exceeds {limits.max_record_bytes} bytes")
            value = None
            if elem.tag == record_tag:
                value = {child.tag: (child.text or "") for child in elem}
            yield Record(text, value)
            root.remove(elem)
    except DefusedXmlException as exc:
        raise UnreadableFile("xml_forbidden_construct", f"{type(exc).__name__}: {exc}") from exc
    except ParseError as exc:
        raise UnreadableFile("malformed_xml", str(exc)) from exc
    if root is None:
        raise UnreadableFile("malformed_xml", "no root element")


#: Write buffer of each partition's sink (and of its gzip stream).
SINK_BUFFER_BYTES = 128 * 1024


class LineSink:
    """Writes the records of one partition, one per line, in a raw format's framing."""

    def __init__(self, path: str, *, compress: bool = False, header: str = "", footer: str = "",
                 numbered: bool = False) -> None:
        # Records are small: buffer them so gzip compresses (and the OS writes) in blocks. One sink
        # per date a file holds, so the buffer stays modest.
        raw = open(path, "wb", buffering=SINK_BUFFER_BYTES)
        gz = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=1) if compress else None
        self._f = io.BufferedWriter(gz, SINK_BUFFER_BYTES) if gz else raw
        self._raw = raw
        self._footer = footer
        self._numbered = numbered
        self.count = 0
        if header:
            self._f.write(header.encode("utf-8"))

    def write(self, record: Record) -> None:
        if self._numbered:
            self._f.write(f"{record.position}\t{record.text}\n".encode("utf-8"))
        else:
            self._f.write((record.text + "\n").encode("utf-8"))
        self.count += 1

    def close(self) -> None:
        if self._footer:
            self._f.write(self._footer.encode("utf-8"))
        self._f.close()  # flushes into, and closes, the gzip stream or the file
        if not self._raw.closed:
            self._raw.close()


@dataclass(frozen=True)
class RawFormat:
    """A raw format: its ``raw/`` folder name, reader and how validated files are framed."""

    name: str
    read: Callable[[IO[bytes], ReadLimits], Iterator[Record]]
    extension: str
    compress: bool = False
    header: str = ""
    footer: str = ""

    #: The reader also takes the file's name (it tells formats apart by extension).
    by_name: bool = False
    #: Validated lines carry the record's position in its file (``<n>\t<text>``): delivery order.
    numbered: bool = False
    #: The keys of a record's value its domain reads (to date it), when the reader can build
    #: only those (its ``fields``): each record is still validated whole and kept as text.
    value_fields: tuple[str, ...] | None = None
    #: ``convert(local_path, limits, name, out_path) -> records``: for a format whose records carry
    #: no date of their own, the whole file is converted into one validated file (``extension``) on
    #: the ingest date instead of being read and routed record by record (no file for 0 records).
    #: Raises :class:`UnreadableFile` as a reader does. ``read`` then serves callers wanting records.
    convert: Callable[[str, ReadLimits, str, str], int] | None = None
    #: The same bytes under any name, in the same run or later, are one delivery: a file whose
    #: content was already ingested (or rejected) under another name is archived and recorded in
    #: that content's manifest, adding nothing else (see :func:`lake_assets.ingest.router.ingest_file`).
    #: Without it, the same bytes under another name are ingested again under the new name.
    content_identity: bool = False

    def records(self, stream: IO[bytes], limits: ReadLimits, name: str) -> Iterator[Record]:
        args = (stream, limits, name) if self.by_name else (stream, limits)
        return self.read(*args, fields=self.value_fields) if self.value_fields is not None else self.read(*args)

    def sink(self, path: str) -> LineSink:
        return LineSink(path, compress=self.compress, header=self.header, footer=self.footer,
                        numbered=self.numbered)


NDJSON = RawFormat("ndjson", read_ndjson, ".ndjson")
JSON_GZIP = RawFormat("json_gzip", read_json_gzip, ".json.gz", compress=True)
XML_ERRORS = RawFormat("xml_errors", read_xml_errors, ".xml", header="<errors>\n", footer="</errors>\n")
