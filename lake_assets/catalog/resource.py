"""The catalog as a Dagster resource: which backends to keep in sync, read from the environment.

``LAKE_CATALOG``: ``duckdb`` (default; the embedded catalog file only), ``glue``
(the embedded catalog and the AWS Glue Data Catalog), or ``none``.
``LAKE_CATALOG_PATH``: the DuckDB file (default: in the Dagster home, one per lake root;
``catalog.duckdb`` for the project-local lake).
``LAKE_GLUE_DATABASE_PREFIX``: Glue databases are ``<prefix><domain>`` (default ``lake_``).
"""
from __future__ import annotations

import os
from functools import cached_property
from typing import Iterable, Mapping

from dagster import ConfigurableResource
from pydantic import Field

from lake_assets.settings import DEFAULT_GLUE_DATABASE_PREFIX
from lake_assets.catalog.base import Catalog, RegisteredTable, partition_entry, scan_partitions
from lake_assets.catalog.tables import Table
from lake_assets.lake import LakeStorage

KINDS = ("duckdb", "glue", "none")


class CatalogResource(ConfigurableResource):
    """Registers declared tables and the partitions each write publishes, in every configured backend."""

    kind: str = Field(default="duckdb", description="LAKE_CATALOG: duckdb | glue | none")
    duckdb_path: str = Field(default="", description="LAKE_CATALOG_PATH: the embedded catalog file")
    glue_database_prefix: str = Field(default=DEFAULT_GLUE_DATABASE_PREFIX, description="LAKE_GLUE_DATABASE_PREFIX")
    region: str | None = Field(default=None, description="AWS region for Glue (else the AWS chain's)")
    endpoint_url: str | None = Field(default=None, description="overrides AWS_ENDPOINT_URL for Glue")

    @classmethod
    def from_env(cls, path: str | None = None, root: str | None = None) -> "CatalogResource":
        """From the environment; ``root`` is the lake whose catalog this is (default LAKE_ROOT)."""
        from lake_assets import settings

        kind = (os.environ.get("LAKE_CATALOG") or "duckdb").lower()
        if kind not in KINDS:
            raise ValueError(f"LAKE_CATALOG={kind!r} is not one of {', '.join(KINDS)}")
        return cls(kind=kind, duckdb_path=path or settings.catalog_path(root),
                   glue_database_prefix=settings.glue_database_prefix())

    @cached_property
    def _backends(self) -> list[Catalog]:
        """Built once per resource: a Glue backend keeps its client and the databases it has seen."""
        return self._make_backends()

    def backends(self) -> list[Catalog]:
        return self._backends

    def _make_backends(self) -> list[Catalog]:
        if self.kind == "none":
            return []
        from lake_assets.catalog.duckdb import DuckDBCatalog

        out: list[Catalog] = [DuckDBCatalog(self.duckdb_path)]
        if self.kind == "glue":
            from lake_assets.catalog.glue import GlueCatalog

            out.append(GlueCatalog(self.glue_database_prefix, region=self.region, endpoint_url=self.endpoint_url))
        return out

    def register(self, storage: LakeStorage, table: Table, partitions: Mapping[str, int]) -> None:
        """After a write: the table (from its declared schema) and the partitions it wrote.

        ``partitions`` maps a partition path (``""`` for an unpartitioned table) to its
        rows; a partition written with no rows (emptied) or deleted (rows 0) is unregistered.
        """
        backends = self.backends()
        if not backends:
            return
        add = [partition_entry(storage, table, p, n) for p, n in sorted(partitions.items()) if n > 0]
        remove = sorted(p for p, n in partitions.items() if n <= 0)
        for backend in backends:
            backend.update(storage, table, add, remove)

    def sync(self, storage: LakeStorage, tables: Iterable[Table]) -> dict[str, int]:
        """Register every table and exactly the partitions found in the lake (recovery; a lake
        written elsewhere). Returns partitions registered per table."""
        found: dict[str, int] = {}
        backends = self.backends()
        for table in tables:
            entries = scan_partitions(storage, table)
            for backend in backends:
                backend.update(storage, table, entries, [], exact=True)
            found[table.qualified_name] = len(entries)
        return found

    def registered(self) -> dict[str, RegisteredTable]:
        """Every table the embedded catalog holds, by qualified name, read in one pass (summary, list)."""
        if self.kind == "none":
            return {}
        return {t.qualified_name: t for t in self.backends()[0].list_tables()}

    def describe(self, table: Table) -> RegisteredTable | None:
        """The table as the embedded catalog registered it (kept whatever else is configured)."""
        backends = self.backends()
        return backends[0].describe(table) if backends else None
