"""The schema-drift check, one per asset that writes declared tables, built for every domain at once.

It compares the schema of the files a run just wrote (Parquet footers: no data
read, no Spark) with the columns the catalog gives readers. A column in the
files but not in the catalog is an added column: readers do not see it yet, a
warning. A catalog column missing from the files, or typed differently, breaks
readers' queries: an error, blocking where the table feeds further tables.
"""

from typing import Iterable

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetChecksDefinition,
    AssetKey,
    AssetsDefinition,
    MetadataValue,
)

from lake_assets.catalog.tables import Table, tables_of
from lake_assets.lake import LakeStorage, partition_path

#: Zones nothing downstream reads: drift there warns or fails, but blocks nothing.
TERMINAL_ZONES = ("rejected", "quarantine", "discarded", "archive")


def spark_type_name(t: pa.DataType) -> str:
    """The Spark simple type name of a Parquet file's Arrow type: how declarations and catalogs spell columns."""
    from pyspark.sql.pandas.types import from_arrow_type

    try:
        return from_arrow_type(t, prefer_timestamp_ntz=True).simpleString()
    except (TypeError, ValueError):  # a type Spark has no name for: its Arrow name, never equal
        return str(t)


def drift(written: pa.Schema, registered: list[tuple[str, str]], partition_keys: Iterable[str] = ()) -> dict:
    """Columns added, removed and retyped in ``written`` against the catalog's ``registered`` columns."""
    keys = set(partition_keys)
    have = {f.name: spark_type_name(f.type) for f in written if f.name not in keys}
    want = dict(registered)
    return {
        "added": sorted(set(have) - set(want)),
        "removed": sorted(set(want) - set(have)),
        "retyped": sorted(f"{c}: {want[c]} -> {have[c]}" for c in set(have) & set(want) if have[c] != want[c]),
    }


def _files_to_check(storage: LakeStorage, table: Table, keys: list[str] | None) -> list[str]:
    """The files a run wrote: its partitions' (daily tables), else the table's newest file."""
    if keys and table.daily:
        return [p for p in (table.file_path(partition_path(table.partitioning, k)) for k in keys)
                if storage.is_file(p)]
    files = table.data_files(storage)
    return [max(files, key=lambda f: (f.mtime_ns, f.path)).path] if files else []


def table_drift_result(storage: LakeStorage, catalog, tables: dict[str, Table],
                       keys: list[str] | None) -> AssetCheckResult:
    """The check's verdict over every table an asset writes."""
    import pyarrow.parquet as pq

    found: dict[str, dict] = {}
    unregistered = []
    for table in tables.values():
        registered = catalog.describe(table) if catalog.kind != "none" else None
        if registered is None:
            # No catalog (LAKE_CATALOG=none) or not registered yet: readers get the declaration.
            unregistered.append(table.qualified_name)
        columns = registered.columns if registered else [(f.name, f.dataType.simpleString()) for f in table.columns]
        for path in _files_to_check(storage, table, keys):
            with storage.open_random(path) as fh:
                schema = pq.ParquetFile(fh).schema_arrow
            d = drift(schema, columns, [k.name for k in table.partition_keys])
            if any(d.values()):
                found[f"{table.qualified_name} ({path})"] = d
                break
    errors = any(d["removed"] or d["retyped"] for d in found.values())
    return AssetCheckResult(
        passed=not found,
        severity=AssetCheckSeverity.ERROR if errors else AssetCheckSeverity.WARN,
        metadata={"drift": MetadataValue.json(found), "tables": MetadataValue.json(sorted(
            t.qualified_name for t in tables.values())), "checked_against_declaration": MetadataValue.json(unregistered)},
    )


def schema_drift_checks(assets: Iterable[AssetsDefinition]) -> list[AssetChecksDefinition]:
    """A ``schema_drift`` check for every asset whose metadata declares lake tables."""
    checks = []
    for assets_def in assets:
        if not isinstance(assets_def, AssetsDefinition):
            continue
        for spec in assets_def.specs:
            tables = tables_of(spec.metadata or {})
            if tables:
                # Recorded in the metrics zone beside the table's other numbers (its metrics dataset,
                # else its domain's).
                dataset = (spec.metadata or {}).get("lake/metrics_dataset") or next(iter(tables.values())).domain
                checks.append(_drift_check(spec.key, tables, assets_def.partitions_def, dataset))
    return checks


def _drift_check(key: AssetKey, tables: dict[str, Table], partitions_def, dataset: str) -> AssetChecksDefinition:
    from lake_assets.quality.checks import recorded_check

    blocking = any(t.zone not in TERMINAL_ZONES for t in tables.values())
    names = ", ".join(sorted(t.qualified_name for t in tables.values()))

    @recorded_check(asset=key, name="schema_drift", dataset=dataset, partitions_def=partitions_def,
                    blocking=blocking, resources=("catalog",),
                    description=f"The files written match the catalog's columns for {names}: an added column "
                                "warns; a removed or retyped one is an error.")
    def _check(context, keys):
        result = table_drift_result(context.resources.lake.storage, context.resources.catalog, tables,
                                    None if keys == [None] else keys)
        drifted = result.metadata["drift"].value
        return result, sum(len(v) for d in drifted.values() for v in d.values())

    return _check
