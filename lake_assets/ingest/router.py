"""Ingest one raw file: read it whole, route its records by event date, archive, delete.

The order of writes is what keeps a crash harmless:

1. the file is hashed (from a local copy on S3), and a manifest keyed by that
   hash fixes the ingestion's identity (run id, ingest time, archive name)
   *before* anything is published, so a retry or a redelivery of the same
   bytes reuses it, routes the same way and overwrites the same objects;
2. the file is streamed and its records spooled to local files per partition
   date (bounded memory), or, for a format with ``convert``, converted whole
   into one local file for the ingest date; a file that cannot be read to its
   end goes whole to ``rejected/system/<stage>/`` and none of its records count;
3. validated files (``<hash>.<ext>`` per date), the archive copy and the final
   manifest are written, each atomically;
4. the raw file is deleted last.

A format with ``content_identity`` makes the same bytes under any name one
delivery. Its files are ingested one content at a time (a claim on the hash,
held from step 1 to 4, so two files of the same bytes in one run do not both
pass as the first). When the manifest says the content was ingested (or
rejected) under another name, the file is a redelivery: its record (name, time,
run, archive name) is added to the manifest, then the archive copy is written,
then the raw file is deleted; nothing else is written, so the first delivery's
identity and validated files stay as they were. A redelivery's retry finds its
record and writes the same archive object again. A delivery of the bytes under
another name that started and did not finish (a crash) is no delivery yet: the
file completes it under its own name, with the time and run fixed in step 1.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from typing import Callable

from lake_assets.ingest.formats import ExactParserNeeded, LineSink, RawFormat, ReadLimits, Record, UnreadableFile
from lake_assets.lake import LakeStorage, partition_path
from lake_assets.lake.claims import Claim, wait_for
from lake_assets.lake.layout import join

#: Picks the partition date of a record, or None when it has none the lake can hold.
DateOf = Callable[[Record, dt.datetime], "dt.date | None"]


@dataclass(frozen=True)
class Zones:
    """Where one domain's ingestion reads and writes, relative to the lake root.

    Folders are templates of the format's name (``{format}``), so a domain lays
    out its zones as its contract says (the logs lake: ``validated/<format>/``;
    the commerce lake: ``bronze/<dataset>/``, ``quarantine/<dataset>/_files/``).
    ``archive_name`` names the unchanged copy of each ingested file from its
    ``name`` (``stem`` + ``ext``), the ingestion ``token`` (UTC time) and ``run_id``.
    """

    raw: str = "raw"
    validated: str = "validated/{format}"
    archive: str = "archive/validated/{format}"
    rejected_files: str = "rejected/system/ingest/{format}"
    manifests: str = "validated/_manifests/{format}"
    archive_name: str = "{name}_{token}_{run_id}"

    def validated_dir(self, fmt: str) -> str:
        return self.validated.format(format=fmt)

    def archive_dir(self, fmt: str) -> str:
        return self.archive.format(format=fmt)

    def rejected_dir(self, fmt: str) -> str:
        return self.rejected_files.format(format=fmt)

    def manifest_dir(self, fmt: str) -> str:
        return self.manifests.format(format=fmt)

    def archive_file(self, fmt: str, name: str, token: str, run_id: str) -> str:
        safe = _safe_name(name)
        stem, dot, ext = safe.partition(".")
        return join(self.archive_dir(fmt), self.archive_name.format(
            name=safe, stem=stem, ext=dot + ext, token=token, run_id=run_id))


@dataclass
class IngestResult:
    """What ingesting one file did."""

    source: str
    format: str
    status: str  # "ingested" | "rejected" | "failed" | "skipped" (another run has the file)
    records_by_date: dict[str, int] = field(default_factory=dict)
    #: Why it failed or was rejected; for an "ingested" file, "redelivery" when its content already was
    #: (a format with ``content_identity``: archived only, no records).
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


def reject_file_whole(storage: LakeStorage, source: str, folder: str, *, token: str, run_id: str,
                      reason: str, detail: str, **info) -> list[str]:
    """Keep a file that cannot be ingested, whole, in ``folder`` with its reason beside it."""
    target = join(folder, f"{_safe_name(source.rsplit('/', 1)[-1])}_{token}_{run_id}")
    storage.copy(source, target)
    storage.write_text(target + ".reason.json", json.dumps(
        {"source": source, "reason": reason, "detail": detail, "ingest_run_id": run_id, **info},
        indent=1, sort_keys=True))
    return [target, target + ".reason.json"]


def _route(local: str, name: str, fmt: RawFormat, date_of: DateOf, ingest_ts: dt.datetime,
           limits: ReadLimits, work: str) -> tuple[dict[dt.date, str], dict[dt.date, int], int]:
    """Spool the records of a local file into one file per partition date (bounded memory).

    Also counts the undated records (no date the lake can hold): they land on the ingest date.

    A format with ``convert`` has no record to date: the whole file becomes one file on the
    ingest date (none for a file without records). Its records are not counted as undated:
    undated means a date the lake could not read, and such records are all rejected later
    (the quality checks report them apart from the reject rate), while these are the
    format's ordinary records, dated by their ingestion by design.
    """
    ingest_day = ingest_ts.date()
    if fmt.convert is not None:
        path = os.path.join(work, f"{ingest_day.isoformat()}{fmt.extension}")
        count = fmt.convert(local, limits, name, path)
        return ({ingest_day: path}, {ingest_day: count}, 0) if count else ({}, {}, 0)
    sinks: dict[dt.date, LineSink] = {}
    undated = 0
    try:
        with open(local, "rb") as raw:
            for record in fmt.records(raw, limits, name):
                day = date_of(record, ingest_ts)
                if day is None:
                    day, undated = ingest_day, undated + 1
                sink = sinks.get(day)
                if sink is None:
                    sink = sinks[day] = fmt.sink(os.path.join(work, f"{day.isoformat()}{fmt.extension}"))
                sink.write(record)
    finally:
        for sink in sinks.values():
            sink.close()
    return ({d: os.path.join(work, f"{d.isoformat()}{fmt.extension}") for d in sinks},
            {d: sink.count for d, sink in sinks.items()}, undated)


def _sha256(path: str) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def validated_file(zones: Zones, fmt: RawFormat, day: dt.date, sha: str) -> str:
    """The deterministic validated path of one file's records for one date."""
    return join(zones.validated_dir(fmt.name), partition_path("ymd", day), f"{sha}{fmt.extension}")


def manifest_path(zones: Zones, fmt: RawFormat, sha: str) -> str:
    return join(zones.manifest_dir(fmt.name), f"{sha}.json")


def read_manifest(storage: LakeStorage, rel: str) -> dict | None:
    try:
        return json.loads(storage.read_text(rel))
    except FileNotFoundError:
        return None


def _write_manifest(storage: LakeStorage, rel: str, manifest: dict) -> None:
    storage.write_text(rel, json.dumps(manifest, indent=1, sort_keys=True))


class ContentBusy(RuntimeError):
    """Another live process is ingesting the same bytes (a format with ``content_identity``) for too long."""


@contextlib.contextmanager
def _content_claim(storage: LakeStorage, zones: Zones, fmt: RawFormat, sha: str, run_id: str):
    """Hold the claim on one content (a format's hash) while ingesting it.

    Claims on raw paths keep two runs off one file; two files of the same bytes
    (in one run, ingested by parallel processes, or in two runs) need this one.
    The claimant is this process, not the run (a run's processes share its id),
    so a second process of the same run waits for the first (a lease at most; a
    holder killed on this machine is not waited for) and then finds its manifest.
    The lease is renewed while the file is ingested (a large file may take longer).
    """
    claim = Claim(storage, join("ingest-content", zones.manifest_dir(fmt.name), sha),
                  run_id=f"{run_id}/{os.getpid()}/{uuid.uuid4().hex[:8]}")
    holder = wait_for(claim, timeout=claim.lease)
    if holder is not None:
        raise ContentBusy(f"the same bytes ({sha}) are being ingested by {holder}")
    try:
        with claim.renewed():
            yield
    finally:
        claim.release()


def _redelivered(storage: LakeStorage, source: str, name: str, fmt: RawFormat, zones: Zones, mpath: str,
                 manifest: dict, run_id: str, now: dt.datetime, result: IngestResult) -> IngestResult:
    """A file whose bytes were delivered before under another name: archived, recorded, removed from raw/.

    Nothing else is written: the first delivery's identity and validated files
    stay as they were and no record counts again (``records_by_date`` is empty, so
    nothing downstream rebuilds). Its record in the manifest's ``redeliveries``
    fixes its archive name (this run's token and id) before the copy; a file of the
    same path found there (a retry after a crash, or the same name delivered yet
    again) reuses it, so the same archive object is written again.
    """
    entries = manifest.setdefault("redeliveries", [])
    entry = next((e for e in entries if e.get("source_path") == source), None)
    if entry is None:
        entry = {"source_name": name, "source_path": source, "ingest_run_id": run_id, "ingest_ts": now.isoformat(),
                 "archive_path": zones.archive_file(fmt.name, name, ts_token(now), run_id)}
        entries.append(entry)
        _write_manifest(storage, mpath, manifest)
    storage.copy(source, entry["archive_path"])
    storage.delete(source)
    result.written = [entry["archive_path"]]
    result.reason = "redelivery"
    result.detail = (f"the same bytes as {manifest.get('source_path')} ({manifest.get('status')} by run "
                     f"{manifest.get('ingest_run_id')}): archived only")
    return result


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
    """Ingest ``source`` (a path under the raw zone) whole or not at all.

    With ``fmt.content_identity``, a file whose bytes were ingested or rejected under
    another name is a redelivery (:func:`_redelivered`): status "ingested", reason
    "redelivery", no records.
    """
    now = (now or _utc_now()).astimezone(dt.timezone.utc)
    name = source.rsplit("/", 1)[-1]
    result = IngestResult(source=source, format=fmt.name, status="ingested")
    work = tempfile.mkdtemp(prefix="lake-ingest-", dir=spool_dir)
    try:
        # Work from a local copy: hashed first (the hash names the ingestion), then parsed.
        if storage.is_local:
            local = storage.local_path(source)
        else:
            local = os.path.join(work, "source")
            storage.download(source, local)
        sha, size = _sha256(local)
        result.sha256 = sha
        with _content_claim(storage, zones, fmt, sha, run_id) if fmt.content_identity else contextlib.nullcontext():
            return _ingest(storage, source, name, local, sha, size, fmt, date_of, run_id=run_id, zones=zones,
                           limits=limits, now=now, work=work, result=result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ingest(storage: LakeStorage, source: str, name: str, local: str, sha: str, size: int, fmt: RawFormat,
            date_of: DateOf, *, run_id: str, zones: Zones, limits: ReadLimits, now: dt.datetime, work: str,
            result: IngestResult) -> IngestResult:
    """Steps 1 (the manifest) to 4 of :func:`ingest_file`, for a hashed local copy of ``source``."""
    # The identity of this ingestion, fixed before anything is published: a retry or a
    # redelivery of the same bytes reuses it, so it routes and names everything the same.
    mpath = manifest_path(zones, fmt, sha)
    manifest = read_manifest(storage, mpath) or {}
    if manifest.get("source_name") != name:
        if not fmt.content_identity:
            manifest = {}  # the same bytes under another name: another delivery
        elif manifest.get("status") in ("ingested", "rejected"):
            return _redelivered(storage, source, name, fmt, zones, mpath, manifest, run_id, now, result)
        # else (content identity) a delivery of these bytes under another name started and did not
        # finish: this file completes it, under its own name, at the time and by the run fixed before
        # anything was published (so it routes to, and overwrites, what that attempt published).
    previous_files = set(manifest.get("validated_files", []))
    ingest_ts = dt.datetime.fromisoformat(manifest.get("ingest_ts") or now.isoformat())
    ingest_run_id = manifest.get("ingest_run_id") or run_id
    token = ts_token(ingest_ts)
    manifest.update(
        source_name=name, source_path=source, format=fmt.name, sha256=sha, size=size,
        ingest_ts=ingest_ts.isoformat(), ingest_run_id=ingest_run_id, status="started",
    )
    _write_manifest(storage, mpath, manifest)

    try:
        try:
            sinks, counts, undated = _route(local, name, fmt, date_of, ingest_ts, limits, work)
        except ExactParserNeeded:
            # A value the fast parser cannot hold: start over with the exact one.
            sinks, counts, undated = _route(local, name, fmt, date_of, ingest_ts,
                                            replace(limits, json_backend="python"), work)
    except UnreadableFile as exc:
        sinks, counts, undated = {}, {}, 0
        result.status, result.reason, result.detail = "rejected", exc.reason, exc.detail

    if result.status == "rejected":
        result.written = reject_file_whole(
            storage, source, zones.rejected_dir(fmt.name), token=token, run_id=ingest_run_id,
            reason=result.reason, detail=result.detail, format=fmt.name, sha256=sha,
            ingest_ts=ingest_ts.isoformat())
        target = result.written[0]
        manifest.update(status="rejected", reason=result.reason, detail=result.detail,
                        rejected_path=target, records_by_date={})
    else:
        for day in sorted(sinks):
            rel = validated_file(zones, fmt, day, sha)
            storage.put_file(sinks[day], rel, move=True)
            result.written.append(rel)
        result.records_by_date = {d.isoformat(): counts[d] for d in sorted(counts)}
        archive = zones.archive_file(fmt.name, name, token, ingest_run_id)
        storage.copy(source, archive)
        result.written.append(archive)
        manifest.update(status="ingested", archive_path=archive,
                        records_by_date=result.records_by_date,
                        # Of those, records with no date the lake can hold (routed to the ingest date).
                        undated_by_date={ingest_ts.date().isoformat(): undated} if undated else {},
                        validated_files=[p for p in result.written if p != archive])
    # A file an earlier attempt published but this one did not (it can only differ if the
    # routing rules changed in between) must not be counted twice.
    for stale in previous_files - set(result.written):
        storage.delete(stale)
    _write_manifest(storage, mpath, manifest)
    storage.delete(source)
    return result
