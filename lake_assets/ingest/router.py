"""Ingest one raw file: read it whole, route its records by event date, archive, delete.

The order of writes is what keeps a crash harmless:

1. the file is streamed once, its bytes hashed and its records spooled to local
   files per partition date (bounded memory); a file that cannot be read to its
   end goes whole to ``rejected/system/<stage>/`` and none of its records count;
2. a manifest keyed by the content hash fixes the ingestion's identity (run id,
   ingest time, archive name) *before* anything is published, so a retry or a
   redelivery of the same bytes reuses it and overwrites the same objects;
3. validated files (``<hash>.<ext>`` per date), the archive copy and the final
   manifest are written, each atomically;
4. the raw file is deleted last.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import IO, Callable

from lake_assets.ingest.formats import RawFormat, ReadLimits, Record, UnreadableFile
from lake_assets.lake import LakeStorage, partition_path
from lake_assets.lake.layout import join

#: Picks the partition date of a record, or None when it has none the lake can hold.
DateOf = Callable[[Record, dt.datetime], "dt.date | None"]


@dataclass(frozen=True)
class Zones:
    """Where one domain's ingestion reads and writes, relative to the lake root."""

    raw: str = "raw"
    validated: str = "validated"
    archive: str = "archive/validated"
    rejected_files: str = "rejected/system/ingest"
    manifests: str = "validated/_manifests"


@dataclass
class IngestResult:
    """What ingesting one file did."""

    source: str
    format: str
    status: str  # "ingested" | "rejected"
    records_by_date: dict[str, int] = field(default_factory=dict)
    reason: str | None = None
    detail: str | None = None
    sha256: str | None = None
    written: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(self.records_by_date.values())


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ts_token(ts: dt.datetime) -> str:
    """A compact, sortable UTC timestamp for object names."""
    return ts.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]", "_", name) or "file"


class _HashingReader(io.RawIOBase):
    """Hashes bytes as they are read, so the file is read only once."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def validated_file(zones: Zones, fmt: RawFormat, day: dt.date, sha: str) -> str:
    """The deterministic validated path of one file's records for one date."""
    return join(zones.validated, fmt.name, partition_path("ymd", day), f"{sha}{fmt.extension}")


def manifest_path(zones: Zones, fmt: RawFormat, sha: str) -> str:
    return join(zones.manifests, fmt.name, f"{sha}.json")


def read_manifest(storage: LakeStorage, rel: str) -> dict | None:
    try:
        return json.loads(storage.read_text(rel))
    except FileNotFoundError:
        return None


def ingest_file(
    storage: LakeStorage,
    source: str,
    fmt: RawFormat,
    date_of: DateOf,
    *,
    run_id: str,
    zones: Zones = Zones(),
    limits: ReadLimits = ReadLimits(),
    now: dt.datetime | None = None,
    spool_dir: str | None = None,
) -> IngestResult:
    """Ingest ``source`` (a path under the raw zone) whole or not at all."""
    now = now or _utc_now()
    name = source.rsplit("/", 1)[-1]
    result = IngestResult(source=source, format=fmt.name, status="ingested")
    work = tempfile.mkdtemp(prefix="lake-ingest-", dir=spool_dir)
    try:
        sinks: dict[dt.date, object] = {}
        counts: dict[dt.date, int] = {}
        with storage.open_read(source) as raw:
            hashing = _HashingReader(raw)
            try:
                for record in fmt.read(hashing, limits):
                    day = date_of(record, now) or now.date()
                    sink = sinks.get(day)
                    if sink is None:
                        sink = sinks[day] = fmt.sink(os.path.join(work, f"{day.isoformat()}{fmt.extension}"))
                    sink.write(record)
                    counts[day] = counts.get(day, 0) + 1
                hashing.drain()
            except UnreadableFile as exc:
                result.status, result.reason, result.detail = "rejected", exc.reason, exc.detail
                hashing.drain()
            finally:
                for sink in sinks.values():
                    sink.close()
        sha = result.sha256 = hashing.sha.hexdigest()

        # The identity of this ingestion, fixed before anything is published.
        mpath = manifest_path(zones, fmt, sha)
        manifest = read_manifest(storage, mpath) or {}
        if manifest.get("source_name") != name:
            manifest = {}
        ingest_ts = manifest.get("ingest_ts") or now.isoformat()
        ingest_run_id = manifest.get("ingest_run_id") or run_id
        token = ts_token(dt.datetime.fromisoformat(ingest_ts))
        manifest.update(
            source_name=name, source_path=source, format=fmt.name, sha256=sha, size=hashing.size,
            ingest_ts=ingest_ts, ingest_run_id=ingest_run_id, status="started",
        )
        storage.write_text(mpath, json.dumps(manifest, indent=1, sort_keys=True))

        if result.status == "rejected":
            target = join(zones.rejected_files, fmt.name, f"{_safe_name(name)}_{token}_{ingest_run_id}")
            storage.copy(source, target)
            storage.write_text(
                target + ".reason.json",
                json.dumps({"source": source, "reason": result.reason, "detail": result.detail,
                            "format": fmt.name, "sha256": sha, "ingest_ts": ingest_ts,
                            "ingest_run_id": ingest_run_id}, indent=1, sort_keys=True),
            )
            result.written = [target, target + ".reason.json"]
            manifest.update(status="rejected", reason=result.reason, detail=result.detail,
                            rejected_path=target, records_by_date={})
        else:
            for day in sorted(sinks):
                rel = validated_file(zones, fmt, day, sha)
                storage.put_file(os.path.join(work, f"{day.isoformat()}{fmt.extension}"), rel, move=True)
                result.written.append(rel)
            result.records_by_date = {d.isoformat(): counts[d] for d in sorted(counts)}
            archive = join(zones.archive, fmt.name, f"{_safe_name(name)}_{token}_{ingest_run_id}")
            storage.copy(source, archive)
            result.written.append(archive)
            manifest.update(status="ingested", archive_path=archive,
                            records_by_date=result.records_by_date,
                            validated_files=[p for p in result.written if p != archive])
        storage.write_text(mpath, json.dumps(manifest, indent=1, sort_keys=True))
        storage.delete(source)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
