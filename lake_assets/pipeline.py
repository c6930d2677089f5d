"""Run a domain end to end through the code location's own jobs, recorded in a Dagster instance.

``run_domain`` is what ``lake run`` does: ingest everything waiting in ``raw/``
(each file under a claim, so concurrent runs never ingest one twice), then build
everything stale down to gold (:mod:`lake_assets.staleness`: what was never
built, or was built before its inputs changed, whichever run ingested them), one
run per contiguous range of dates (``BackfillPolicy.single_run()`` makes each
range one Spark job), under the domain's build claim. A domain partitioned two
ways (tpcds: ingest dates, then the months its rows bring) has a job per way,
run in order. The runs land in the instance, so ``dagster dev`` on the same
``DAGSTER_HOME`` shows them, their partitions and their checks.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from dagster import AssetKey, DagsterEventType, DagsterInstance, Definitions, DynamicPartitionsDefinition

def range_tags(start: str, end: str) -> dict[str, str]:
    """The run tags that make one run build a range of partitions (what the UI's backfills set);
    plain strings, Dagster's documented tag names, rather than an import from its internals."""
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


#: Dagster's own console logging is for the UI; the CLI prints its own progress.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class StepTiming:
    step: str
    seconds: float


@dataclass
class RunOutcome:
    job: str
    run_id: str
    success: bool
    partitions: tuple[str, str] | None = None
    failures: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    warned_checks: list[str] = field(default_factory=list)
    steps: list[StepTiming] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)  # a step per transient failure it recovered from
    #: The partitions each failed or warned check (``failed_checks``, ``warned_checks``) failed on.
    check_partitions: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class DomainRun:
    """What one ``lake run`` of a domain did."""

    domain: str
    files: int = 0
    touched: list[str] = field(default_factory=list)
    runs: list[RunOutcome] = field(default_factory=list)
    #: Raw files another run was ingesting (or had ingested) when this one came to them.
    skipped: list[str] = field(default_factory=list)
    #: Dates this run's ingestion wrote.
    touched_ingest: set[str] = field(default_factory=set)
    #: What is still stale when the run ends (:class:`~lake_assets.staleness.DomainStatus`).
    status: object = None
    #: Who held the domain's build claim when this run gave up waiting for it.
    blocked_by: str | None = None

    @property
    def stale(self) -> list:
        return list(self.status.stale) if self.status is not None else []

    @property
    def success(self) -> bool:
        return all(r.success for r in self.runs) and not self.stale

    @property
    def summary(self) -> str:
        text = (f"{self.domain}: {self.files} file(s) ingested, {len(self.touched)} partition(s) built "
                f"in {len(self.runs)} run(s)")
        if self.skipped:
            text += f"; {len(self.skipped)} file(s) skipped: another run has them"
        return text


def contiguous_ranges(keys, order: list[str]) -> list[tuple[str, str]]:
    """Group partition keys into runs of keys next to each other in ``order`` (their partitions
    definition's own: consecutive dates)."""
    index = {k: i for i, k in enumerate(order)}
    at = sorted({index[k] for k in keys if k in index})
    ranges: list[list[int]] = []
    for i in at:
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return [(order[a], order[b]) for a, b in ranges]


def run_outcome(job: str, result, partitions=None) -> RunOutcome:
    """What a finished in-process run did: success, step times, failures, retried steps, failed and
    warned checks."""
    out = RunOutcome(job=job, run_id=result.run_id, success=result.success, partitions=partitions)
    for event in result.all_events:
        etype = event.event_type
        if etype in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            data = event.event_specific_data
            duration = getattr(data, "duration_ms", None)
            if duration is not None:
                out.steps.append(StepTiming(event.step_key, duration / 1000))
            if etype == DagsterEventType.STEP_FAILURE:
                err = data.error
                out.failures.append(f"{event.step_key}: {err.message.strip() if err else 'failed'}")
        elif etype == DagsterEventType.STEP_UP_FOR_RETRY:
            out.retried.append(event.step_key)
        elif etype == DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.event_specific_data
            if not ev.passed:
                name = f"{ev.asset_key.to_user_string()}:{ev.check_name}"
                sev = getattr(ev.severity, "value", str(ev.severity))
                (out.failed_checks if sev == "ERROR" else out.warned_checks).append(name)
                if ev.partition is not None:
                    out.check_partitions.setdefault(name, []).append(ev.partition)
    return out


def _touched(result, asset_keys) -> list[str]:
    keys = set()
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization
            if mat.asset_key in asset_keys and mat.partition:
                keys.add(mat.partition)
    return sorted(keys)


def run_domain(defs: Definitions, instance: DagsterInstance, storage, *, domain: str, ingest_job: str,
               build_job: str, sources, batch_files: int = 200,
               list_raw: Callable[[], list[str]],
               progress: Callable[[str], None] = lambda _: None,
               build_wait_seconds: float | None = None) -> DomainRun:
    """Ingest all of ``raw/`` in batches, then build everything stale down to gold.

    What is built is what :func:`~lake_assets.staleness.domain_status` finds stale from
    the instance's records (never built, or built before its inputs last changed), not
    only what this run ingested: after failed, killed or concurrent runs, one more
    ``lake run`` leaves the lake as one clean run would. Builds of a domain take its
    build claim (:mod:`lake_assets.lake.claims`), so two ``lake run`` never build the
    same domain at once: the second waits (up to ``LAKE_BUILD_WAIT_SECONDS``, one hour
    by default), then builds what is still stale, usually nothing.
    """
    out = DomainRun(domain)
    paths = list_raw()
    job = defs.resolve_job_def(ingest_job)
    for i in range(0, len(paths), batch_files):
        batch = paths[i:i + batch_files]
        result = job.execute_in_process(
            run_config={**QUIET, "ops": {f"ingest_{domain}": {"config": {"paths": batch}}}},
            instance=instance, raise_on_error=False, tags={"lake/trigger": "lake run"},
        )
        out.runs.append(run_outcome(ingest_job, result))
        if result.success:
            done = result.output_for_node(f"ingest_{domain}")
            out.files += done["ingested"] + done["rejected"]
            out.skipped += done["skipped"]
        out.touched_ingest.update(_touched(result, set(sources)))
        progress(f"{domain}: ingested {min(i + batch_files, len(paths))}/{len(paths)} file(s)")

    return build_stale_domain(defs, instance, storage, out, build_job=build_job, sources=sources,
                              progress=progress, build_wait_seconds=build_wait_seconds)


def build_stale_domain(defs: Definitions, instance: DagsterInstance, storage, out: DomainRun, *, build_job: str,
                       sources, progress: Callable[[str], None] = lambda _: None,
                       build_wait_seconds: float | None = None) -> DomainRun:
    """Under the domain's build claim, build everything stale (``out.domain``'s ``build_job``), into ``out``."""
    from lake_assets.staleness import domain_status

    domain = out.domain
    with domain_build(storage, domain, progress, build_wait_seconds) as holder:
        if holder is not None:
            out.blocked_by = str(holder)
            out.status = domain_status(defs, instance, domain=domain, sources=list(sources), build_job=build_job)
        else:
            out.status = _build_stale(defs, instance, domain, build_job, sources, out, progress)
    return out


@contextmanager
def domain_build(storage, domain: str, progress: Callable[[str], None] = lambda _: None,
                 wait_seconds: float | None = None):
    """Hold ``domain``'s build claim for the block (renewed while it runs), waiting for another
    run's; yields None when held, or the holder still in the way after ``wait_seconds``
    (``LAKE_BUILD_WAIT_SECONDS``, one hour by default)."""
    import os
    import uuid

    from lake_assets.lake.claims import Claim, wait_for

    wait = wait_seconds if wait_seconds is not None else float(os.environ.get("LAKE_BUILD_WAIT_SECONDS") or 3600)
    lock = Claim(storage, f"build/{domain}", run_id=f"lake-run-{uuid.uuid4().hex[:12]}")
    holder = wait_for(lock, timeout=wait, waiting=lambda h: progress(f"{domain}: waiting for {h} to finish"))
    if holder is not None:
        yield holder
        return
    try:
        with lock.renewed():
            yield None
    finally:
        lock.release()


#: How many build passes ``lake run`` makes at most: a pass rebuilding an unpartitioned input
#: (a dimension) makes the dates an earlier range built stale, which the next pass rebuilds.
MAX_PASSES = 4


def _build_stale(defs, instance, domain, build_job, sources, out: DomainRun, progress):
    from lake_assets.staleness import build_jobs, domain_status

    jobs = build_jobs(build_job)
    status = domain_status(defs, instance, domain=domain, sources=list(sources), build_job=jobs)
    for _ in range(MAX_PASSES):
        if not status.stale:
            break
        failed = False
        for job in jobs:
            # Each job in turn, with what is stale once the jobs before it have run (a job building
            # months of facts reads what the job building their dates reported).
            mine = status if len(jobs) == 1 else domain_status(defs, instance, domain=domain,
                                                               sources=list(sources), build_job=job)
            if mine.stale:
                failed = not _build_job(defs, instance, domain, job, mine, out, progress)
            if failed:
                break
        status = domain_status(defs, instance, domain=domain, sources=list(sources), build_job=jobs)
        if failed:
            break  # what failed stays stale and is reported; a next pass would fail the same way
    return status


def _build_job(defs, instance, domain, build_job, status, out: DomainRun, progress) -> bool:
    """Build ``status``'s stale asset partitions with ``build_job``: one run per range of keys; True
    when every run succeeded."""
    from lake_assets.partitions import ordered_keys

    build = defs.resolve_job_def(build_job)
    keys = _whole_assets_defs(defs, {AssetKey.from_user_string(s.asset) for s in status.stale})
    stale: dict[AssetKey, set[str]] = {}
    for s in status.stale:
        if s.partition is not None:
            stale.setdefault(AssetKey.from_user_string(s.asset), set()).add(s.partition)
    out.touched = sorted(set(out.touched) | set(status.partitions))
    partitioned = [k for k in keys if not _unpartitioned(defs, k)]
    whole = [k for k in keys if _unpartitioned(defs, k)]
    batches: list[tuple[tuple[str, str] | None, list]] = []
    if partitioned:
        pdef = defs.resolve_assets_def(partitioned[0]).partitions_def
        order = ordered_keys(pdef, instance)
        if isinstance(pdef, DynamicPartitionsDefinition):
            # Keys the data brings (months): one run over the span of every stale key, in the keys'
            # order. Each asset rewrites only the keys whose inputs changed since it built them (a
            # month between two changed ones keeps its files, and says so), so scattered months cost
            # one run, one Spark job per asset, not a run each.
            every = sorted(set().union(*stale.values()), key=order.index) if stale else []
            batches = [((every[0], every[-1]), partitioned + whole)] if every else []
        else:
            # Dates: a range's run rebuilds every stale asset over it (a neighbouring date costs little
            # and keeps it one run) and the whole tables the dates read.
            batches = [(span, partitioned + whole)
                       for span in contiguous_ranges(set().union(*stale.values()) if stale else (), order)]
    if not batches:  # only unpartitioned assets are stale
        batches = [(None, whole)]
    ok = True
    # An asset rebuilt on demand (a trained model) reads every date: built once, with the last run.
    on_demand = {k for k in keys if _on_demand(defs, k)}
    for i, (span, selection) in enumerate(batches):
        tags = {**(range_tags(*span) if span else {}), "lake/trigger": "lake run"}
        if span:
            n = len(contiguous_keys(span, order))
            progress(f"{domain}: building {span[0]}..{span[1]} ({n} partition(s)) in one run")
        else:
            progress(f"{domain}: building {', '.join(sorted(k.to_user_string() for k in selection))}")
        if i < len(batches) - 1:
            selection = [k for k in selection if k not in on_demand]
        result = build.execute_in_process(run_config=QUIET, instance=instance, raise_on_error=False,
                                          tags=tags, asset_selection=sorted(selection, key=str))
        out.runs.append(run_outcome(build_job, result, span))
        ok = ok and result.success
    return ok


def contiguous_keys(span: tuple[str, str], order: list[str]) -> list[str]:
    """The keys of ``order`` from ``span[0]`` through ``span[1]``."""
    return order[order.index(span[0]):order.index(span[1]) + 1]


def _on_demand(defs, key) -> bool:
    from lake_assets.staleness import ON_DEMAND, REBUILD

    return (defs.resolve_assets_def(key).metadata_by_key.get(key) or {}).get(REBUILD) == ON_DEMAND


def _unpartitioned(defs, key) -> bool:
    return defs.resolve_assets_def(key).partitions_def is None


def _whole_assets_defs(defs, keys) -> list:
    """``keys`` with every other output of the multi-assets they belong to (built together)."""
    out = set()
    for k in keys:
        out |= set(defs.resolve_assets_def(k).keys)
    return list(out)


def run_landing_domain(defs: Definitions, instance: DagsterInstance, storage, landing, *,
                       progress: Callable[[str], None] = lambda _: None,
                       build_job: str | tuple[str, ...] = "") -> DomainRun:
    """``lake run`` of a domain fed through a landing zone (:class:`~lake_assets.ingest.jobs.LandingSpec`):
    its jobs are ``ingest_<name>_job`` and ``<name>_pipeline_job`` by the house's naming (``build_job``:
    the domain's build jobs when it has several)."""
    claimed = defs.resources["lake"].claimed_raw_folders
    return run_domain(defs, instance, storage, domain=landing.name, ingest_job=f"ingest_{landing.name}_job",
                      build_job=build_job or f"{landing.name}_pipeline_job", sources=sorted(landing.validated_assets),
                      list_raw=lambda: [f.path for f in landing.raw_files(storage, claimed)],
                      progress=progress)
