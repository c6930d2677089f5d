"""Asset checks shared by every domain: one factory per check kind, one wrapper recording outcomes.

A domain declares its checks as a list of calls, each naming the asset, the
table it declared (the IO manager's :func:`~lake_assets.io_managers.lake_table`
metadata, or a reader for a table the IO manager does not write), whether the
check is partitioned, blocking, and its name and description:

* :func:`schema_check`: a ``pandera.pyspark`` schema (types, nullability, value checks);
* :func:`unique_key_check`: no two rows share a key;
* :func:`keys_check`: a unique key, and every reference found in its table (orphans);
* :func:`table_checks`: both of those on one table, as one step reading it once in one Spark pass;
* :func:`accounting_check`: every record ingestion routed to a partition is in the
  valid table(s) or the rejects, once (manifests and Parquet footers: no Spark);
* :func:`rate_check`: the share of a partition's dated records rejected, against
  WARN/ERROR :class:`RateThresholds` (undated records reported apart).

Every check, these and a domain's own (:func:`recorded_check`), merges its
outcome into the metrics zone (:func:`lake_assets.quality.metrics.recorded`)
with a count: the failing cases, duplicated keys, lost rows or rejected rows.
A check reading data computes all its numbers in one pass (:func:`measure`):
on a small daily batch a Spark job costs more than the rows it reads.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Union

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetChecksDefinition,
    AssetKey,
    MetadataValue,
    PartitionsDefinition,
    asset_check,
)

from lake_assets.settings import RateThresholds  # noqa: F401  (re-exported: the checks' thresholds)
from lake_assets.ingest.formats import RawFormat
from lake_assets.ingest.router import Zones
from lake_assets.quality.metrics import recorded

#: A table a check reads: its ``lake_table(...)`` metadata, or ``reader(spark, storage, keys)``
#: for a table the IO manager does not write.
TableSource = Union[Mapping[str, Any], Callable[[Any, Any, list], Any]]
#: A check's body: ``(context, partition keys or [None]) -> (result, count recorded with its outcome)``.
CheckBody = Callable[[AssetCheckExecutionContext, list], "tuple[AssetCheckResult, float]"]


# -- the wrapper every check goes through -------------------------------------------------------
def recorded_check(*, asset, name: str, dataset: str, description: str,
                   partitions_def: PartitionsDefinition | None = None, blocking: bool = False,
                   additional_deps: Sequence = (), resources: Sequence[str] = ()) -> Callable[[CheckBody], AssetChecksDefinition]:
    """Decorator: a check body becomes an ``@asset_check`` whose outcome is merged into the metrics zone.

    The body gets the check's context and the partitions it covers (``[None]`` when
    unpartitioned: a full-refresh table, even in a partitioned run) and returns the
    result with a count, recorded under ``check.<name>`` in the metrics CSV of each
    partition (or of the run's date) of ``metrics/<dataset>/<asset>/``. The ``lake``
    resource is always required; ``resources`` names the others the body uses
    (``context.resources.<key>``).
    """
    key = _key(asset)

    def decorate(body: CheckBody) -> AssetChecksDefinition:
        @asset_check(asset=key, name=name, description=description, blocking=blocking,
                     partitions_def=partitions_def,
                     additional_deps=[_key(d) for d in additional_deps],
                     required_resource_keys={"lake", *resources})
        def _check(context):  # (annotations are strings here, which Dagster refuses for `context`)
            keys = _checked_keys(context, partitions_def)
            result, count = body(context, keys)
            return recorded(context, context.resources.lake.storage, result, dataset=dataset,
                            asset=key.path[-1], name=name, partitions=_recorded_partitions(keys), count=count)

        return _check

    return decorate


def _checked_keys(context, partitions_def: PartitionsDefinition | None) -> list:
    """The partitions a check run covers; ``[None]`` when the check is unpartitioned (a full-refresh
    table, even in a partitioned run)."""
    return list(context.partition_keys) if partitions_def is not None else [None]


def _recorded_partitions(keys: list) -> list[str] | None:
    """The partitions whose metrics files a check's outcome goes into (None: the run's date)."""
    return [k for k in keys if k is not None] or None


def read_source(context: AssetCheckExecutionContext, source: TableSource, keys: list, asset: str = "asset"):
    """The partitions ``keys`` of a check's table, as stored (a mapping for an asset of several tables)."""
    from lake_assets.io_managers import read_table

    session, storage = context.resources.spark.spark_session, context.resources.lake.storage
    if callable(source):
        return source(session, storage, keys)
    return read_table(session, storage, source, keys, asset)


def _dataset(dataset: str | None, source: TableSource, name: str) -> str:
    found = dataset or (None if callable(source) else source.get("lake/metrics_dataset"))
    if not found:
        raise ValueError(f"check {name}: its table declares no metrics dataset; pass dataset=")
    return found


def _key(asset) -> AssetKey:
    """An asset key from a key or a name (``"dim_users"``)."""
    return asset if isinstance(asset, AssetKey) else AssetKey(asset)


def _short(asset) -> str:
    return _key(asset).path[-1]


# -- one pass -------------------------------------------------------------------------------------------
def measure(*observed: tuple[Any, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Aggregates of DataFrames, each ``(frame, {name: aggregate column})``, computed in one Spark action.

    Every check's numbers come through here. Each frame is observed (``DataFrame.observe``:
    the tasks reading it fold its aggregates as they go and Spark merges them) and one write to
    Spark's ``noop`` sink drives every frame at once: no shuffle into one partition (the stage,
    and Spark job, an ``agg`` adds), no row to the driver, only the columns the aggregates name
    read. A flat scan is one Spark job; a frame that groups adds one per shuffle it needs.
    """
    from pyspark.sql import Observation

    runs, passes = [], None
    for frame, aggregates in observed:
        runs.append(Observation())
        one = frame.observe(runs[-1], *[e.alias(n) for n, e in aggregates.items()]).select()
        passes = one if passes is None else passes.union(one)
    if passes is not None:
        passes.write.format("noop").mode("overwrite").save()
    return [run.get for run in runs]


def _tally(value, sample: int) -> dict[str, Any]:
    """How many rows have a non-null ``value`` (a struct), and the first ``sample`` of those values in
    order: ``min_by(value, value, k)`` keeps at most ``k`` per task (never every offending row in one
    task, nor on the driver), sorted as ``orderBy`` sorts (nulls first, field by field)."""
    from pyspark.sql import functions as F

    return {"count": F.count(value), "sample": F.min_by(value, value, sample)}


def _strings(found, cols: Sequence[str]) -> list[str]:
    return ["/".join(str(r[c]) for c in cols) for r in found or []]


# -- pandera schemas ---------------------------------------------------------------------------------
def _violation(check, col):
    """A Spark condition true where a row breaks a pandera built-in check (nulls break none)."""
    stats, name = check.statistics, check.name
    if name == "in_range":
        low = col >= stats["min_value"] if stats.get("include_min", True) else col > stats["min_value"]
        high = col <= stats["max_value"] if stats.get("include_max", True) else col < stats["max_value"]
        return ~(low & high)
    if name == "isin":
        return ~col.isin(*stats["allowed_values"])
    if name == "notin":
        return col.isin(*stats["forbidden_values"])
    bounds = {"greater_than_or_equal_to": lambda v: col < v, "greater_than": lambda v: col <= v,
              "less_than_or_equal_to": lambda v: col > v, "less_than": lambda v: col >= v}
    if name in bounds:
        return bounds[name](stats.get("min_value", stats.get("max_value")))
    raise ValueError(f"pandera check {name!r} has no Spark translation here; add one")


def validate_with_pandera(schema, df) -> dict[str, object]:
    """Errors of a ``pandera.pyspark`` schema on a DataFrame, computed in one Spark job (:func:`validate_tables`)."""
    return validate_tables({"": (schema, df)})[""]


def validate_tables(tables: Mapping[str, tuple[Any, Any]]) -> dict[str, dict[str, object]]:
    """Errors of each ``(pandera.pyspark schema, DataFrame)`` by name, all computed in one Spark job.

    pandera checks each schema itself (columns, types, strictness: no Spark job); the
    data-level part of the same schema (nullability and each column check) is compiled
    into aggregates counting the rows breaking each, instead of pandera's one job per
    column and check, which costs seconds per table even on a few rows; the tables of
    an asset writing several are measured together (:func:`measure`: one scan, one job).
    """
    plan = _SchemaPlan(tables)
    return plan.errors(measure(*plan.observed))


class _SchemaPlan:
    """:func:`validate_tables` in two halves, so another check's aggregates can join its Spark pass:
    the schema-level errors (pandera, no Spark) and the aggregates still to measure (``observed``),
    then :meth:`errors` from what :func:`measure` found for them."""

    def __init__(self, tables: Mapping[str, tuple[Any, Any]]):
        from pandera.config import ValidationDepth, config_context
        from pyspark.sql import functions as F

        self.found: dict[str, dict[str, object]] = {}
        self.plans: dict[str, tuple[dict[str, Any], list[tuple[str, str]]]] = {}
        self.observed: list[tuple[Any, dict[str, Any]]] = []
        for name, (schema, df) in tables.items():
            # Names, types and strictness only (nullability would cost pandera one job per column).
            shape = schema.update_columns({c: {"nullable": True, "checks": []} for c in schema.columns})
            with config_context(validation_depth=ValidationDepth.SCHEMA_ONLY):
                self.found[name] = json.loads(json.dumps(shape.validate(df).pandera.errors, default=str))
            if self.found[name]:
                continue  # wrong columns or types: data checks would not mean much
            exprs, labels = {}, []
            for col_name, column in schema.columns.items():
                col = F.col(col_name)
                if not column.nullable:
                    labels.append((col_name, "not_nullable"))
                    exprs[f"c{len(exprs)}"] = F.count(F.when(col.isNull(), 1))
                for check in column.checks:
                    labels.append((col_name, check.name))
                    exprs[f"c{len(exprs)}"] = F.count(F.when(_violation(check, col), 1))
            if exprs:
                self.plans[name] = (exprs, labels)
                self.observed.append((df, exprs))

    def errors(self, counted: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, object]]:
        found = dict(self.found)
        for (name, (exprs, labels)), counts in zip(self.plans.items(), counted):
            failures = [{"column": col, "check": check, "failure_cases": int(counts[key])}
                        for (col, check), key in zip(labels, exprs) if counts[key]]
            if failures:
                found[name] = {"DATA": failures}
        return found


def error_count(errors: Mapping[str, Any]) -> int:
    """How many cases an error report of :func:`validate_with_pandera` holds: the rows breaking
    each data check, and one per schema-level error (a column missing, extra or mistyped)."""
    n = sum(int(e.get("failure_cases", 1)) for e in errors.get("DATA", []) or [])
    for kind, found in errors.items():
        if kind != "DATA":
            n += sum(len(v) for v in found.values()) if isinstance(found, Mapping) else len(found)
    return n


def pandera_schema(struct, checks: dict[str, list] | None = None):
    """A strict ``pandera.pyspark`` schema from a StructType (types and nullability) plus column checks."""
    import pandera.pyspark as pa

    checks = checks or {}
    return pa.DataFrameSchema(
        {f.name: pa.Column(f.dataType, nullable=f.nullable, checks=checks.get(f.name, []))
         for f in struct.fields},
        strict=True,
    )


def schema_check(asset, table: TableSource, schema, *, name: str | None = None, dataset: str | None = None,
                 partitions_def: PartitionsDefinition | None = None, blocking: bool = True,
                 description: str | None = None) -> AssetChecksDefinition:
    """A check that the asset's table, as stored, has a ``pandera.pyspark`` schema (``{asset}_schema``).

    ``schema`` is one schema (metadata ``errors``: :func:`validate_with_pandera`'s report),
    or a mapping name -> schema (metadata ``tables`` and ``errors`` by name) for an asset
    writing several tables, or one table reported under a name. Records the failing cases.
    """
    short = _short(asset)
    name = name or f"{short}_schema"

    @recorded_check(asset=asset, name=name, dataset=_dataset(dataset, table, name), blocking=blocking,
                    partitions_def=partitions_def, resources=("spark",),
                    description=description or _schema_what(short))
    def _check(context, keys):
        tables = _schema_tables(schema, read_source(context, table, keys, short))
        passed, metadata, failed = _schema_outcome(schema, validate_tables(tables))
        return AssetCheckResult(passed=passed, metadata=metadata), failed

    return _check


def _schema_what(short: str) -> str:
    return f"pandera (PySpark) schema of {short}: columns, types, nullability, allowed values."


def _schema_tables(schema, frames) -> dict[str, tuple[Any, Any]]:
    """A schema check's ``(schema, frame)`` by name: ``""`` for one schema, else the mapping's names."""
    if not isinstance(schema, Mapping):
        return {"": (schema, frames)}
    if not isinstance(frames, Mapping):
        [label] = schema  # one table, reported under its name
        frames = {label: frames}
    return {name: (one, frames[name]) for name, one in schema.items()}


def _schema_outcome(schema, errors: Mapping[str, Any]) -> tuple[bool, dict[str, Any], int]:
    """Passed, metadata (``errors``; ``tables`` too for a mapping) and failing cases of a schema check."""
    if not isinstance(schema, Mapping):
        return not errors[""], {"errors": MetadataValue.json(errors[""])}, error_count(errors[""])
    broken = {name: found for name, found in errors.items() if found}
    return not broken, {"tables": MetadataValue.json(sorted(schema)), "errors": MetadataValue.json(broken)}, \
        sum(error_count(e) for e in broken.values())


# -- keys and references ---------------------------------------------------------------------------------
def count_and_sample(rows, sample: int) -> tuple[int, list[str]]:
    """How many rows a DataFrame has, and the first ``sample`` of them in order as ``a/b`` strings.

    Counted and sampled in the same pass (:func:`_tally`): one Spark job for a flat frame, found or not.
    """
    from pyspark.sql import functions as F

    cols = rows.columns
    [found] = measure((rows, _tally(F.struct(*cols), sample)))
    return found["count"], _strings(found["sample"], cols)


def key_violations(df, unique: Sequence[str] = (), refs: Sequence[tuple[str, Any, str]] = (),
                   sample: int = 5) -> list[tuple[int, list[str]]]:
    """See :func:`_key_plan`: its violations, measured alone."""
    observed, found = _key_plan(df, unique, refs, sample)
    with unreduced_groupings(df.sparkSession):
        return found(measure(*observed))


#: Spark's setting that sends a grouping's rows straight to its shuffle (see :func:`unreduced_groupings`).
BYPASS_PARTIAL_AGGREGATION = "spark.sql.execution.bypassPartialAggregation"


@contextlib.contextmanager
def unreduced_groupings(spark):
    """Spark actions started inside plan their groupings without the partial aggregation before the
    shuffle (the session's setting restored after).

    For a keys check: grouping a table by its key meets each key about once, so the partial
    aggregation folds nothing and only costs (a hash map of every row, spilled and sorted when
    full): on 11.7 M TPC-DS inventory rows the check took 10.5 s with it, 8.3 s without. The
    references' groupings are unaffected: their anti-joins run before their aggregates
    (:func:`_key_plan`). Only the plan changes, never a result.
    """
    conf = spark.conf
    before = conf.get(BYPASS_PARTIAL_AGGREGATION, None)
    conf.set(BYPASS_PARTIAL_AGGREGATION, "true")
    try:
        yield
    finally:
        if before is None:
            conf.unset(BYPASS_PARTIAL_AGGREGATION)
        else:
            conf.set(BYPASS_PARTIAL_AGGREGATION, before)


def _key_plan(df, unique: Sequence[str] = (), refs: Sequence[tuple[str, Any, str]] = (), sample: int = 5):
    """Keys of ``df`` on more than one row (when ``unique``), then, for each ``(column, ref, ref_column)``,
    the distinct non-null values of ``column`` with no match in ``ref``'s ``ref_column``: each a count
    and the first ``sample`` in order as ``a/b`` strings, all from one Spark action (:func:`measure`,
    inside :func:`unreduced_groupings`).

    Duplicates: ``df`` grouped by its key, the groups of more than one row counted and sampled
    (:func:`_tally`). Orphans, per reference: the column's distinct values anti-joined with the
    referenced values; Spark moves the anti-join below the ``distinct``, so each row is looked up
    in the referenced table where it is read (broadcast: dimensions are small) and only orphan
    values reach a shuffle. Only key and referencing columns are read. A referenced column of
    another type is compared in the type Spark's union widens both to.

    Why not one grouping for all (how it was until session 20): each row of ``df`` then became
    one row per kind (its key, and each reference's value) into a single shuffle, keeping a check
    at two Spark jobs however many references; at TPC-DS scale factor 1 that grouping was most of
    the checks' time (inventory, 11.7 M rows and two references: 13.8 s, now 7.6 s), while on a
    daily batch the extra jobs (a broadcast and a shuffle per reference) cost nothing measurable
    (0.41 s both ways on 5,000 rows).

    Returned in two halves, so another check's aggregates can join the same Spark action: the
    frames and aggregates to :func:`measure`, and a function of what it found (one result per
    frame, in order) giving the list above.
    """
    from pyspark.sql import functions as F

    observed, shown = [], []
    if unique:
        repeated = df.groupBy(*unique).agg(F.count(F.lit(1)).alias("_rows")).where(F.col("_rows") > 1)
        observed.append((repeated, _tally(F.struct(*unique), sample)))
        shown.append(list(unique))
    for column, ref, ref_column in refs:
        referenced = ref.select(F.col(ref_column).alias(column))
        common = df.select(column).unionByName(referenced).schema[column].dataType
        values = df.select(F.col(column).cast(common).alias(column)).where(F.col(column).isNotNull()).distinct()
        orphans = values.join(referenced.select(F.col(column).cast(common).alias(column)), column, "left_anti")
        observed.append((orphans, _tally(F.struct(column), sample)))
        shown.append([column])

    def found(measured: Sequence[Mapping[str, Any]]) -> list[tuple[int, list[str]]]:
        return [(m["count"], _strings(m["sample"], cols)) for m, cols in zip(measured, shown)]

    return observed, found


def duplicate_keys(df, keys: Sequence[str], sample: int = 10) -> tuple[int, list[str]]:
    """How many key values more than one row shares, and a few of them (:func:`key_violations`)."""
    return key_violations(df, keys, sample=sample)[0]


def orphan_values(df, column: str, ref, ref_column: str, sample: int = 5) -> tuple[int, list[str]]:
    """How many distinct non-null values of ``column`` have no match in ``ref``'s ``ref_column``, and a few."""
    return key_violations(df, refs=[(column, ref, ref_column)], sample=sample)[0]


def unique_key_result(df, keys: list[str], sample: int = 10) -> AssetCheckResult:
    """Passes when no two rows share ``keys``; fails with how many keys are shared and a few of them."""
    n, found = duplicate_keys(df, keys, sample)
    return AssetCheckResult(passed=n == 0, metadata={"key": MetadataValue.json(list(keys)), "duplicate_keys": n,
                                                     "duplicate_keys_sample": MetadataValue.json(found)})


def unique_key_check(asset, table: TableSource, keys: Sequence[str], *, name: str | None = None,
                     dataset: str | None = None, partitions_def: PartitionsDefinition | None = None,
                     blocking: bool = True, description: str | None = None,
                     sample: int = 10) -> AssetChecksDefinition:
    """A check that ``keys`` is unique in the partitions checked (``{asset}_unique_{keys}``).

    Metadata ``key``, ``duplicate_keys`` (how many) and ``duplicate_keys_sample``; records that count.
    """
    short = _short(asset)
    name = name or f"{short}_unique_{'_'.join(keys)}"

    @recorded_check(asset=asset, name=name, dataset=_dataset(dataset, table, name), blocking=blocking,
                    partitions_def=partitions_def, resources=("spark",),
                    description=description or f"({', '.join(keys)}) is unique in {short}.")
    def _check(context, part_keys):
        result = unique_key_result(read_source(context, table, part_keys, short), list(keys), sample)
        return result, result.metadata["duplicate_keys"].value

    return _check


class Reference(NamedTuple):
    """A column whose every non-null value must be in an unpartitioned table's column."""

    column: str
    table: Mapping[str, Any]  # lake_table(...) metadata of the referenced table
    asset: str
    ref_column: str


def keys_check(asset, table: TableSource, unique: Sequence[str], *, refs: Sequence[Reference] = (),
               name: str | None = None, dataset: str | None = None,
               partitions_def: PartitionsDefinition | None = None, blocking: bool = True,
               description: str | None = None, sample: int = 5) -> AssetChecksDefinition:
    """A check that ``unique`` is unique and each reference has its match (``{asset}_keys``).

    Metadata ``violations`` (duplicated keys plus orphan values, also the count recorded)
    and ``details``: ``duplicate_keys`` and ``<column>_not_in_<ref asset>``, each a count and a sample.
    """
    short = _short(asset)
    name = name or f"{short}_keys"
    refs = [Reference(*r) for r in refs]

    @recorded_check(asset=asset, name=name, dataset=_dataset(dataset, table, name), blocking=blocking,
                    partitions_def=partitions_def, additional_deps=[r.asset for r in refs],
                    resources=("spark",), description=description or _keys_what(unique, refs))
    def _check(context, keys):
        # Duplicates and every reference's orphans: one Spark action (key_violations).
        passed, metadata, bad = _keys_outcome(unique, refs, key_violations(
            read_source(context, table, keys, short), unique, _referenced(context, refs), sample))
        return AssetCheckResult(passed=passed, metadata=metadata), bad

    return _check


def _keys_what(unique: Sequence[str], refs: Sequence[Reference]) -> str:
    return f"({', '.join(unique)}) unique" + "".join(f"; every {r.column} in {r.asset}" for r in refs) + "."


def _referenced(context, refs: Sequence[Reference]) -> list[tuple[str, Any, str]]:
    """A keys check's references as :func:`key_violations` takes them, each referenced table read whole."""
    return [(r.column, read_source(context, r.table, [None], r.asset), r.ref_column) for r in refs]


def _keys_outcome(unique: Sequence[str], refs: Sequence[Reference],
                  violations: list[tuple[int, list[str]]]) -> tuple[bool, dict[str, Any], int]:
    """Passed, metadata (``violations``, ``details``) and violations of a keys check."""
    (n, found), *orphans = violations
    details: dict[str, Any] = {"duplicate_keys": {"key": list(unique), "count": n, "sample": found}}
    bad = n
    for ref, (n, found) in zip(refs, orphans):
        details[f"{ref.column}_not_in_{ref.asset}"] = {"count": n, "sample": found}
        bad += n
    return bad == 0, {"violations": bad, "details": MetadataValue.json(details)}, bad


def table_checks(asset, table: TableSource, schema, unique: Sequence[str], *, refs: Sequence[Reference] = (),
                 keys_table: TableSource | None = None, keys_name: str | None = None, dataset: str | None = None,
                 partitions_def: PartitionsDefinition | None = None, blocking: bool = True,
                 schema_description: str | None = None, keys_description: str | None = None,
                 sample: int = 5) -> AssetChecksDefinition:
    """:func:`schema_check` and :func:`keys_check` of one table as one step and one Spark pass.

    The same two checks, by the same names (``{asset}_schema``, ``keys_name`` or ``{asset}_keys``),
    with the same results and metadata, blocking alike, each selectable alone in the UI; but the
    table is read once (``keys_table``: the keys from another reader of it, e.g. with its declared
    types, while the schema sees it as stored) and the schema's aggregates are measured in the keys
    check's Spark action (:func:`measure` of both: no job of their own). On a daily batch a check
    costs its Spark job and step more than its rows, and every table with a schema and a key has
    both. ``table`` is one frame (no subtables).
    """
    from dagster import AssetCheckSpec, multi_asset_check

    short, key = _short(asset), _key(asset)
    schema_name, keys_name = f"{short}_schema", keys_name or f"{short}_keys"
    refs = [Reference(*r) for r in refs]
    dataset = _dataset(dataset, table, schema_name)
    specs = [
        AssetCheckSpec(schema_name, asset=key, blocking=blocking, partitions_def=partitions_def,
                       description=schema_description or _schema_what(short)),
        AssetCheckSpec(keys_name, asset=key, blocking=blocking, partitions_def=partitions_def,
                       additional_deps=[_key(r.asset) for r in refs],
                       description=keys_description or _keys_what(unique, refs)),
    ]

    @multi_asset_check(specs=specs, name=f"{short}_schema_and_keys", can_subset=True,
                       required_resource_keys={"lake", "spark"})
    def _checks(context):  # (annotations are strings here, which Dagster refuses for `context`)
        keys = _checked_keys(context, partitions_def)
        selected = {k.name for k in context.selected_asset_check_keys}
        observed, finish = [], {}
        frames = read_source(context, table, keys, short)
        if schema_name in selected:
            plan = _SchemaPlan(_schema_tables(schema, frames))
            finish[schema_name] = (len(plan.observed), lambda found: _schema_outcome(schema, plan.errors(found)))
            observed += plan.observed
        if keys_name in selected:
            df = frames if keys_table is None else read_source(context, keys_table, keys, short)
            frames, found_keys = _key_plan(df, unique, _referenced(context, refs), sample)
            finish[keys_name] = (len(frames), lambda found: _keys_outcome(unique, refs, found_keys(found)))
            observed += frames
        with unreduced_groupings(context.resources.spark.spark_session):
            measured = iter(measure(*observed))  # one pass for both
        storage, partitions = context.resources.lake.storage, _recorded_partitions(keys)
        for name, (n, outcome) in finish.items():
            passed, metadata, count = outcome([next(measured) for _ in range(n)])
            yield recorded(context, storage, AssetCheckResult(asset_key=key, check_name=name, passed=passed,
                                                              metadata=metadata),
                           dataset=dataset, asset=short, name=name, partitions=partitions, count=count)

    return _checks


# -- count accounting and reject rates ------------------------------------------------------------------
@dataclass(frozen=True)
class Accounting:
    """Where the records ingestion routed to a partition end up, counted without Spark.

    ``records_read`` comes from the ingestion manifests of ``formats`` (in ``zones``);
    each ``valid`` label counts a table (``(lake_table metadata, subtable or None)``) and
    the ``rejected`` label the rejects table, from Parquet footers. ``undated`` labels the
    records ingestion routed to their ingest date for want of a usable date (all rejected).
    """

    formats: tuple[RawFormat, ...]
    valid: Mapping[str, tuple[Mapping[str, Any], str | None]]
    rejected: tuple[str, Mapping[str, Any]]
    undated: str
    zones: Zones = field(default_factory=Zones)

    def counts(self, storage, keys: list[str]) -> dict[str, dict[str, int]]:
        """Per partition: ``records_read``, each valid label, the rejected label and the undated one."""
        from lake_assets.ingest.validated import validated_files
        from lake_assets.io_managers import partition_row_counts

        days = [dt.date.fromisoformat(k) for k in keys]
        files = validated_files(storage, days, self.formats, self.zones)
        out = {}
        for day in days:
            key = day.isoformat()
            footers: dict[int, dict] = {}  # one read per table, however many labels count it

            def rows(meta, sub):
                if id(meta) not in footers:
                    footers[id(meta)] = partition_row_counts(storage, meta, key)
                return footers[id(meta)][sub]

            label, rejects = self.rejected
            out[key] = {"records_read": sum(f.records for f in files if f.day == day),
                        **{v: rows(meta, sub) for v, (meta, sub) in self.valid.items()},
                        label: rows(rejects, None),
                        self.undated: sum(f.undated for f in files if f.day == day)}
        return out

    def written(self, counts: Mapping[str, int]) -> int:
        """Rows the partition's tables hold: valid and rejected."""
        return sum(counts[v] for v in self.valid) + counts[self.rejected[0]]


def accounting_check(asset, accounting: Accounting, *, name: str, dataset: str, description: str,
                     partitions_def: PartitionsDefinition, blocking: bool = True) -> AssetChecksDefinition:
    """A check that valid + rejected rows = records ingestion routed to each partition checked.

    Metadata: the totals (``records_read``, each valid label, the rejected label) and
    ``mismatched_partitions`` (each mismatched partition's counts); records the rows lost or gained.
    """
    if partitions_def is None:
        raise ValueError(f"check {name}: accounting is per partition; pass partitions_def")

    @recorded_check(asset=asset, name=name, dataset=dataset, blocking=blocking, partitions_def=partitions_def,
                    description=description)
    def _check(context, keys):
        counts = accounting.counts(context.resources.lake.storage, keys)
        broken = {d: c for d, c in counts.items() if accounting.written(c) != c["records_read"]}
        labels = ["records_read", *accounting.valid, accounting.rejected[0]]
        totals = {k: sum(c[k] for c in counts.values()) for k in labels}
        lost = sum(abs(c["records_read"] - accounting.written(c)) for c in broken.values())
        return AssetCheckResult(passed=not broken, metadata={
            **totals, "mismatched_partitions": MetadataValue.json(broken)}), lost

    return _check


def rate_result(rejected: int, total: int, thresholds: RateThresholds, **metadata) -> AssetCheckResult:
    """Passes at or under ``warn``; above it fails with WARN, above ``error`` with ERROR (blocking)."""
    rate = rejected / total if total else 0.0
    return AssetCheckResult(
        passed=rate <= thresholds.warn,
        severity=AssetCheckSeverity.ERROR if rate > thresholds.error else AssetCheckSeverity.WARN,
        metadata={"rejected": rejected, "total": total, "reject_rate": round(rate, 6),
                  "warn_threshold": thresholds.warn, "error_threshold": thresholds.error, **metadata},
    )


def rate_check(asset, accounting: Accounting, thresholds: RateThresholds | Callable[[], RateThresholds], *,
               name: str, dataset: str, description: str, partitions_def: PartitionsDefinition,
               blocking: bool = True) -> AssetChecksDefinition:
    """A check on the share of the partitions' dated rows rejected (:func:`rate_result`).

    Undated records (rejected on their ingest date) are left out of both counts and
    reported apart under the accounting's ``undated`` label. ``thresholds`` may be a
    callable, read when the check runs. Records the dated rejected rows.
    """
    if partitions_def is None:
        raise ValueError(f"check {name}: a rate is per partition; pass partitions_def")

    @recorded_check(asset=asset, name=name, dataset=dataset, blocking=blocking, partitions_def=partitions_def,
                    description=description)
    def _check(context, keys):
        counts = accounting.counts(context.resources.lake.storage, keys).values()
        undated = sum(c[accounting.undated] for c in counts)
        rejected = sum(c[accounting.rejected[0]] for c in counts) - undated
        total = sum(accounting.written(c) for c in counts) - undated
        limits = thresholds() if callable(thresholds) else thresholds
        return rate_result(rejected, total, limits, **{accounting.undated: undated}), rejected

    return _check
