"""Run a domain end to end through the code location's own jobs, recorded in a Dagster instance.

``run_domain`` is what ``lake run`` does: ingest everything waiting in ``raw/``,
then build every partition ingestion touched down to gold, one run per
contiguous range of dates (``BackfillPolicy.single_run()`` makes each range one
Spark job). The runs land in the instance, so ``dagster dev`` on the same
``DAGSTER_HOME`` shows them, their partitions and their checks.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

from dagster import DagsterEventType, DagsterInstance, Definitions

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


@dataclass
class DomainRun:
    """What one ``lake run`` of a domain did."""

    domain: str
    files: int = 0
    touched: list[str] = field(default_factory=list)
    runs: list[RunOutcome] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(r.success for r in self.runs)

    @property
    def summary(self) -> str:
        return (f"{self.domain}: {self.files} file(s) ingested, {len(self.touched)} partition(s) built "
                f"in {len(self.runs)} run(s)")


def contiguous_ranges(keys: list[str]) -> list[tuple[str, str]]:
    """Group daily partition keys into runs of consecutive dates."""
    days = sorted({dt.date.fromisoformat(k) for k in keys})
    ranges: list[tuple[dt.date, dt.date]] = []
    for day in days:
        if ranges and day - ranges[-1][1] == dt.timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return [(a.isoformat(), b.isoformat()) for a, b in ranges]


def run_outcome(job: str, result, partitions=None) -> RunOutcome:
    """What a finished in-process run did: success, step times, failures, failed and warned checks."""
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
        elif etype == DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.event_specific_data
            if not ev.passed:
                name = f"{ev.asset_key.to_user_string()}:{ev.check_name}"
                sev = getattr(ev.severity, "value", str(ev.severity))
                (out.failed_checks if sev == "ERROR" else out.warned_checks).append(name)
    return out


def _touched(result, asset_keys) -> list[str]:
    keys = set()
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization
            if mat.asset_key in asset_keys and mat.partition:
                keys.add(mat.partition)
    return sorted(keys)


def run_domain(defs: Definitions, instance: DagsterInstance, *, domain: str, ingest_job: str,
               build_job: str, validated_assets, batch_files: int = 200,
               list_raw: Callable[[], list[str]],
               progress: Callable[[str], None] = lambda _: None,
               extra_dates: list[str] | None = None,
               widen: Callable[[list[str]], list[str]] | None = None) -> DomainRun:
    """Ingest all of ``raw/`` in batches, then build each touched range of dates to gold.

    ``widen`` adds the dates a domain must rebuild along with the touched ones (commerce: the
    neighbours whose deduplication winners a new record may change).
    """
    out = DomainRun(domain)
    paths = list_raw()
    out.files = len(paths)
    touched: set[str] = set(extra_dates or [])
    job = defs.resolve_job_def(ingest_job)
    for i in range(0, len(paths), batch_files):
        batch = paths[i:i + batch_files]
        result = job.execute_in_process(
            run_config={**QUIET, "ops": {f"ingest_{domain}": {"config": {"paths": batch}}}},
            instance=instance, raise_on_error=False, tags={"lake/trigger": "lake run"},
        )
        out.runs.append(run_outcome(ingest_job, result))
        touched.update(_touched(result, set(validated_assets)))
        progress(f"{domain}: ingested {min(i + batch_files, len(paths))}/{len(paths)} file(s)")
    out.touched = sorted(widen(sorted(touched)) if widen and touched else touched)
    build = defs.resolve_job_def(build_job)
    for start, end in contiguous_ranges(out.touched):
        n = (dt.date.fromisoformat(end) - dt.date.fromisoformat(start)).days + 1
        progress(f"{domain}: building {start}..{end} ({n} partition(s)) in one run")
        result = build.execute_in_process(
            run_config=QUIET, instance=instance, raise_on_error=False,
            tags={**range_tags(start, end), "lake/trigger": "lake run"},
        )
        out.runs.append(run_outcome(build_job, result, (start, end)))
    return out


def run_landing_domain(defs: Definitions, instance: DagsterInstance, storage, landing, *,
                       progress: Callable[[str], None] = lambda _: None,
                       widen: Callable[[list[str]], list[str]] | None = None) -> DomainRun:
    """``lake run`` of a domain fed through a landing zone (:class:`~lake_assets.ingest.jobs.LandingSpec`):
    its jobs are ``ingest_<name>_job`` and ``<name>_pipeline_job``, by the house's naming."""
    claimed = defs.resources["lake"].claimed_raw_folders
    return run_domain(defs, instance, domain=landing.name, ingest_job=f"ingest_{landing.name}_job",
                      build_job=f"{landing.name}_pipeline_job", validated_assets=landing.validated_assets,
                      list_raw=lambda: [f.path for f in landing.raw_files(storage, claimed)],
                      progress=progress, widen=widen)
