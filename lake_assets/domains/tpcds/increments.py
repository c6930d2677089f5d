"""What changed since an asset last built, from the lake's own listing: the partitions to rebuild.

A tpcds fact's months come from its rows (a sale's date, via ``date_dim``), so
they cannot be fixed ahead as Dagster partitions a run names: the assets work
out, from the data, which months a delivery touches and rebuild exactly those
(contract §5: partitions and dimensions a delivery does not touch keep their
files and ``load_timestamp``). What they compare is cheap and already there:
each file of an input table has a version (its size and modification time, from
one listing), and each asset keeps, in ``<its location>/_inputs.json``, the
versions of the inputs it last built from. A partition whose version differs
(new, rewritten or gone) changed. The file is written after the asset's outputs
are published, so a crash in between only makes the next build redo the same
partitions (idempotent).

``_inputs.json`` starts with ``_``: no catalog and no reader takes it for data.
"""
from __future__ import annotations

import json
from typing import Mapping

from lake_assets.catalog.tables import Table
from lake_assets.lake import LakeStorage
from lake_assets.lake.layout import join

Versions = dict[str, str]

INPUTS_FILE = "_inputs.json"


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


def consumed(storage: LakeStorage, location: str) -> dict[str, Versions] | None:
    """The input versions an asset writing at ``location`` last built from; None if it never finished a build."""
    try:
        return json.loads(storage.read_text(join(location, INPUTS_FILE)))
    except FileNotFoundError:
        return None


def remember(storage: LakeStorage, location: str, inputs: Mapping[str, Versions]) -> None:
    """Record what a build read, once its outputs are published."""
    storage.write_text(join(location, INPUTS_FILE), json.dumps(dict(inputs), indent=1, sort_keys=True))
