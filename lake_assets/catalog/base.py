"""What every catalog backend does (embedded DuckDB, AWS Glue): the contract they share.

A backend registers declared tables and their partitions; it never infers a
schema from data and never crawls. :class:`~lake_assets.catalog.resource.CatalogResource`
drives one or more backends after every write, and ``lake catalog sync``
drives them from the lake's files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from lake_assets.catalog.tables import Table
from lake_assets.lake import LakeStorage


@dataclass(frozen=True)
class PartitionEntry:
    """One registered partition: its folder under the table's location, its values, files and rows.

    An unpartitioned table has one entry with ``path == ""`` and no values.
    """

    path: str
    values: tuple[str, ...]
    files: tuple[str, ...]  # lake-relative paths of the partition's data files
    rows: int


@dataclass
class RegisteredTable:
    """A table as a catalog knows it (what the drift check and ``lake catalog list`` read)."""

    qualified_name: str
    location: str  # a URI: /abs/path or s3://bucket/prefix/...
    columns: list[tuple[str, str]]  # (name, Hive type), data columns only
    partition_keys: list[tuple[str, str]]
    partitions: dict[str, int] = field(default_factory=dict)  # partition path -> rows (-1: unknown)
    description: str = ""

    @property
    def rows(self) -> int:
        return sum(n for n in self.partitions.values() if n > 0)


class Catalog(Protocol):
    """A catalog backend. Each call is idempotent: repeating it changes nothing."""

    name: str

    def register_table(self, storage: LakeStorage, table: Table) -> None:
        """Create the table (and its database/schema) or update it to the declared schema."""

    def add_partitions(self, storage: LakeStorage, table: Table, entries: list[PartitionEntry]) -> None:
        """Register (or refresh) these partitions."""

    def remove_partitions(self, storage: LakeStorage, table: Table, paths: list[str]) -> None:
        """Unregister these partitions (absent ones are ignored)."""

    def replace_partitions(self, storage: LakeStorage, table: Table, entries: list[PartitionEntry]) -> None:
        """Register exactly these partitions: others registered before are removed (``lake catalog sync``)."""

    def update(self, storage: LakeStorage, table: Table, add: list[PartitionEntry], remove: list[str], *,
               exact: bool = False) -> None:
        """``register_table``, then ``add`` registered (all the table has, with ``exact``) and ``remove``
        unregistered: what a write changed, as one change where the backend has transactions."""

    def describe(self, table: Table) -> RegisteredTable | None:
        """The table as registered, or None when it is not."""


def update_in_steps(catalog: Catalog, storage: LakeStorage, table: Table, add: list[PartitionEntry],
                    remove: list[str], *, exact: bool = False) -> None:
    """:meth:`Catalog.update` as its three calls, for a backend with no transaction spanning them (Glue)."""
    catalog.register_table(storage, table)
    if exact:
        catalog.replace_partitions(storage, table, add)
    elif add:
        catalog.add_partitions(storage, table, add)
    if remove:
        catalog.remove_partitions(storage, table, remove)


def partition_entry(storage: LakeStorage, table: Table, path: str, rows: int) -> PartitionEntry:
    """The entry of a partition just written: its files are known from the declaration, or listed."""
    values = table.partition_values(path)
    if table.file_stem:
        files = (table.file_path(path),)
    else:
        folder = "/".join(p for p in (table.location, path) if p)
        files = tuple(sorted(f.path for f in storage.list_files(folder, recursive=False)
                             if table.is_table_file(f.path[len(table.location) + 1:])))
    return PartitionEntry(path, values, files, rows)


def scan_partitions(storage: LakeStorage, table: Table) -> list[PartitionEntry]:
    """Every partition of a table found in the lake, rows from Parquet footers (no data read).

    Partitions whose files hold no rows are left out: a catalog lists what has data.
    """
    import pyarrow.parquet as pq

    by_path: dict[str, list[str]] = {}
    for f in table.data_files(storage):
        rel = f.path[len(table.location) + 1:]
        by_path.setdefault(rel.rsplit("/", 1)[0] if "/" in rel else "", []).append(f.path)
    out = []
    for path, files in sorted(by_path.items()):
        rows = 0
        for rel in files:
            with storage.open_random(rel) as fh:
                rows += pq.ParquetFile(fh).metadata.num_rows
        if rows:
            out.append(PartitionEntry(path, table.partition_values(path), tuple(sorted(files)), rows))
    return out
