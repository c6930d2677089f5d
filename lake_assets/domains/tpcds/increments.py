"""What changed since the last plan, from the lake's own listing: what a delivery touches.

A tpcds fact's months come from its rows (a sale's date, via ``date_dim``), so
``tpcds_silver_plan`` works out, from the data, which months a delivery touches
(contract §5: partitions and dimensions a delivery does not touch keep their
files and ``load_timestamp``). What it compares is cheap and already there:
each file of an input table has a version (its size and modification time, from
one listing), and each plan keeps the versions it planned from (in
``silver/tpcds/_plans/<run id>.json``, named by the plan's materialization). A
file whose version differs (new, rewritten or gone) changed.
"""
from __future__ import annotations

from lake_assets.catalog.tables import Table
from lake_assets.lake import LakeStorage

Versions = dict[str, str]


def versions(storage: LakeStorage, table: Table) -> Versions:
    """Each data file of ``table`` by its path under the table's location (``sold_month=1999-01/part-00000.parquet``,
    ``<sha>.parquet``), with its version."""
    base = len(table.location) + 1
    return {f.path[base:]: f"{f.size}:{f.mtime_ns}" for f in table.data_files(storage)}


def partition_of(path: str) -> str | None:
    """The partition value a file's path names (``sold_month=1999-01/part-00000.parquet`` -> ``1999-01``);
    None for a file at the table's top level."""
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    return folder.rsplit("=", 1)[1] if "=" in folder else None


def changed(now: Versions, before: Versions) -> set[str]:
    """Files added, rewritten or removed between two listings."""
    return {p for p in set(now) | set(before) if now.get(p) != before.get(p)}
