"""Failures kept in the lake, and the alerts that announce them.

Every failed run leaves one JSON record at ``rejected/system/jobs/<job>/<run_id>.json``
(beside ``rejected/system/ingest/``: what the lake could not do is kept in the lake, where
whoever reads the lake finds it, not only in one Dagster instance's event log): the job, the
failed steps with their error class and message, the partitions (from the run's tags), the
ERROR-severity checks that failed, when it ended and a link to the run in the UI. A record is
a function of the run alone, so recording a run twice writes the same file.

Who records:

* :data:`lake_run_failure_sensor` (``@run_failure_sensor``) for the runs the code location
  launches (the UI, schedules, sensors, backfills); it also sends one alert per failed run,
  naming the checks that failed in it (a blocking ERROR check fails its run, so this is where
  most check failures are announced);
* :data:`lake_check_failure_sensor` (on successful runs) alerts once per ERROR-severity check
  that failed without failing its run (a non-blocking check, such as a gold table's freshness
  check: a stale table is announced this way, the partition its metadata names in the message);
* :func:`record_outcome`, which ``lake run`` calls for its in-process runs: the daemon's run
  status sensors never see those, since they belong to no code location.

An alert is sent once per (run, event), whichever of those gets there first: a marker
created exclusively in the lake (``rejected/system/jobs/<job>/_alerts/<run_id>/<event>``,
hidden from listings) claims it, so a sensor evaluated again, or ``lake run`` and a sensor
seeing the same run, never announce it twice.

Settings (read when definitions are built or a run is recorded): ``LAKE_UI_URL`` (the UI's
address, for links; ``http://127.0.0.1:3000`` by default), ``LAKE_ALERT_WEBHOOK_URL`` and
``LAKE_ALERT_SNS_TOPIC_ARN`` (see :mod:`lake_assets.alerts`).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    run_failure_sensor,
    run_status_sensor,
)

from lake_assets.alerts import Alerter, redact, strip_userinfo
from lake_assets.resources import LakeResource

LOG = logging.getLogger("lake_assets.failures")

UI_URL_ENV = "LAKE_UI_URL"
DEFAULT_UI_URL = "http://127.0.0.1:3000"
#: Where failure records live in the lake: ``<JOBS_PREFIX>/<job>/<run_id>.json``.
JOBS_PREFIX = "rejected/system/jobs"

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

#: A message kept in a record: long enough for an error's explanation, short of a stack trace.
MAX_MESSAGE = 2000


def ui_url() -> str:
    """LAKE_UI_URL without credentials (a link in a chat channel must not carry a password)."""
    return strip_userinfo((os.environ.get(UI_URL_ENV) or DEFAULT_UI_URL).rstrip("/"))


def run_link(run_id: str, base: str | None = None) -> str:
    return f"{strip_userinfo(base.rstrip('/')) if base else ui_url()}/runs/{run_id}"


def run_partitions(tags: Mapping[str, str]) -> dict[str, str] | None:
    """``{"start", "end"}`` of the partitions a run built, from its tags (one partition: start == end);
    None for an unpartitioned run."""
    if tags.get(RANGE_START_TAG) and tags.get(RANGE_END_TAG):
        return {"start": tags[RANGE_START_TAG], "end": tags[RANGE_END_TAG]}
    if tags.get(PARTITION_TAG):
        return {"start": tags[PARTITION_TAG], "end": tags[PARTITION_TAG]}
    return None


def partitions_text(partitions: Mapping[str, str] | None) -> str | None:
    if not partitions:
        return None
    start, end = partitions["start"], partitions["end"]
    return start if start == end else f"{start}..{end}"


def record_path(job: str, run_id: str) -> str:
    """The record's lake path. Dagster's implicit job (``__ASSET_JOB``, what the UI's
    "Materialize" runs) loses its leading underscores: a ``_`` folder is hidden from listings."""
    return f"{JOBS_PREFIX}/{job.strip('_.') or 'job'}/{run_id}.json"


def _error(err) -> dict[str, str]:
    """The class and message of what went wrong: Dagster wraps user code's exceptions
    (``DagsterExecutionStepExecutionError`` caused by a ``ValueError``), and the cause is
    what a reader needs."""
    while err is not None and err.cause is not None and err.cls_name.startswith("Dagster") \
            and err.cls_name not in ("DagsterAssetCheckFailedError",):
        err = err.cause
    if err is None:
        return {"error_class": "unknown", "message": ""}
    message = err.message.strip()
    # SerializableErrorInfo's message starts with "module.Class: "; the class is its own field.
    head, sep, rest = message.partition(": ")
    if sep and head.split(".")[-1] == err.cls_name:
        message = rest.strip()
    return {"error_class": err.cls_name, "message": redact(message[:MAX_MESSAGE])}


def _trigger(tags: Mapping[str, str]) -> str:
    for tag, label in (("lake/trigger", ""), ("dagster/schedule_name", "schedule "),
                       ("dagster/sensor_name", "sensor "), ("dagster/backfill", "backfill ")):
        if tags.get(tag):
            return f"{label}{tags[tag]}"
    return "manual"


def _check_name(evaluation) -> str:
    return f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"


def _is_error_failure(evaluation) -> bool:
    return not evaluation.passed and getattr(evaluation.severity, "value", str(evaluation.severity)) == "ERROR"


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def failure_record(run: DagsterRun, events: Iterable[DagsterEvent], *, failure_event: DagsterEvent | None = None,
                   time: float | None = None, ui: str | None = None) -> dict[str, Any]:
    """The record of a failed run, from its events (any of: step failures, asset check
    evaluations, planned materializations; others are ignored) and the run failure event.

    ``time`` is when the run ended (a timestamp): the run's own, never "now", so the same run
    gives the same record however often it is recorded.
    """
    events = list(events)
    assets_by_step: dict[str, set[str]] = {}
    failed_steps, failed_checks = [], []
    for e in events:
        if e.event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED and e.step_key:
            assets_by_step.setdefault(e.step_key, set()).add(e.event_specific_data.asset_key.to_user_string())
        elif e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION and _is_error_failure(e.event_specific_data):
            failed_checks.append(_check_name(e.event_specific_data))
    for e in events:
        if e.event_type == DagsterEventType.STEP_FAILURE:
            failed_steps.append({"step": e.step_key, "assets": sorted(assets_by_step.get(e.step_key, ())),
                                 **_error(e.event_specific_data.error)})
    run_error = None
    if failure_event is not None and not failed_steps:
        # No step failed: the run itself did (its process died, a resource failed to start).
        data = failure_event.event_specific_data
        run_error = _error(data.error) if getattr(data, "error", None) else {
            "error_class": "unknown", "message": redact((failure_event.message or "")[:MAX_MESSAGE])}
    return {
        "job": run.job_name,
        "run_id": run.run_id,
        "status": run.status.value if run.status else None,
        "time": _iso(time),
        "partitions": run_partitions(run.tags),
        "failed_steps": sorted(failed_steps, key=lambda s: s["step"] or ""),
        "failed_checks": sorted(set(failed_checks)),
        "run_error": run_error,
        "failure_reason": run.tags.get("dagster/failure_reason"),
        "trigger": _trigger(run.tags),
        "link": run_link(run.run_id, ui),
    }


def record_failure(storage, record: Mapping[str, Any]) -> str:
    """Write ``record`` at ``rejected/system/jobs/<job>/<run_id>.json`` (atomically: readers
    see the whole record or none) and return that path. The same record writes the same bytes."""
    path = record_path(record["job"], record["run_id"])
    storage.write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


# -- reading a run from the instance ------------------------------------------------------
_RUN_EVENTS = {DagsterEventType.STEP_FAILURE, DagsterEventType.ASSET_CHECK_EVALUATION,
               DagsterEventType.ASSET_MATERIALIZATION_PLANNED, DagsterEventType.RUN_FAILURE}


def run_events(instance: DagsterInstance, run_id: str, types: set[DagsterEventType] | None = None) -> list:
    """The run's event log entries of ``types`` (by default what a record reads)."""
    return list(instance.all_logs(run_id, of_type=types or _RUN_EVENTS))


def run_end_time(instance: DagsterInstance, run_id: str, entries: Sequence = ()) -> float | None:
    """When the run ended: its record's end time, else its last event's."""
    record = instance.get_run_record_by_id(run_id)
    if record is not None and record.end_time:
        return record.end_time
    return max((e.timestamp for e in entries), default=None)


def record_from_instance(instance: DagsterInstance, run: DagsterRun, *, ui: str | None = None,
                         step_failures: Sequence[DagsterEvent] | None = None,
                         failure_event: DagsterEvent | None = None) -> dict[str, Any]:
    """:func:`failure_record` of a finished run, read from the instance (a sensor passes the step
    failures and failure event its context already has)."""
    entries = run_events(instance, run.run_id)
    events = [e.dagster_event for e in entries if e.dagster_event is not None]
    if step_failures is not None:
        events = [e for e in events if e.event_type != DagsterEventType.STEP_FAILURE] + list(step_failures)
    if failure_event is None:
        failure_event = next((e for e in events if e.event_type == DagsterEventType.RUN_FAILURE), None)
    return failure_record(run, events, failure_event=failure_event,
                          time=run_end_time(instance, run.run_id, entries), ui=ui)


def failed_check_evaluations(instance: DagsterInstance, run_id: str) -> list:
    """The ERROR-severity check evaluations that failed in a run, one per check (the last one)."""
    out = {}
    for entry in run_events(instance, run_id, {DagsterEventType.ASSET_CHECK_EVALUATION}):
        ev = entry.dagster_event.event_specific_data
        if _is_error_failure(ev):
            out[_check_name(ev)] = ev
    return [out[k] for k in sorted(out)]


# -- alerts, once per (run, event) ------------------------------------------------------------
def _marker(job: str, run_id: str, event_key: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", event_key)
    return f"{JOBS_PREFIX}/{job.strip('_.') or 'job'}/_alerts/{run_id}/{safe}"


def alert_once(storage, alerter: Alerter, event: Mapping[str, Any], *, event_key: str,
               log: logging.Logger | None = None) -> bool:
    """Send ``event`` unless this (run, ``event_key``) was already announced; True when sent here.

    The marker is claimed before sending (``create_exclusive``: one winner however many
    evaluate the run at once) and given back when no destination took the message, so a later
    attempt (``lake run`` recording the run again) may deliver it.
    """
    log = log or LOG
    if not alerter.channels:
        alerter.send(event, log=log)  # logged only
        return False
    marker = _marker(event["job"], event["run_id"], event_key)
    if not storage.create_exclusive(marker, b"{}"):
        log.info(f"alert for run {event['run_id']} ({event_key}) already sent")
        return False
    delivered = alerter.send(event, log=log)
    if not delivered:
        storage.delete(marker)
        return False
    storage.write_text(marker, json.dumps({"delivered": delivered}))
    return True


def run_failure_event(record: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The alert of a failed run: its job, the assets of its failed steps, its partitions, the
    ERROR checks that failed in it, each failed step's error, the record and the link."""
    details = [f"{s['step']}: {s['error_class']}: {s['message']}" for s in record["failed_steps"]]
    if record.get("run_error"):
        details.append(f"run: {record['run_error']['error_class']}: {record['run_error']['message']}")
    assets = sorted({a for s in record["failed_steps"] for a in s["assets"]})
    return {"kind": "run_failure", "job": record["job"], "run_id": record["run_id"], "assets": assets,
            "partitions": partitions_text(record["partitions"]), "checks": record["failed_checks"],
            "details": details, "record": path, "link": record["link"]}


#: Metadata naming the partition a check judged, when its run has none (a freshness check judges
#: yesterday's partition from an unpartitioned run).
PARTITION_METADATA = ("partition", "expected_partition")
#: At most this many of a check's metadata entries are quoted in its alert.
MAX_METADATA = 6


def _metadata_lines(metadata: Mapping[str, Any] | None) -> list[str]:
    """A check's simple metadata (text, numbers) as ``key: value`` lines: what it found, in its words."""
    lines = []
    for key, value in sorted((metadata or {}).items()):
        value = getattr(value, "value", value)
        if isinstance(value, (str, int, float, bool)) and value != "":
            lines.append(f"{key}: {value}")
    return lines[:MAX_METADATA]


def check_failure_event(run: DagsterRun, evaluation, ui: str | None = None) -> dict[str, Any]:
    """The alert of one ERROR-severity check that failed in a run that did not fail: its asset, check,
    partition (the run's, else the evaluation's, else what its metadata names), description and
    simple metadata, and the link to the run."""
    metadata = getattr(evaluation, "metadata", None) or {}
    partitions = partitions_text(run_partitions(run.tags)) or getattr(evaluation, "partition", None)
    for key in PARTITION_METADATA:
        if not partitions and key in metadata:
            partitions = str(getattr(metadata[key], "value", metadata[key])) or None
    details = [evaluation.description] if getattr(evaluation, "description", None) else []
    details += _metadata_lines(metadata)
    return {"kind": "check_failure", "job": run.job_name, "run_id": run.run_id,
            "assets": [evaluation.asset_key.to_user_string()],
            "partitions": partitions, "checks": [_check_name(evaluation)],
            "details": [redact(d) for d in details], "link": run_link(run.run_id, ui)}


def handle_failed_run(storage, instance: DagsterInstance, run: DagsterRun, alerter: Alerter | None, *,
                      step_failures: Sequence[DagsterEvent] | None = None,
                      failure_event: DagsterEvent | None = None,
                      log: logging.Logger | None = None) -> str:
    """Record a failed run in the lake and announce it once; returns the record's path."""
    record = record_from_instance(instance, run, step_failures=step_failures, failure_event=failure_event)
    path = record_failure(storage, record)
    (log or LOG).info(f"run {run.run_id} of {run.job_name} failed: recorded at {path}")
    if alerter is not None:
        alert_once(storage, alerter, run_failure_event(record, path), event_key="run_failure", log=log)
    return path


def handle_successful_run(storage, instance: DagsterInstance, run: DagsterRun, alerter: Alerter | None, *,
                          log: logging.Logger | None = None) -> list[str]:
    """Announce, once each, the ERROR-severity checks that failed in a run that succeeded;
    returns their ``asset:check`` names."""
    failed = failed_check_evaluations(instance, run.run_id)
    for ev in failed:
        if alerter is not None:
            alert_once(storage, alerter, check_failure_event(run, ev), event_key=f"check-{_check_name(ev)}", log=log)
    return [_check_name(ev) for ev in failed]


def record_outcome(storage, instance: DagsterInstance, run_id: str, alerter: Alerter | None = None,
                   log: logging.Logger | None = None) -> str | None:
    """What ``lake run`` calls for each of its in-process runs (the daemon's sensors never see
    them): a failed run is recorded and announced as the sensors would, a successful one has
    its failed ERROR-severity checks announced. Returns the record's path for a failed run.

    ``alerter`` defaults to the environment's (:meth:`Alerter.from_env`).
    """
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise ValueError(f"no run {run_id} in this Dagster instance")
    alerter = alerter if alerter is not None else Alerter.from_env()
    if run.status == DagsterRunStatus.FAILURE:
        return handle_failed_run(storage, instance, run, alerter, log=log)
    if run.status == DagsterRunStatus.SUCCESS:
        handle_successful_run(storage, instance, run, alerter, log=log)
    return None


# -- the sensors -------------------------------------------------------------------------------
@run_failure_sensor(
    name="lake_run_failure_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Records every failed run of this code location at rejected/system/jobs/<job>/<run_id>.json "
                "and sends one alert (webhook, SNS) naming its job, partitions, failed steps and checks.",
)
def lake_run_failure_sensor(context: RunFailureSensorContext, lake: LakeResource, alerter: Alerter):
    handle_failed_run(lake.storage, context.instance, context.dagster_run, alerter,
                      step_failures=context.get_step_failure_events(), failure_event=context.failure_event,
                      log=context.log)


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    name="lake_check_failure_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Sends one alert per ERROR-severity asset check that failed in a run that succeeded "
                "(a non-blocking check); a blocking one fails its run and is in the run's alert.",
)
def lake_check_failure_sensor(context: RunStatusSensorContext, lake: LakeResource, alerter: Alerter):
    handle_successful_run(lake.storage, context.instance, context.dagster_run, alerter, log=context.log)


class Alerting(NamedTuple):
    """What :func:`build_alerting` gives the code location: its sensors and its ``alerter`` resource
    (the sensors also use the ``lake`` resource the code location already has)."""

    sensors: list
    resources: dict


def build_alerting(env: Mapping[str, str] | None = None) -> Alerting:
    """The failure sensors and the ``alerter`` resource, its destinations given as ``EnvVar``\\ s
    when ``env`` (by default the environment) sets them."""
    return Alerting(sensors=[lake_run_failure_sensor, lake_check_failure_sensor],
                    resources={"alerter": Alerter.from_env(env)})
