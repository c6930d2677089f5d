"""The metrics zone: one CSV per materialization and partition, the same numbers as Dagster metadata.

``metrics/<dataset>/<asset>/event_date=YYYY-MM-DD/<run_id>.csv`` holds one row
per metric: row counts, quarantined rows, the null rate of every column, and
the outcome of every rule and asset check. Table measures come from Parquet
footers (row counts and null counts of the file just written: no Spark job, no
data read); rule outcomes come from the reasons recorded with each quarantined
row; check outcomes are merged in by each check as it runs. Writing is a merge
by metric name published atomically, so a retried step rewrites its own rows
and keeps everyone else's.

Every domain uses this one mechanism: a materialization's numbers are put
together from :func:`files_metrics` (footers) and :func:`reject_metrics`
(quarantined rows and rule outcomes) and filed by :func:`record` (the IO
manager does it for any asset declaring ``lake/metrics_dataset``; orders'
extraction and validation, which publish without it, call the same
functions), and checks call :func:`record_check`.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lake_assets.lake import LakeStorage
from lake_assets.lake.layout import join

ZONE = "metrics"
COLUMNS = ["dataset", "asset", "event_date", "run_id", "metric", "value", "outcome", "recorded_at"]

#: Passed / failed outcomes; a plain measure (a count, a rate) has none.
PASSED, FAILED = "passed", "failed"


@dataclass(frozen=True)
class Metric:
    """One row of a metrics file: a measure, or the outcome of a rule or check with its count."""

    name: str
    value: float
    outcome: str = ""


def metrics_path(dataset: str, asset: str, partition: str | None, run_id: str) -> str:
    """Where one materialization's metrics live; unpartitioned tables file by the run's UTC date."""
    folder = f"event_date={partition}" if partition else \
        f"run_date={dt.datetime.now(dt.timezone.utc).date().isoformat()}"
    return join(ZONE, dataset, asset, folder, f"{run_id}.csv")


def write_metrics(storage: LakeStorage, *, dataset: str, asset: str, partition: str | None,
                  run_id: str, metrics: Iterable[Metric]) -> str:
    """Merge ``metrics`` into the run's CSV for this partition (same name: replaced), atomically."""
    path = metrics_path(dataset, asset, partition, run_id)
    rows: dict[str, dict[str, Any]] = {}
    try:
        for row in csv.DictReader(io.StringIO(storage.read_text(path))):
            rows[row["metric"]] = row
    except FileNotFoundError:
        pass
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    for m in metrics:
        rows[m.name] = {"dataset": dataset, "asset": asset, "event_date": partition or "",
                        "run_id": run_id, "metric": m.name, "value": _fmt(m.value),
                        "outcome": m.outcome, "recorded_at": now}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows[k] for k in sorted(rows))
    storage.write_text(path, out.getvalue())
    return path


def read_metrics(storage: LakeStorage, path: str) -> dict[str, dict[str, str]]:
    """A metrics CSV as metric name -> row."""
    return {r["metric"]: r for r in csv.DictReader(io.StringIO(storage.read_text(path)))}


def _fmt(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}"


def footer_metrics(storage: LakeStorage, path: str, prefix: str = "") -> list[Metric]:
    """Row count and the null rate of every column of one Parquet file, from its footer.

    Column statistics hold the null counts; a column written without them (Spark
    skips statistics for some nested types) is counted by reading that column alone.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with storage.open_random(path) as fh:
        pf = pq.ParquetFile(fh)
        meta = pf.metadata
        rows = meta.num_rows
        nulls: dict[str, int] = {}
        unknown: list[str] = []
        schema = pf.schema_arrow
        top_level = {i: schema.names[i] for i in range(len(schema.names))}
        # Map each leaf column chunk to its top-level column; only flat columns sum cleanly.
        leaf_top = [meta.schema.column(j).path.split(".")[0] for j in range(meta.num_columns)]
        for name in top_level.values():
            leaves = [j for j, top in enumerate(leaf_top) if top == name]
            if len(leaves) != 1 or meta.schema.column(leaves[0]).max_repetition_level > 0:
                unknown.append(name)
                continue
            total = 0
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(leaves[0]).statistics
                if stats is None or not stats.has_null_count:
                    unknown.append(name)
                    break
                total += stats.null_count
            else:
                nulls[name] = total
        if unknown and rows:
            table = pf.read(columns=unknown)
            for name in unknown:
                nulls[name] = int(pc.sum(pc.is_null(table.column(name))).as_py() or 0)
        for name in unknown:
            nulls.setdefault(name, 0)
    out = [Metric(f"{prefix}rows", rows)]
    out += [Metric(f"{prefix}null_rate.{c}", round(nulls[c] / rows, 6) if rows else 0.0) for c in schema.names]
    return out


def files_metrics(storage: LakeStorage, files: Mapping[str, str | Sequence[str]]) -> list[Metric]:
    """Rows and null rates of a partition's files, by metric prefix (``""``, or ``"access."`` for a
    subtable); several files under one prefix are summed (null rates weighted by rows)."""
    found: list[Metric] = []
    for prefix, paths in files.items():
        paths = [paths] if isinstance(paths, str) else list(paths)
        if len(paths) == 1:
            found += footer_metrics(storage, paths[0], prefix=prefix)
        else:
            merged = summarize({p: footer_metrics(storage, p, prefix=prefix) for p in paths})
            found += [Metric(f"{prefix}rows", merged.get(f"{prefix}rows", 0))]
            found += [Metric(k, v) for k, v in merged.items() if k != f"{prefix}rows"]
    return found


def reason_counts(storage: LakeStorage, paths: str | Sequence[str], column: str = "reasons") -> dict[str, int]:
    """How many rows of quarantine file(s) broke each rule (a row counts once per rule it broke)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    for path in [paths] if isinstance(paths, str) else paths:
        with storage.open_random(path) as fh:
            reasons = pq.read_table(fh, columns=[column]).column(column)
        if not len(reasons):
            continue
        flat = pc.list_flatten(reasons)
        parents = pc.list_parent_indices(reasons)
        # A rule listed twice for one row still counts that row once.
        pairs = {(int(p), r) for p, r in zip(parents.to_pylist(), flat.to_pylist())}
        for _, rule in pairs:
            counts[rule] = counts.get(rule, 0) + 1
    return counts


def reject_metrics(storage: LakeStorage, kept: int, rejects: str | Sequence[str],
                   rules: Iterable[str] = ()) -> list[Metric]:
    """Total, quarantined rows and rate, and each rule's outcome, for ``kept`` rows written and the
    quarantine file(s) ``rejects`` the same materialization wrote beside them."""
    import pyarrow.parquet as pq

    quarantined = 0
    for path in [rejects] if isinstance(rejects, str) else rejects:
        with storage.open_random(path) as fh:
            quarantined += pq.ParquetFile(fh).metadata.num_rows
    total = kept + quarantined
    return [Metric("total_rows", total), Metric("quarantined_rows", quarantined),
            Metric("quarantine_rate", round(quarantined / total, 6) if total else 0.0),
            *rule_metrics(reason_counts(storage, rejects), rules)]


def rule_metrics(counts: Mapping[str, int], rules: Iterable[str]) -> list[Metric]:
    """One outcome row per declared rule (passed when no row broke it), plus any undeclared reason seen."""
    names = list(dict.fromkeys([*rules, *sorted(counts)]))
    return [Metric(f"rule.{r}", counts.get(r, 0), FAILED if counts.get(r, 0) else PASSED) for r in names]


def record(storage: LakeStorage, *, dataset: str, asset: str, run_id: str,
           per_partition: Mapping[str | None, Sequence[Metric]]) -> dict[str, Any]:
    """The metrics zone's one path: each partition's CSV (None: unpartitioned), and the
    materialization's numbers as Dagster metadata (``metrics/...``, plotted across runs)."""
    from dagster import MetadataValue

    for key, found in per_partition.items():
        write_metrics(storage, dataset=dataset, asset=asset, partition=key, run_id=run_id, metrics=found)
    summary = summarize({key or "": list(found) for key, found in per_partition.items()})
    folder = metrics_path(dataset, asset, next(iter(per_partition), None), run_id).rsplit("/", 2)[0]
    return {**{f"metrics/{k}": v for k, v in summary.items()},
            "metrics/files": MetadataValue.path(storage.uri(folder))}


def check_metrics(check_name: str, passed: bool, count: float = 0) -> list[Metric]:
    return [Metric(f"check.{check_name}", count, PASSED if passed else FAILED)]


def record_check(storage: LakeStorage, *, dataset: str, asset: str, partitions: list[str] | None,
                 run_id: str, check_name: str, passed: bool, count: float = 0) -> None:
    """Merge one asset check's outcome into the metrics file of each partition it covered."""
    for key in partitions or [None]:
        write_metrics(storage, dataset=dataset, asset=asset, partition=key, run_id=run_id,
                      metrics=check_metrics(check_name, passed, count))


def recorded(context, storage: LakeStorage, result, *, dataset: str, asset: str, name: str,
             partitions: list[str] | None, count: float | None = None):
    """Record an asset check's result in the metrics zone and hand it back (``return recorded(...)``).

    ``count`` defaults to 0 for a passing check and 1 for a failing one. In a run over a range of
    partitions, Dagster records the result for the range, and each partition's check would stay
    "planned" in the UI: the result is also logged as each partition's evaluation.
    """
    record_check(storage, dataset=dataset, asset=asset, partitions=partitions, run_id=context.run.run_id,
                 check_name=name, passed=result.passed,
                 count=count if count is not None else (0 if result.passed else 1))
    step = context.op_execution_context
    if partitions and not step.has_partition_key:
        from dagster import AssetCheckEvaluation, AssetKey

        for partition in partitions:
            step.log_event(AssetCheckEvaluation(
                asset_key=AssetKey(asset), check_name=name, passed=result.passed, partition=partition,
                metadata=result.metadata, severity=result.severity, description=result.description))
    return result


def summarize(per_partition: Mapping[str, list[Metric]]) -> dict[str, float]:
    """The numbers of several partitions as one set of Dagster metadata.

    Counts are summed; a null rate is weighted by its table's rows (``<prefix>null_rate.<col>``
    by ``<prefix>rows``); the quarantine rate is recomputed from the summed counts.
    """
    totals: dict[str, float] = {}
    weighted: dict[str, list[float]] = {}  # name -> [sum of rate * rows, sum of rows]
    for found in per_partition.values():
        rows = {m.name[: -len("rows")]: m.value for m in found if m.name.endswith("rows")}
        for m in found:
            if "null_rate." in m.name:
                n = rows.get(m.name.split("null_rate.", 1)[0], 0)
                acc = weighted.setdefault(m.name, [0.0, 0.0])
                acc[0] += m.value * n
                acc[1] += n
            elif not m.name.endswith("_rate"):
                totals[m.name] = totals.get(m.name, 0) + m.value
    for name, (w, n) in weighted.items():
        totals[name] = round(w / n, 6) if n else 0.0
    if "quarantined_rows" in totals and "total_rows" in totals:
        totals["quarantine_rate"] = round(totals["quarantined_rows"] / totals["total_rows"], 6) \
            if totals["total_rows"] else 0.0
    return totals
