"""The table registry's unit: one declaration per table the lake writes.

A domain declares each of its tables once, as a :class:`Table`: where it lives
under ``LAKE_ROOT``, how it is partitioned (and so its partition keys with their
types), the schema its files are written with (the very StructType the code
writes with, never a copy), a one-line description and the asset that writes it.
Everything else reads that declaration: the IO manager (where partitions go),
the catalogs (DuckDB views, Glue tables), ``lake sql``, ``lake catalog`` and the
CLI's summary. Quarantine and rejected rows are tables like any other.

No Spark session, no storage and no Dagster here: ``pyspark.sql.types`` is plain
Python, so declaring a table costs nothing at import.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from pyspark.sql import types as T

from lake_assets.lake.layout import PartitionStyle, join

#: The partition keys each daily path style spells, with their catalog (Hive) types.
_STYLE_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    PartitionStyle.YMD.value: (("year", "int"), ("month", "int"), ("day", "int")),
    PartitionStyle.DATE.value: (("date", "date"),),
    PartitionStyle.EVENT_DATE.value: (("event_date", "date"),),
}

#: Zones a table can live in (the seeds' S3 folders), and the order the summary lists them.
ZONES = ("bronze", "processed", "rejected", "analytics", "silver", "quarantine", "discarded", "gold", "ml", "curated",
         "archive")

#: Hive's value for a NULL partition key (Spark, Glue and Athena all spell it so).
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class PartitionKey:
    name: str
    type: str  # a Hive type name: int, date, string


@dataclass(frozen=True)
class Table:
    """One table of the lake, declared by its domain.

    ``partitioning`` is a daily :class:`PartitionStyle` value (``ymd``, ``date``,
    ``event_date``), or ``"<key>:<type>"`` for one other Hive-style key (orders'
    ``order_date:date``, ``extracted_at:string``), or None for an unpartitioned
    table (its files sit directly in ``location``, replaced whole).
    ``file_stem`` names the file of each partition (``<stem>.parquet``); None
    means every ``*.parquet`` file of a partition belongs to the table.
    """

    domain: str
    name: str
    zone: str
    location: str
    schema: T.StructType
    description: str
    asset: str
    partitioning: str | None = PartitionStyle.YMD.value
    file_stem: str | None = "part-00000"

    def __post_init__(self) -> None:
        if self.zone not in ZONES:
            raise ValueError(f"{self.qualified_name}: zone {self.zone!r} is not one of {ZONES}")
        if self.partitioning and ":" not in self.partitioning and self.partitioning not in _STYLE_KEYS:
            raise ValueError(f"{self.qualified_name}: unknown partitioning {self.partitioning!r}")

    # -- naming ---------------------------------------------------------------------------------
    @property
    def qualified_name(self) -> str:
        """``domain.name``: the SQL name, the same in DuckDB (schema.view) and Glue (database.table)."""
        return f"{self.domain}.{self.name}"

    # -- partitions ----------------------------------------------------------------------------
    @property
    def partition_keys(self) -> tuple[PartitionKey, ...]:
        if not self.partitioning:
            return ()
        if ":" in self.partitioning:
            name, type_ = self.partitioning.split(":", 1)
            return (PartitionKey(name, type_),)
        return tuple(PartitionKey(n, t) for n, t in _STYLE_KEYS[self.partitioning])

    @property
    def daily(self) -> bool:
        """Partitioned by a daily path style (the IO manager's kind of table)."""
        return bool(self.partitioning) and ":" not in self.partitioning

    @property
    def columns(self) -> list[T.StructField]:
        """The data columns a catalog registers: the file schema less any partition key.

        Athena and Hive reject a table whose partition key is also a data column, so a
        column written both in the files and in the path (``daily_activity``'s ``date``)
        is registered once, as the partition key.
        """
        keys = {k.name for k in self.partition_keys}
        return [f for f in self.schema.fields if f.name not in keys]

    def partition_values(self, partition_path: str) -> tuple[str, ...]:
        """``year=2024/month=03/day=05`` -> ``("2024", "03", "05")``, checked against the keys."""
        if not self.partition_keys:
            if partition_path:
                raise ValueError(f"{self.qualified_name} is not partitioned; got {partition_path!r}")
            return ()
        parts = partition_path.strip("/").split("/")
        names = [k.name for k in self.partition_keys]
        if len(parts) != len(names) or any(not p.startswith(f"{n}=") for p, n in zip(parts, names)):
            raise ValueError(f"{partition_path!r} is not a partition of {self.qualified_name} "
                             f"({'/'.join(n + '=...' for n in names)})")
        return tuple(p.split("=", 1)[1] for p in parts)

    def partition_path(self, values: Iterable[str]) -> str:
        """The folder of a partition, relative to ``location``: ``("2024","03","05")`` -> ``year=2024/...``."""
        values = tuple(values)
        return "/".join(f"{k.name}={v}" for k, v in zip(self.partition_keys, values, strict=True))

    def is_table_file(self, rel_to_location: str) -> bool:
        """Whether a file under ``location`` is one of this table's data files (at the partition depth)."""
        parts = rel_to_location.split("/")
        if len(parts) != len(self.partition_keys) + 1 or any(p.startswith(("_", ".")) for p in parts):
            return False
        if any("=" not in p for p in parts[:-1]):
            return False
        name = parts[-1]
        return name == f"{self.file_stem}.parquet" if self.file_stem else name.endswith(".parquet")

    def data_files(self, storage) -> list:
        """The table's data files in the lake (``LakeFile`` objects), at every partition."""
        return [f for f in storage.list_files(self.location) if self.is_table_file(f.path[len(self.location) + 1:])]

    def file_path(self, partition_path: str = "") -> str:
        """The lake path of a partition's file (``file_stem`` tables): what the IO manager writes."""
        if not self.file_stem:
            raise ValueError(f"{self.qualified_name} has no single file per partition")
        return join(self.location, partition_path, f"{self.file_stem}.parquet")

    # -- serialized into asset metadata, read back by the IO manager and the catalogs ------------
    def to_json(self) -> str:
        return json.dumps({"domain": self.domain, "name": self.name, "zone": self.zone,
                           "location": self.location, "schema": self.schema.jsonValue(),
                           "description": self.description, "asset": self.asset,
                           "partitioning": self.partitioning, "file_stem": self.file_stem},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Table":
        d = json.loads(text)
        return cls(**{**d, "schema": T.StructType.fromJson(d["schema"])})

    def asset_metadata(self) -> dict:
        """Definition metadata naming the table: the UI shows its columns; :func:`tables_of` reads it back."""
        return tables_metadata({"": self})


def _ui_metadata(table: Table) -> dict:
    from dagster import TableColumn, TableSchema

    return {
        "dagster/table_name": table.qualified_name,
        "dagster/column_schema": TableSchema(columns=[
            TableColumn(f.name, f.dataType.simpleString(), description=None) for f in table.schema.fields]),
        "lake/location": table.location,
    }


def tables_metadata(tables: Mapping[str, Table]) -> dict:
    """Metadata for an asset writing several tables (``""`` for one, else subtable name -> table)."""
    first = next(iter(tables.values()))
    return {"lake/tables": json.dumps({k: t.to_json() for k, t in tables.items()}), **_ui_metadata(first)}


def tables_of(metadata: Mapping) -> dict[str, Table]:
    """The tables an asset's definition metadata declares (``""`` -> the table, or subtable -> table)."""
    raw = metadata.get("lake/tables")
    if raw is None:
        return {}
    raw = getattr(raw, "value", raw)
    return {k: Table.from_json(v) for k, v in json.loads(raw).items()}


@dataclass
class Registry:
    """Every table of the code location, from every domain, by qualified name."""

    tables: dict[str, Table] = field(default_factory=dict)

    @classmethod
    def of(cls, tables: Iterable[Table]) -> "Registry":
        out = cls()
        for t in tables:
            if t.qualified_name in out.tables:
                raise ValueError(f"table {t.qualified_name} is declared twice")
            out.tables[t.qualified_name] = t
        locations = [t.location for t in out.tables.values()]
        for a in locations:
            for b in locations:
                if a != b and b.startswith(a + "/") and not b[len(a) + 1:].split("/")[0].count("="):
                    raise ValueError(f"table locations overlap: {a} holds {b}")
        return out

    def __iter__(self):
        return iter(self.tables.values())

    def __len__(self) -> int:
        return len(self.tables)

    def get(self, name: str) -> Table:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"no table {name!r}; known: {', '.join(sorted(self.tables))}") from None

    @property
    def domains(self) -> list[str]:
        return sorted({t.domain for t in self})

    def of_domain(self, domain: str) -> list[Table]:
        return [t for t in self if t.domain == domain]
