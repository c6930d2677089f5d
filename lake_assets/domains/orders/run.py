"""``lake run`` / ``lake demo`` for orders: one extraction, then one validation per new landing set.

The same jobs the schedule and the sensor start, run in process and recorded in
the instance, so ``lake ui`` shows them beside the scheduled ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from dagster import DagsterEventType, DagsterInstance, Definitions

from lake_assets.domains.orders import zones
from lake_assets.pipeline import QUIET, DomainRun, domain_build, run_outcome


@dataclass
class OrdersRun(DomainRun):
    """What one ``lake run`` of the orders domain did: the shared run report, plus what was landed."""

    domain: str = "orders"
    landed_rows: int = 0
    landing_sets: list[str] = field(default_factory=list)  # validated in this run, oldest first
    valid_rows: int = 0
    discarded_rows: int = 0
    idle: str = ""  # why nothing ran (no source configured)

    @property
    def summary(self) -> str:
        if self.idle:
            return f"orders: skipped ({self.idle})"
        return (f"orders: {self.landed_rows} changed row(s) landed, {len(self.landing_sets)} landing set(s) "
                f"validated ({self.valid_rows} valid, {self.discarded_rows} discarded) in {len(self.runs)} run(s)")


def _materialization_metadata(result, asset: str) -> dict:
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization
            if mat.asset_key.to_user_string() == asset:
                return {k: v.value for k, v in mat.metadata.items()}
    return {}


def run_orders(defs: Definitions, instance: DagsterInstance,
               progress: Callable[[str], None] = lambda _: None) -> OrdersRun:
    """Extract what changed since the watermark, then validate every committed landing set, oldest first.

    Sets left by an earlier run (a failed validation, a crash) are validated too. A
    failed extraction stops here: the watermark has not moved, the next run retries.
    """
    out = OrdersRun()
    storage = defs.resources["lake"].storage
    # One orders run at a time: two extractions from one watermark would land the same rows twice.
    with domain_build(storage, "orders", progress) as holder:
        if holder is not None:
            out.blocked_by = str(holder)
            return out
        return _run_orders(defs, instance, out, progress)


def _run_orders(defs: Definitions, instance: DagsterInstance, out: OrdersRun, progress) -> OrdersRun:
    extract = defs.resolve_job_def("orders_extract_job")
    result = extract.execute_in_process(run_config=QUIET, instance=instance, raise_on_error=False,
                                        tags={"lake/trigger": "lake run"})
    out.runs.append(run_outcome("orders_extract_job", result))
    if not result.success:
        progress(f"orders: extraction failed: {'; '.join(out.runs[-1].failures)}")
        return out
    meta = _materialization_metadata(result, "orders_landing")
    out.landed_rows = int(meta.get("dagster/row_count", 0))
    progress(f"orders: landed {out.landed_rows} changed row(s) "
             f"(watermark {meta.get('watermark_from') or '-'} -> {meta.get('watermark_to') or '-'})")
    storage = defs.resources["lake"].storage
    validate = defs.resolve_job_def("orders_validate_job")
    for name in zones.committed_sets(storage):
        result = validate.execute_in_process(
            run_config={**QUIET, "ops": {"validate_orders": {"config": {"landing_set": name}}}},
            instance=instance, raise_on_error=False, tags={"lake/trigger": "lake run", "lake/landing_set": name})
        out.runs.append(run_outcome("orders_validate_job", result))
        out.landing_sets.append(name)
        silver = _materialization_metadata(result, "orders_silver")
        discarded = _materialization_metadata(result, "orders_discarded")
        out.valid_rows += int(silver.get("metrics/valid_rows", 0))
        out.discarded_rows += int(discarded.get("dagster/row_count", 0))
        progress(f"orders: {name}: {silver.get('metrics/valid_rows', 0)} valid, "
                 f"{discarded.get('dagster/row_count', 0)} discarded"
                 + ("" if result.success else f" FAILED: {'; '.join(out.runs[-1].failures)}"))
        if not result.success:
            break  # what failed one set would fail the next: they wait for the next run
    return out
