"""Ingestion as Dagster: the job that ingests raw files and the sensor that starts it.

A domain supplies its formats (``raw/<format>/``), how to date a record, and the
asset whose partitions ingestion fills; the ingestion run records each date it
touched as a materialization of that asset's partition, which is what the
downstream assets' automation conditions react to (late data included).
"""

import datetime as dt
import functools
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from dagster import (
    AssetKey,
    AssetMaterialization,
    Config,
    DefaultSensorStatus,
    Failure,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    job,
    op,
    sensor,
)

from lake_assets.ingest.formats import RawFormat, ReadLimits, Record
from lake_assets.ingest.router import IngestResult, Zones, ingest_file, reject_file_whole, ts_token
from lake_assets.lake import LakeFile, LakeStorage
from lake_assets.lake import errors
from lake_assets.lake.claims import Claim
from lake_assets.lake.errors import transient_retry_policy

#: Failure reasons (:func:`lake_assets.lake.errors.kind`) a retry of the step cannot fix.
PERMANENT_REASONS = errors.PERMANENT
from lake_assets.lake.layout import join
from lake_assets.resources import LakeResource


@dataclass(frozen=True)
class LandingSpec:
    """One domain's landing zone: its formats and how its records are dated."""

    name: str  # e.g. "logs"
    formats: Mapping[str, RawFormat]  # raw/<key>/ -> format
    #: (record, ingest time, lake start date) -> partition date or None (ingest date);
    #: or one such function per format name.
    date_of: "Callable[[Record, dt.datetime, dt.date], dt.date | None] | Mapping[str, Callable]"
    #: The asset whose partitions ingestion fills; or one per format name.
    validated_asset: "AssetKey | Mapping[str, AssetKey]"
    zones: Zones = Zones()
    #: Also take (and reject whole, as unknown) files in raw/ folders no landing zone claims.
    claims_unknown: bool = False

    @property
    def folders(self) -> tuple[str, ...]:
        """The raw/ folders this zone reads (``raw/<format>``)."""
        return tuple(join(self.zones.raw, f) for f in self.formats)

    def dating(self, fmt: str, start: dt.date):
        date_of = self.date_of[fmt] if isinstance(self.date_of, Mapping) else self.date_of
        return functools.partial(date_of, start=start)

    def asset_for(self, fmt: str) -> AssetKey:
        return self.validated_asset[fmt] if isinstance(self.validated_asset, Mapping) else self.validated_asset

    @property
    def validated_assets(self) -> set[AssetKey]:
        if isinstance(self.validated_asset, Mapping):
            return set(self.validated_asset.values())
        return {self.validated_asset}

    def raw_files(self, storage: LakeStorage, claimed: Sequence[str]) -> list[LakeFile]:
        """The files waiting in this zone's raw folders (and in unclaimed ones, for a catch-all zone).

        Several domains share ``raw/``; each reads its own folders. ``claimed`` are the
        folders every landing zone of the code location reads (told when definitions are
        built, :attr:`LakeResource.claimed_raw_folders`): a catch-all zone leaves them be.
        """
        mine = tuple(p + "/" for p in self.folders)
        claimed = mine + tuple(p.rstrip("/") + "/" for p in claimed)
        return [f for f in storage.list_files(self.zones.raw)
                if f.path.startswith(mine) or (self.claims_unknown and not f.path.startswith(claimed))]


class IngestConfig(Config):
    """Which raw files to ingest (lake-relative paths); empty means all of ``raw/``."""

    paths: list[str] = []


#: Files are ingested in parallel processes once a batch holds at least this many bytes
#: (below it, starting the processes costs more than it saves).
PARALLEL_MIN_BYTES = 64 * 1024 * 1024
#: How many bytes of records a byte of gzip holds, about (log text compresses 5 to 8 times).
GZIP_WEIGHT = 6


def ingest_paths(spec: LandingSpec, storage: LakeStorage, paths: list[str], *,
                 run_id: str, start: dt.date, limits: ReadLimits = ReadLimits(),
                 log: Callable[[str], None] = lambda _: None, workers: int | None = None,
                 parallel_min_bytes: int = PARALLEL_MIN_BYTES) -> list[IngestResult]:
    """Ingest each file whole; unexpected errors stop nothing else and are reported at the end.

    Ingestion is Python (streaming parse to date each record), so a large batch is
    spread over ``workers`` cores (default: ``LAKE_INGEST_WORKERS`` or one per core):
    this process and ``workers - 1`` worker processes. Each file is still ingested
    whole by one process.
    """
    known, results = [], []
    for path in paths:
        rel_to_raw = path[len(spec.zones.raw) + 1:] if path.startswith(spec.zones.raw + "/") else path
        fmt = spec.formats.get(rel_to_raw.split("/", 1)[0])
        if fmt is None or "/" not in rel_to_raw:
            results.append(_reject_unknown(spec, storage, path, run_id))
        else:
            known.append((path, fmt))
    workers = workers or int(os.environ.get("LAKE_INGEST_WORKERS") or os.cpu_count() or 1)
    workers = min(workers, len(known))
    tasks = [(storage, path, fmt, spec.dating(fmt.name, start), run_id, spec.zones, limits) for path, fmt in known]
    sizes = storage.sizes([p for p, _ in known]) if workers > 1 else []
    if workers > 1 and sum(sizes) >= parallel_min_bytes:
        # Largest first (a gzip file weighs what it inflates to, roughly), so no worker is left
        # with a big file at the end while the others idle; results keep the paths' order.
        weight = [n * (GZIP_WEIGHT if p.endswith(".gz") else 1) for n, (p, _) in zip(sizes, known)]
        order = sorted(range(len(tasks)), key=lambda i: -weight[i])
        done = _ingest_parallel(tasks, order, workers, lambda n, result: _log_result(log, n, len(known), result))
        results += [done[i] for i in range(len(tasks))]
    else:
        for i, task in enumerate(tasks, 1):
            results.append(_ingest_one(task))
            _log_result(log, i, len(known), results[-1])
    return results


def _ingest_parallel(tasks: list, order: list[int], workers: int,
                     report: Callable[[int, IngestResult], None]) -> dict[int, IngestResult]:
    """Ingest ``tasks`` (in ``order``) on ``workers`` cores: this process and ``workers - 1`` others.

    This process takes files too, so it starts at once, while the others start
    up (a spawned process imports the package first, most of a second). Each of
    ``workers`` threads takes the next file from one shared queue, ingests it
    here (the first thread) or hands it to its worker process and waits; the
    waiting threads hold no CPU. ``report(n, result)`` runs in the calling
    thread as results arrive (the op's log is written from there).
    """
    import collections
    import multiprocessing
    import queue
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    pending = collections.deque(order)
    finished: queue.SimpleQueue = queue.SimpleQueue()

    def take(run: Callable) -> None:
        try:
            while True:
                try:
                    i = pending.popleft()
                except IndexError:
                    return
                finished.put((i, run(tasks[i])))
        except BaseException as exc:  # noqa: BLE001  (raised in the calling thread, below)
            finished.put((None, exc))

    done: dict[int, IngestResult] = {}
    # spawn, not fork: the parent may hold a JVM (Spark) whose threads must not be forked.
    with ProcessPoolExecutor(workers - 1, mp_context=multiprocessing.get_context("spawn")) as pool, \
            ThreadPoolExecutor(workers) as threads:
        def elsewhere(task) -> IngestResult:
            return pool.submit(_ingest_one, task).result()

        for run in [_ingest_one] + [elsewhere] * (workers - 1):
            threads.submit(take, run)
        try:
            while len(done) < len(tasks):
                i, result = finished.get()
                if i is None:  # e.g. a worker process died
                    raise result
                done[i] = result
                report(len(done), result)
        except BaseException:
            # A failure or an interrupt (the run is stopped): no new file is started, the files
            # being ingested finish (each is ingested whole or not at all), the error surfaces.
            pending.clear()
            raise
    return done


def claimed(storage: LakeStorage, path: str, fmt_name: str, run_id: str,
            ingest: Callable[[], IngestResult]) -> IngestResult:
    """Run ``ingest`` of a raw file under this run's claim on it (see :mod:`lake_assets.lake.claims`).

    However many runs race for a file (two ``lake run``, the landing sensor's run and
    a CLI run), one ingests it: the others get ``skipped`` (claimed by a live run, or
    already gone from ``raw/`` when their turn came), which is not a failure. A run
    killed while holding the claim leaves it to expire; the next run then takes it.
    """
    claim = Claim(storage, path, run_id=run_id)
    holder = claim.acquire()
    if holder is not None:
        return IngestResult(path, fmt_name, "skipped", reason="claimed", detail=f"being ingested by {holder}")
    try:
        if not storage.exists(path):
            return IngestResult(path, fmt_name, "skipped", reason="gone",
                                detail="no longer in raw/: another run ingested it")
        return ingest()
    except Exception as exc:  # storage or network trouble: the raw file stays for a retry
        return IngestResult(path, fmt_name, "failed", reason=errors.kind(exc) or type(exc).__name__,
                            detail=str(exc))
    finally:
        claim.release()


def _ingest_one(task) -> IngestResult:
    storage, path, fmt, date_of, run_id, zones, limits = task
    return claimed(storage, path, fmt.name, run_id,
                   lambda: ingest_file(storage, path, fmt, date_of, run_id=run_id, zones=zones, limits=limits))


#: Up to this many files a batch logs a line per ingested file; beyond it, one line per tenth of the batch.
PER_FILE_LOG_MAX = 50


def _log_result(log: Callable[[str], None], i: int, n: int, result: IngestResult) -> None:
    """A file's line in the run's log: always when it was not ingested (rejected, skipped, failed), for each
    ingested file of a batch of up to :data:`PER_FILE_LOG_MAX`, and as progress (every tenth) beyond.

    Why: every log line is an event Dagster stores (about 7 ms each in its stock SQLite storage, 3 in
    lake's, :mod:`lake_assets.instance`), and a daily batch of 520 small files spent 3.7 s of a 75 s
    `lake run` logging them one by one; which files a run took stays in its config (``paths``) and each
    date's materialization counts them."""
    if result.status == "ingested" and n > PER_FILE_LOG_MAX and i != n and i % -(-n // 10):
        return
    log(f"[{i}/{n}] {result.source}: {result.status}"
        + (f" ({result.reason}: {result.detail})" if result.reason else f", {result.records} records"))


def _reject_unknown(spec: LandingSpec, storage: LakeStorage, path: str, run_id: str) -> IngestResult:
    """A file outside every known format folder: kept whole with its reason, never guessed at."""
    detail = f"not under raw/<format>/ for one of {sorted(spec.formats)}"

    def reject() -> IngestResult:
        written = reject_file_whole(storage, path, spec.zones.rejected_dir("unknown"),
                                    token=ts_token(dt.datetime.now(dt.timezone.utc)), run_id=run_id,
                                    reason="unknown_format", detail=detail)
        storage.delete(path)
        return IngestResult(path, "unknown", "rejected", reason="unknown_format", detail=detail, written=written)

    return claimed(storage, path, "unknown", run_id, reject)


def build_ingest_job(spec: LandingSpec, start: dt.date, retry_delay_seconds: float = 1.0) -> JobDefinition:
    """The ingestion job of one landing zone (the seed's Lambda); a transient failure is retried after
    ``retry_delay_seconds`` (``LakeSettings.retry_delay_seconds``), then 3x and 7x it."""

    @op(name=f"ingest_{spec.name}", description=f"Ingest raw {spec.name} files into validated/",
        retry_policy=transient_retry_policy(retry_delay_seconds))
    def _ingest(context: OpExecutionContext, config: IngestConfig, lake: LakeResource) -> dict:
        storage = lake.storage
        paths = config.paths or [f.path for f in spec.raw_files(storage, lake.claimed_raw_folders)]
        results = ingest_paths(spec, storage, paths, run_id=context.run.run_id, start=start, log=context.log.info)
        per_date: dict[tuple[AssetKey, str], dict[str, int]] = defaultdict(lambda: {"records": 0, "files": 0})
        for r in results:
            if r.status != "ingested":
                continue
            for day, n in r.records_by_date.items():
                per_date[(spec.asset_for(r.format), day)]["records"] += n
                per_date[(spec.asset_for(r.format), day)]["files"] += 1
        for key, day in sorted(per_date, key=lambda k: (k[0].to_user_string(), k[1])):
            context.log_event(AssetMaterialization(
                asset_key=key, partition=day,
                metadata={"records": per_date[(key, day)]["records"], "files": per_date[(key, day)]["files"],
                          "ingest_run_id": context.run.run_id},
            ))
        rejected = [r for r in results if r.status == "rejected"]
        for r in rejected:
            context.log.warning(f"rejected whole: {r.source} ({r.reason}: {r.detail})")
        failed = [r for r in results if r.status == "failed"]
        skipped = [r for r in results if r.status == "skipped"]
        ingested = [r for r in results if r.status == "ingested"]
        for r in skipped:
            context.log.info(f"skipped {r.source}: {r.detail}")
        context.log.info(f"ingested {len(ingested)} file(s), rejected {len(rejected)}, skipped {len(skipped)} "
                         f"(another run has them), touched {len({d for _, d in per_date})} date(s)")
        if failed:
            # Say where each file is: a file another run moved on meanwhile is not waiting in raw/.
            waiting = [r for r in failed if storage.exists(r.source)]
            raise Failure(
                description=f"{len(failed)} file(s) could not be ingested: {len(waiting)} stay in raw/ for a retry"
                + (f", {len(failed) - len(waiting)} left raw/ meanwhile" if len(waiting) < len(failed) else ""),
                metadata={"failed": MetadataValue.json({r.source: r.detail for r in failed})},
                # Retried (the step is idempotent) unless no retry can help: credentials, no bucket.
                allow_retries=not all(r.reason in PERMANENT_REASONS for r in failed),
            )
        return {"ingested": len(ingested), "rejected": len(rejected), "skipped": [r.source for r in skipped]}

    @job(name=f"ingest_{spec.name}_job", tags={"lake/domain": spec.name},
         description=f"Ingest new raw {spec.name} files: route by event date, archive, reject.")
    def _job():
        _ingest()

    return _job


@dataclass
class RequestLedger:
    """A landing sensor's memory: what it asked to process and when, kept in its cursor.

    One logic for every landing sensor (raw files here, the orders' landing sets):
    an item is due when it was never requested, or was requested ``retry_after``
    seconds ago and still waits (its run failed); items no longer waiting are
    forgotten, so the cursor only holds what is still there. A retried item's run key
    gets a ``#retry@<time>`` suffix, so Dagster does not deduplicate the new request.
    """

    requested: dict[str, float]
    extra: dict

    @classmethod
    def load(cls, cursor: str | None) -> "RequestLedger":
        data = json.loads(cursor) if cursor else {}
        return cls(requested=dict(data.pop("requested", {})), extra=data)

    def due(self, waiting: list[str], now: float, retry_after: float) -> list[str]:
        """The waiting items to request now, in the order given; forgets items no longer waiting."""
        present = set(waiting)
        self.requested = {k: t for k, t in self.requested.items() if k in present}
        return [k for k in waiting if k not in self.requested or now - self.requested[k] >= retry_after]

    def run_key(self, base: str, items: list[str], now: float) -> str:
        """``base`` for a first request; with a retry suffix when any of ``items`` was requested before."""
        return base + (f"#retry@{int(now)}" if any(k in self.requested for k in items) else "")

    def mark(self, items: list[str], now: float) -> None:
        self.requested.update({k: now for k in items})

    def dump(self, **extra) -> str:
        return json.dumps({**self.extra, **extra, "requested": self.requested})


def build_landing_sensor(spec: LandingSpec, ingest_job: JobDefinition, *, max_files_per_run: int = 50,
                         minimum_interval_seconds: int = 30, retry_after_seconds: int = 900):
    """Start an ingestion run for each new file in ``raw/`` (the seed's S3 event + Lambda).

    The cursor (a :class:`RequestLedger`) remembers the files already requested
    (``path@mtime:size``) that are still waiting in ``raw/``, and the newest
    modification time seen. Unlike a bare ``since_last_modified`` watermark, a file
    that lands with an old mtime (``mv``, ``cp -p``, ``rsync -t``) is not skipped; a
    file still waiting ``retry_after_seconds`` after its request (its run failed) is
    requested again. The same code path serves S3 and a local folder.
    """

    @sensor(name=f"{spec.name}_landing_sensor", job=ingest_job,
            minimum_interval_seconds=minimum_interval_seconds,
            default_status=DefaultSensorStatus.RUNNING,
            description=f"Watches raw/ for new {spec.name} files and starts their ingestion.")
    def _sensor(context: SensorEvaluationContext, lake: LakeResource):
        ledger = RequestLedger.load(context.cursor)
        files = oldest_first(spec.raw_files(lake.storage, lake.claimed_raw_folders))
        now = time.time()
        fresh = ledger.due(list(files), now, retry_after_seconds)
        if not fresh:
            context.update_cursor(ledger.dump())
            return SkipReason("no new files in raw/")
        requests = []
        for i in range(0, len(fresh), max_files_per_run):
            batch = fresh[i:i + max_files_per_run]
            requests.append(RunRequest(
                run_key=ledger.run_key(";".join(batch), batch, now),
                run_config={"ops": {f"ingest_{spec.name}": {"config": {"paths": [files[k].path for k in batch]}}}},
                tags={"lake/files": str(len(batch))},
            ))
        ledger.mark(fresh, now)
        newest = max([f.mtime_ns for f in files.values()] + [ledger.extra.get("last_modified_ns", 0)])
        return SensorResult(run_requests=requests, cursor=ledger.dump(last_modified_ns=newest))

    return _sensor


def file_key(f: LakeFile) -> str:
    """A file's identity for the sensor: a file rewritten in place is a new file."""
    return f"{f.path}@{f.mtime_ns}:{f.size}"


def oldest_first(files: list[LakeFile]) -> dict[str, LakeFile]:
    """Files by their sensor key (:func:`file_key`), oldest first (then by path)."""
    return {file_key(f): f for f in sorted(files, key=lambda f: (f.mtime_ns, f.path))}
