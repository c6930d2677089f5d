"""What is stale in a domain, and why: read from what Dagster already records.

An asset partition is stale when it was never built while its inputs exist, when
the run that built it failed (a blocking check failed on it, or on a neighbour:
what reads it must not be built from it until a run passes), when
an input it reads was materialized after it (the event log's storage ids order
every materialization of every asset) with other rows (a whole table's
materializations carry a fingerprint of its rows: one rebuilt with the same rows
changes nothing downstream), or when an input it reads is itself stale
(it will be rebuilt, so this will too). Inputs are the asset's dependencies with
their partition mappings (commerce silver reads a window of bronze dates; a fact
reads the whole of an unpartitioned dimension; a dimension reads every date of
its silver), so this is the rule the assets' automation condition
(:data:`~lake_assets.automation.REBUILD_ON_UPSTREAM_CHANGE`: rebuild when any
dependency updated since this was last handled) applies tick by tick, taken
from the records at once: what the UI's automation would rebuild is what
``lake run`` builds and ``lake status`` lists, except the partitions whose only
changed input is a whole table rebuilt with the same rows (the automation, which
sees materializations, not rows, rebuilds those: the same rows again).

An asset whose partitions come from its rows (tpcds' months) names, in
:data:`CHANGES_FROM`, the report of which partitions changed (an asset reading
the rows materializes those partitions of the report); its other inputs are read
whole, and only the reports make its partitions stale.

Nothing here is a second bookkeeping: ingestion's materializations of the
validated/bronze partitions and the builds' materializations are the truth.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

from dagster import AssetKey, AssetRecordsFilter, AssetSelection, AssetSpec, DagsterInstance, Definitions

#: An unpartitioned asset's only "partition".
WHOLE: str | None = None


@dataclass
class Stale:
    """One stale asset partition and the reason (the first found)."""

    asset: str
    partition: str | None
    reason: str


@dataclass
class DomainStatus:
    """A domain's stale asset partitions, in build order."""

    domain: str
    stale: list[Stale] = field(default_factory=list)

    @property
    def partitions(self) -> list[str]:
        """The dates a build must cover (of the partitioned assets)."""
        return sorted({s.partition for s in self.stale if s.partition is not None})


#: Definition metadata ``{REBUILD: ON_DEMAND}``: an asset rebuilt on a schedule or by a person (a
#: trained model), not whenever an input changes: stale only when never built, built by a failed
#: run, or when its newest materialization says it is :data:`PROVISIONAL` (a model not trained
#: yet for want of data, which the next data may allow).
REBUILD, ON_DEMAND = "lake/rebuild", "on_demand"
#: Materialization metadata ``{PROVISIONAL: True}``: what was built stands in until its inputs allow
#: the real thing, so an input change makes it stale as for any asset.
PROVISIONAL = "lake/provisional"
#: Materialization metadata of a whole table: its rows' fingerprint (``io_managers.fingerprinted``).
#: A whole input rebuilt with the same fingerprint as when a partition was built is not a reason to
#: rebuild that partition: ``lake run`` building two ranges of dates (late data and today's) rebuilds
#: the dimensions with each, and facts already built from the same dimension rows stay as they are.
FINGERPRINT = "lake/fingerprint"
#: Definition metadata: the inputs (user strings) whose materializations say which partitions of
#: this asset changed, where its partitions are not its inputs' (a fact's months come from its rows:
#: an asset reading the rows reports the months each delivery touches). The asset's other inputs
#: are read, and their changes reach it only through those reports: an input rebuilt whole does
#: not make every month stale. :func:`~lake_assets.automation.rebuild_on_changes_from` is the
#: same rule for the automation.
CHANGES_FROM = "lake/changes_from"
#: Materialization metadata of one partition: ``{UNCHANGED: True}`` when a run over a range of
#: partitions found nothing changed there and left its files as they were (a range's run covers the
#: months between the changed ones): not a reason to rebuild what reads it.
UNCHANGED = "lake/unchanged"


def latest_by_partition(instance: DagsterInstance, key: AssetKey, provisional: set | None = None,
                        fingerprints: list | None = None) -> dict[str | None, tuple[int, str, int]]:
    """partition -> (storage id, run id, storage id of the newest one not marked :data:`UNCHANGED`) of
    its newest materialization; ``provisional`` (when given)
    collects the partitions whose newest materialization is marked :data:`PROVISIONAL`;
    ``fingerprints`` (when given) the (storage id, fingerprint) of every materialization of a whole
    table, oldest first (None where it carries none)."""
    out: dict[str | None, tuple[int, str]] = {}
    cursor = None
    while True:
        result = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor,
                                                 ascending=True)
        for record in result.records:
            mat = record.asset_materialization
            kept = (mat.metadata or {}).get(UNCHANGED) if mat is not None else None
            before = out.get(record.partition_key)
            changed = before[2] if getattr(kept, "value", kept) and before else record.storage_id
            out[record.partition_key] = (record.storage_id, record.run_id, changed)
            if fingerprints is not None and record.partition_key is None:
                mat = record.asset_materialization
                found = (mat.metadata or {}).get(FINGERPRINT) if mat is not None else None
                fingerprints.append((record.storage_id, getattr(found, "value", found)))
            if provisional is not None:
                mat = record.asset_materialization
                flag = (mat.metadata or {}).get(PROVISIONAL) if mat is not None else None
                if getattr(flag, "value", flag):
                    provisional.add(record.partition_key)
                else:
                    provisional.discard(record.partition_key)
        if not result.has_more:
            return out
        cursor = result.cursor


def _topological(specs: dict[AssetKey, AssetSpec], keys: set[AssetKey]) -> list[AssetKey]:
    order: list[AssetKey] = []
    seen: set[AssetKey] = set()

    def visit(k: AssetKey) -> None:
        if k in seen:
            return
        seen.add(k)
        for dep in specs[k].deps:
            if dep.asset_key in keys:
                visit(dep.asset_key)
        order.append(k)

    for k in sorted(keys, key=lambda k: k.to_user_string()):
        visit(k)
    return order


def _parent_partitions(spec: AssetSpec, dep, parent: AssetSpec, partition: str | None,
                       parent_partitions: list[str | None]) -> list[str | None]:
    """The partitions of ``parent`` that ``spec``'s ``partition`` reads."""
    if parent.partitions_def is None:
        return [WHOLE]
    if spec.partitions_def is None or partition is None:
        return [p for p in parent_partitions if p is not None]  # a whole asset reads every date
    if dep.partition_mapping is None:
        return [partition]
    subset = spec.partitions_def.subset_with_partition_keys([partition])
    mapped = dep.partition_mapping.get_upstream_mapped_partitions_result_for_partitions(
        subset, spec.partitions_def, parent.partitions_def)
    return list(mapped.partitions_subset.get_partition_keys())


def domain_status(defs: Definitions, instance: DagsterInstance, *, domain: str,
                  sources: list[AssetKey], build_job: str | Sequence[str] | None = None) -> DomainStatus:
    """The stale partitions of every asset ``build_job`` builds (what ``sources``, the domain's
    ingested assets, feed, and reference dimensions with no input among them; several jobs when its
    assets are partitioned in more than one way); with no such job, of everything downstream of
    ``sources``."""
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    graph = defs.resolve_asset_graph()
    built = AssetSelection.assets(*sources).downstream(include_self=False).resolve(graph)
    jobs = [j for j in defs.jobs or [] if j.name in build_jobs(build_job)
            and getattr(j, "selection", None) is not None]
    if jobs:
        # What the domain's jobs build, and only that: another domain's consumers downstream of
        # these sources (the analytics room's features, the report) are built by their own job.
        built = set().union(*(j.selection.resolve(graph) for j in jobs))
    built = {k for k in built - set(sources) if k in specs and defs.resolve_assets_def(k).is_materializable}
    # A consumer of other domains' tables (the analytics room) names no sources: what its assets read
    # from outside them is what it is built from.
    sources = list(sources) or sorted({d.asset_key for k in built for d in specs[k].deps} - built, key=str)
    on_demand = {k for k in built if (specs[k].metadata or {}).get(REBUILD) == ON_DEMAND}
    provisional: dict[AssetKey, set] = {k: set() for k in on_demand}
    history: dict[AssetKey, list] = {k: [] for k in built | set(sources) if k in specs and specs[k].partitions_def is None}
    # The reports of changed partitions (CHANGES_FROM) are read too, whoever writes them.
    inputs = {d.asset_key for k in built for d in _triggering(specs[k], specs[k].deps) if d.asset_key in specs
              and (specs[k].metadata or {}).get(CHANGES_FROM)}
    known = {k: latest_by_partition(instance, k, provisional.get(k), history.get(k))
             for k in built | set(sources) | inputs}
    failed_runs = _failed_runs(instance, {v[1] for k in built for v in known[k].values()})
    out = DomainStatus(domain)
    if not any(known[k] for k in sources):
        return out  # no data ever came in: a domain not in use builds nothing (not even its references)
    stale: dict[AssetKey, set[str | None]] = defaultdict(set)
    for key in _topological(specs, built):
        spec = specs[key]
        parents = _triggering(spec, [d for d in spec.deps if d.asset_key in known])
        mine = known[key]
        # Candidates: the dates an input holds (its own date: a window of neighbours adds reasons
        # to rebuild, not dates to build) and every one built before.
        candidates: set[str | None] = set(mine)
        if spec.partitions_def is None:
            candidates = {WHOLE}
        else:
            valid = set(spec.partitions_def.get_partition_keys(dynamic_partitions_store=instance))
            for dep in parents:
                if specs[dep.asset_key].partitions_def is not None:
                    candidates |= {p for p in list(known[dep.asset_key]) + list(stale[dep.asset_key])
                                   if p is not None}
            candidates = {p for p in candidates if p in valid}
        for partition in sorted(candidates, key=lambda p: p or ""):
            reason = _why(spec, parents, specs, known, stale, partition, mine.get(partition), failed_runs, history)
            if reason and key in on_demand:
                if mine.get(partition) is None:
                    if parents and not any(known[d.asset_key] or stale[d.asset_key] for d in parents):
                        reason = None  # nothing it is trained from is built or to be built: nothing to train on
                elif partition not in provisional[key] and "which failed" not in reason:
                    reason = None  # built for real: rebuilt by its schedule or a person, not by input changes
            if reason:
                stale[key].add(partition)
                out.stale.append(Stale(key.to_user_string(), partition, reason))
    return out


def changed_partitions(instance: DagsterInstance, key: AssetKey, inputs: list[AssetKey], keys: list[str]
                       ) -> list[str]:
    """Of ``keys``, the partitions of ``key`` an input (same partitions) changed after it was last built,
    or never built: what a run over a range of them rewrites (the others keep their files, and their
    materialization says :data:`UNCHANGED`)."""
    mine = latest_by_partition(instance, key)
    seen = [latest_by_partition(instance, k) for k in inputs]
    return [p for p in keys if p not in mine or any(p in s and s[p][2] > mine[p][0] for s in seen)]


def build_jobs(build_job: str | Sequence[str] | None) -> tuple[str, ...]:
    """A domain's build job names (one, or several in build order)."""
    if build_job is None:
        return ()
    return (build_job,) if isinstance(build_job, str) else tuple(build_job)


def _triggering(spec: AssetSpec, deps: list) -> list:
    """The inputs whose changes make ``spec``'s partitions stale: all of them, or those its
    :data:`CHANGES_FROM` names."""
    named = (spec.metadata or {}).get(CHANGES_FROM)
    if not named:
        return deps
    keys = {AssetKey.from_user_string(k) for k in getattr(named, "value", named)}
    return [d for d in deps if d.asset_key in keys]


def _failed_runs(instance: DagsterInstance, run_ids: set[str]) -> set[str]:
    """Of ``run_ids``, the runs that failed or were canceled."""
    from dagster import DagsterRunStatus, RunsFilter

    out: set[str] = set()
    ids = sorted(run_ids)
    for i in range(0, len(ids), 500):
        records = instance.get_run_records(filters=RunsFilter(
            run_ids=ids[i:i + 500], statuses=[DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]))
        out |= {r.dagster_run.run_id for r in records}
    return out


def _same_rows_since(history: list, built_at: int) -> bool:
    """Whether a whole table's newest materialization holds the rows it held when something was built
    at storage id ``built_at`` (both fingerprinted, and equal)."""
    before = [fp for sid, fp in history if sid < built_at]
    return bool(history and before and before[-1] and history[-1][1] == before[-1])


def _why(spec, parents, specs, known, stale, partition, mine, failed_runs, history=None) -> str | None:
    """Why ``spec``'s ``partition`` is stale, or None when it is fresh."""
    if mine is not None and mine[1] in failed_runs:
        # Written, but the run failed (a blocking check on it, or on what it was built with):
        # what reads it must not be built from it until a run passes.
        return f"built by run {mine[1][:8]}, which failed (see its checks)"
    has_input = False
    for dep in parents:
        parent = specs[dep.asset_key]
        name = dep.asset_key.to_user_string()
        upstream = known[dep.asset_key]
        for p in _parent_partitions(spec, dep, parent, partition, list(upstream) + list(stale[dep.asset_key])):
            if p in stale[dep.asset_key]:
                return f"its input {name}{'[' + p + ']' if p else ''} is stale"
            if p not in upstream:
                continue
            has_input = True
            if mine is not None and upstream[p][2] > mine[0]:
                if p is None and _same_rows_since((history or {}).get(dep.asset_key, []), mine[0]):
                    continue  # rebuilt since, with the same rows
                return f"{name}{'[' + p + ']' if p else ''} changed after it was built"
    if mine is None:  # (a candidate date has an input there; a whole table is read by what follows)
        return "never built, and its inputs are there" if has_input else "never built"
    return None
