"""The AWS Glue Data Catalog backend: the lake's tables as Athena reads them, without a crawler.

One Glue database per domain (``<prefix><domain>``); each declared table is a
Hive-style external Parquet table whose columns, partition keys and location come
from its declaration (:class:`~lake_assets.catalog.tables.Table`), never from
inference, so the catalog is right the moment a write finishes. Partitions are
registered in batches (Glue's limits: 100 per create or update, 25 per delete) with
each partition's row and file counts in its Parameters (``numRows``, ``numFiles``,
the Hive statistics names), which is how :meth:`GlueCatalog.describe` reports rows.
Each partition carries its own copy of the columns, so a declaration change reaches
the partitions too: new partition keys delete them all (their values no longer fit;
the next write or ``lake catalog sync`` adds them back), new data columns are copied
into every partition (else Athena fails with ``HIVE_PARTITION_SCHEMA_MISMATCH``).
An unpartitioned table keeps those counts in its own Parameters, written with
``SkipArchive`` so that a data refresh does not add a table version.

boto3 resolves credentials, region and ``AWS_ENDPOINT_URL`` itself (moto,
LocalStack); ``endpoint_url`` overrides the latter.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any, Iterable

from botocore.exceptions import ClientError

from lake_assets.settings import DEFAULT_GLUE_DATABASE_PREFIX
from lake_assets.catalog.base import PartitionEntry, RegisteredTable, update_in_steps
from lake_assets.catalog.ddl import database_name, hive_type, table_location
from lake_assets.catalog.tables import Table
from lake_assets.lake import LakeStorage

PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"

#: Glue API limits per call (botocore's service model: PartitionInputList max 100,
#: BatchUpdatePartitionRequestEntryList max 100, BatchDeletePartitionValueList max 25).
CREATE_BATCH = 100
UPDATE_BATCH = 100
DELETE_BATCH = 25
#: Partition/table parameters holding the counts of what was registered (Hive statistics names).
ROWS, FILES = "numRows", "numFiles"


class GlueCatalogError(RuntimeError):
    """Glue refused part of a request (the message names the table and the partition values)."""


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _storage_descriptor(location: str, table: Table) -> dict[str, Any]:
    return {
        "Columns": [
            {"Name": f.name.lower(), "Type": hive_type(f.dataType),
             **({"Comment": str(f.metadata["comment"])[:255]} if f.metadata.get("comment") else {})}
            for f in table.columns],
        "Location": location,
        "InputFormat": PARQUET_INPUT,
        "OutputFormat": PARQUET_OUTPUT,
        "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
        "Compressed": False,
        "StoredAsSubDirectories": False,
    }


def table_input(storage: LakeStorage, table: Table) -> dict[str, Any]:
    """The Glue ``TableInput`` of a declared table (names lower case: Glue lowers them anyway,
    and a case difference would otherwise read as a change on every registration)."""
    return {
        "Name": table.name.lower(),
        "Description": table.description[:2048],
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE",
                       "lake.asset": table.asset, "lake.zone": table.zone},
        "StorageDescriptor": _storage_descriptor(table_location(storage, table), table),
        "PartitionKeys": [{"Name": k.name, "Type": k.type} for k in table.partition_keys],
    }


def _columns(glue_table: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The data columns of a Glue table, partition or input, as compared (absent comment = "")."""
    return [(c["Name"], c["Type"], c.get("Comment", ""))
            for c in glue_table.get("StorageDescriptor", {}).get("Columns", [])]


def _keys(glue_table: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k["Name"], k["Type"]) for k in glue_table.get("PartitionKeys", [])]


def _declared(glue_table: dict[str, Any], params: Iterable[str]) -> tuple:
    """What a registration decides, from a Glue table or a TableInput: equal means no update."""
    sd = glue_table.get("StorageDescriptor", {})
    have = glue_table.get("Parameters", {})
    return (
        glue_table.get("Description", ""), glue_table.get("TableType"),
        {k: have.get(k) for k in params},
        sd.get("Location"), sd.get("InputFormat"), sd.get("OutputFormat"),
        sd.get("SerdeInfo", {}).get("SerializationLibrary"),
        _columns(glue_table), _keys(glue_table),
    )


def _writable(glue_table: dict[str, Any]) -> dict[str, Any]:
    """A TableInput from a get_table answer (update_table refuses the read-only fields)."""
    keys = ("Name", "Description", "Owner", "Retention", "StorageDescriptor", "PartitionKeys",
            "TableType", "Parameters", "ViewOriginalText", "ViewExpandedText")
    return {k: glue_table[k] for k in keys if k in glue_table}


def _rewritten(partition: dict[str, Any], columns: list[dict[str, Any]]) -> dict[str, Any]:
    """A PartitionInput from a get_partitions answer with these columns: the partition's own
    location, formats and parameters kept (an update replaces the whole partition)."""
    keys = ("Values", "LastAccessTime", "Parameters", "LastAnalyzedTime")
    return {**{k: partition[k] for k in keys if k in partition},
            "StorageDescriptor": {**partition.get("StorageDescriptor", {}), "Columns": columns}}


class GlueCatalog:
    """The Glue Data Catalog as a :class:`~lake_assets.catalog.base.Catalog` backend."""

    name = "glue"

    def __init__(self, database_prefix: str = DEFAULT_GLUE_DATABASE_PREFIX, *, region: str | None = None,
                 endpoint_url: str | None = None) -> None:
        self.database_prefix = database_prefix
        self.region = region
        self.endpoint_url = endpoint_url
        self._databases: set[str] = set()

    @cached_property
    def client(self):
        """Created on first use, so building resources (and importing definitions) calls no AWS."""
        import boto3
        from botocore.config import Config

        # Glue throttles bursts of catalog calls; the standard retry mode backs off on them.
        return boto3.client("glue", region_name=self.region, endpoint_url=self.endpoint_url,
                            config=Config(retries={"mode": "standard", "max_attempts": 10}))

    def database(self, domain: str) -> str:
        return database_name(self.database_prefix, domain)

    def _where(self, table: Table) -> dict[str, str]:
        return {"DatabaseName": self.database(table.domain), "TableName": table.name.lower()}

    # -- tables ------------------------------------------------------------------------------------
    def _get_table(self, table: Table) -> dict[str, Any] | None:
        try:
            return self.client.get_table(DatabaseName=self.database(table.domain),
                                         Name=table.name.lower())["Table"]
        except ClientError as e:  # EntityNotFoundException: no database, or no table
            if _code(e) == "EntityNotFoundException":
                return None
            raise

    def _ensure_database(self, domain: str) -> None:
        db = self.database(domain)
        if db in self._databases:
            return
        try:
            self.client.create_database(DatabaseInput={
                "Name": db, "Description": f"Lake domain {domain}: tables registered by lake_assets"})
        except ClientError as e:
            if _code(e) != "AlreadyExistsException":
                raise
        self._databases.add(db)

    def update(self, storage: LakeStorage, table: Table, add: list[PartitionEntry], remove: list[str], *,
               exact: bool = False) -> None:
        update_in_steps(self, storage, table, add, remove, exact=exact)

    def register_table(self, storage: LakeStorage, table: Table) -> None:
        """Create the table, or update it when its declaration changed (Glue keeps the old one as a
        version). An unchanged declaration makes no write, so versions are not multiplied.

        An update reaches the partitions first: changed partition keys delete them all, changed
        data columns are written into each one. Only then is the table updated, so a failure in
        between leaves the table still differing and the next registration finishes the job.
        """
        wanted = table_input(storage, table)
        current = self._get_table(table)
        if current is None:
            self._ensure_database(table.domain)
            try:
                self.client.create_table(DatabaseName=self.database(table.domain), TableInput=wanted)
                return
            except ClientError as e:  # another writer created it meanwhile: compare with theirs
                if _code(e) != "AlreadyExistsException":
                    raise
                current = self._get_table(table)
        if _declared(current, wanted["Parameters"]) == _declared(wanted, wanted["Parameters"]):
            return
        # Keep parameters set by others (row counts, Athena's, Lake Formation's).
        params = {**current.get("Parameters", {}), **wanted["Parameters"]}
        if _keys(current) != _keys(wanted):
            if _keys(current):
                self._delete(table, [tuple(p["Values"]) for p in self._partitions(table, columns=False)])
            for k in (ROWS, FILES):  # an unpartitioned table's counts no longer describe it either
                params.pop(k, None)
        elif _columns(current) != _columns(wanted) and _keys(wanted):
            self._rewrite_columns(table, wanted["StorageDescriptor"]["Columns"])
        self.client.update_table(DatabaseName=self.database(table.domain),
                                 TableInput={**wanted, "Parameters": params})

    def _set_table_counts(self, table: Table, counts: dict[str, str] | None) -> None:
        """An unpartitioned table's row/file counts, in its parameters (None clears them).

        ``SkipArchive``: a data refresh is not a schema version (moto ignores the flag).
        """
        current = self._get_table(table)
        if current is None:
            raise GlueCatalogError(f"{table.qualified_name} is not registered in Glue")
        params = {k: v for k, v in current.get("Parameters", {}).items() if k not in (ROWS, FILES)}
        params.update(counts or {})
        if params != current.get("Parameters", {}):
            self.client.update_table(DatabaseName=self.database(table.domain), SkipArchive=True,
                                     TableInput={**_writable(current), "Parameters": params})

    # -- partitions --------------------------------------------------------------------------------
    def _partition_input(self, storage: LakeStorage, table: Table, entry: PartitionEntry) -> dict[str, Any]:
        return {"Values": list(entry.values),
                "StorageDescriptor": _storage_descriptor(table_location(storage, table, entry.path), table),
                "Parameters": {ROWS: str(entry.rows), FILES: str(len(entry.files))}}

    def add_partitions(self, storage: LakeStorage, table: Table, entries: list[PartitionEntry]) -> None:
        """Register partitions, 100 per call; ones already registered are updated in place
        (a rewrite changes their rows, and perhaps their columns), so repeating is harmless."""
        if not table.partition_keys:
            for e in entries:  # one entry, path "": the table's data
                self._set_table_counts(table, {ROWS: str(e.rows), FILES: str(len(e.files))})
            return
        where = self._where(table)
        inputs = [self._partition_input(storage, table, e) for e in entries]
        by_values = {tuple(p["Values"]): p for p in inputs}
        existing: list[dict[str, Any]] = []
        failures: list[str] = []
        for chunk in _chunks(inputs, CREATE_BATCH):
            answer = self.client.batch_create_partition(**where, PartitionInputList=chunk)
            for err in answer.get("Errors", []):  # moto omits the key on success
                values = tuple(err.get("PartitionValues", []))
                detail = err.get("ErrorDetail", {})
                if detail.get("ErrorCode") == "AlreadyExistsException" and values in by_values:
                    existing.append(by_values[values])
                else:
                    failures.append(f"{list(values)}: {detail.get('ErrorCode')}: {detail.get('ErrorMessage')}")
        failures += self._update(table, existing)
        if failures:
            raise GlueCatalogError(f"Glue refused partitions of {where['DatabaseName']}.{where['TableName']}: "
                                   + "; ".join(failures))

    def _update(self, table: Table, inputs: list[dict[str, Any]], *, missing_ok: bool = False) -> list[str]:
        """Replace partitions by their PartitionInputs, 100 per call; the entries Glue refused.

        ``missing_ok``: a partition deleted meanwhile is not a failure.
        """
        failures: list[str] = []
        for chunk in _chunks(inputs, UPDATE_BATCH):
            answer = self.client.batch_update_partition(**self._where(table), Entries=[
                {"PartitionValueList": p["Values"], "PartitionInput": p} for p in chunk])
            for err in answer.get("Errors", []):  # moto omits the key on success
                detail = err.get("ErrorDetail", {})
                if missing_ok and detail.get("ErrorCode") == "EntityNotFoundException":
                    continue
                failures.append(f"{err.get('PartitionValueList')}: {detail.get('ErrorCode')}: "
                                f"{detail.get('ErrorMessage')}")
        return failures

    def _rewrite_columns(self, table: Table, columns: list[dict[str, Any]]) -> None:
        """Give every registered partition of the table these data columns (those that have
        them already are left alone)."""
        wanted = _columns({"StorageDescriptor": {"Columns": columns}})
        stale = [_rewritten(p, columns) for p in self._partitions(table) if _columns(p) != wanted]
        failures = self._update(table, stale, missing_ok=True)
        if failures:
            where = self._where(table)
            raise GlueCatalogError(f"Glue refused the new columns for partitions of {where['DatabaseName']}."
                                   f"{where['TableName']} (the table is left as it was): " + "; ".join(failures))

    def _delete(self, table: Table, values: list[tuple[str, ...]]) -> None:
        where = self._where(table)
        failures = []
        for chunk in _chunks(values, DELETE_BATCH):
            answer = self.client.batch_delete_partition(
                **where, PartitionsToDelete=[{"Values": list(v)} for v in chunk])
            for err in answer.get("Errors", []):
                detail = err.get("ErrorDetail", {})
                if detail.get("ErrorCode") != "EntityNotFoundException":  # already gone: fine
                    failures.append(f"{err.get('PartitionValues')}: {detail.get('ErrorCode')}: "
                                    f"{detail.get('ErrorMessage')}")
        if failures:
            raise GlueCatalogError(f"Glue could not delete partitions of {where['DatabaseName']}."
                                   f"{where['TableName']}: " + "; ".join(failures))

    def remove_partitions(self, storage: LakeStorage, table: Table, paths: list[str]) -> None:
        """Unregister partitions by path (25 per call, Glue's limit); absent ones are ignored."""
        if not table.partition_keys:
            if paths:
                self._set_table_counts(table, None)
            return
        self._delete(table, [table.partition_values(p) for p in paths])

    def _partitions(self, table: Table, *, columns: bool = True) -> list[dict[str, Any]]:
        """Every registered partition (``columns=False``: without their column lists, which Glue
        then leaves out of the answer)."""
        out: list[dict[str, Any]] = []
        extra = {} if columns else {"ExcludeColumnSchema": True}
        for page in self.client.get_paginator("get_partitions").paginate(**self._where(table), **extra):
            out += page.get("Partitions", [])
        return out

    def replace_partitions(self, storage: LakeStorage, table: Table, entries: list[PartitionEntry]) -> None:
        """Leave exactly these partitions registered: the others are deleted, these added or refreshed."""
        if not table.partition_keys:
            if entries:
                self.add_partitions(storage, table, entries)
            else:
                self._set_table_counts(table, None)
            return
        keep = {tuple(e.values) for e in entries}
        extra = [tuple(p["Values"]) for p in self._partitions(table) if tuple(p["Values"]) not in keep]
        if extra:
            self._delete(table, extra)
        if entries:
            self.add_partitions(storage, table, entries)

    # -- reading back ------------------------------------------------------------------------------
    def describe(self, table: Table) -> RegisteredTable | None:
        """The table as Glue has it; rows per partition from ``numRows`` (-1 when absent)."""
        current = self._get_table(table)
        if current is None:
            return None
        sd = current.get("StorageDescriptor", {})
        keys = [(k["Name"], k["Type"]) for k in current.get("PartitionKeys", [])]
        if keys:
            partitions = {table.partition_path(p["Values"]): int(p.get("Parameters", {}).get(ROWS, -1))
                          for p in self._partitions(table)}
        else:
            rows = current.get("Parameters", {}).get(ROWS)
            partitions = {} if rows is None else {"": int(rows)}
        return RegisteredTable(
            qualified_name=table.qualified_name,
            location=sd.get("Location", "").rstrip("/"),
            columns=[(c["Name"], c["Type"]) for c in sd.get("Columns", [])],
            partition_keys=keys,
            partitions=dict(sorted(partitions.items())),
            description=current.get("Description", ""),
        )
