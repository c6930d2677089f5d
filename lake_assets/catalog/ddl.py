"""Athena DDL for the declared tables, and the Hive naming rules Glue shares with it.

``lake catalog ddl`` prints these statements so a lake can be registered by hand
(Athena console, a Terraform ``aws_athena_named_query``, a lake written by another
account) with exactly what :class:`~lake_assets.catalog.glue.GlueCatalog` registers:
the same database names, column types, partition keys and locations.
Pure text: no AWS call and no Spark session here.
"""
from __future__ import annotations

import re
from typing import Iterable

from pyspark.sql import types as T

from lake_assets.settings import DEFAULT_GLUE_DATABASE_PREFIX
from lake_assets.catalog.base import PartitionEntry
from lake_assets.catalog.tables import Table
from lake_assets.lake import LakeStorage

#: Athena's reserved keywords in DDL (docs: "Escape reserved keywords in queries"):
#: used unquoted as an identifier, each one fails the statement.
DDL_RESERVED = frozenset("""
ALL ALTER AND ARRAY AS AUTHORIZATION BETWEEN BIGINT BINARY BOOLEAN BOTH BY CASE CASHE CAST CHAR
COLUMN CONF CONSTRAINT COMMIT CREATE CROSS CUBE CURRENT CURRENT_DATE CURRENT_TIMESTAMP CURSOR
DATABASE DATE DAYOFWEEK DECIMAL DELETE DESCRIBE DISTINCT DIV DOUBLE DROP ELSE END EXCHANGE EXISTS
EXTENDED EXTERNAL EXTRACT FALSE FETCH FLOAT FLOOR FOLLOWING FOR FOREIGN FROM FULL FUNCTION GRANT
GROUP GROUPING HAVING IF IMPORT IN INNER INSERT INT INTEGER INTERSECT INTERVAL INTO IS JOIN LATERAL
LEFT LESS LIKE LOCAL MACRO MAP MORE NONE NOT NULL NUMERIC OF ON ONLY OR ORDER OUT OUTER OVER
PARTIALSCAN PARTITION PERCENT PRECEDING PRECISION PRESERVE PRIMARY PROCEDURE RANGE READS REDUCE
REGEXP REFERENCES REVOKE RIGHT RLIKE ROLLBACK ROLLUP ROW ROWS SELECT SET SMALLINT START TABLE
TABLESAMPLE THEN TIME TIMESTAMP TO TRANSFORM TRIGGER TRUE TRUNCATE UNBOUNDED UNION UNIQUEJOIN
UPDATE USER USING UTC_TIMESTAMP VALUES VARCHAR VIEWS WHEN WHERE WINDOW WITH
""".split())

_PLAIN = re.compile(r"[a-z_][a-z0-9_]*")

#: Partitions per ``ALTER TABLE ... ADD`` statement: far below Athena's 256 KB query limit.
PARTITIONS_PER_STATEMENT = 100


def database_name(prefix: str, domain: str) -> str:
    """The Glue/Athena database of a domain: ``<prefix><domain>``, lower case (Glue lowers names)."""
    return f"{prefix}{domain}".lower()


def hive_type(data_type: T.DataType) -> str:
    """The Hive type of a Spark type, as Glue and Athena DDL spell it.

    Spark's ``simpleString`` already speaks Hive (``bigint``, ``decimal(18,2)``,
    ``array<string>``) except for ``timestamp_ntz``, which Hive calls ``timestamp``.
    """
    return re.sub(r"\btimestamp_ntz\b", "timestamp", data_type.simpleString())


def quote(identifier: str) -> str:
    """An identifier for Athena DDL, backquoted when reserved (``date``) or not a plain name."""
    if _PLAIN.fullmatch(identifier) and identifier.upper() not in DDL_RESERVED:
        return identifier
    return "`" + identifier.replace("`", "``") + "`"


def literal(text: str) -> str:
    """A Hive string literal (backslash escapes, as Athena's DDL parser reads them)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_location(storage: LakeStorage, table: Table, partition_path: str = "") -> str:
    """The folder URI of a table or partition, with the trailing slash Athena and Glue expect."""
    rel = "/".join(p for p in (table.location, partition_path) if p)
    return storage.uri(rel) + "/"


def athena_database_ddl(domain: str, database_prefix: str = DEFAULT_GLUE_DATABASE_PREFIX) -> str:
    """``CREATE DATABASE IF NOT EXISTS``: emit it once per domain, before the domain's tables."""
    return f"CREATE DATABASE IF NOT EXISTS {quote(database_name(database_prefix, domain))}"


def athena_ddl(storage: LakeStorage, table: Table, entries: Iterable[PartitionEntry],
               database_prefix: str = DEFAULT_GLUE_DATABASE_PREFIX) -> list[str]:
    """The statements registering a table and its partitions in Athena (idempotent: IF NOT EXISTS).

    Data columns are :attr:`Table.columns`, so a column written both in the files and
    in the path is declared once, as the partition key (Athena rejects it twice).
    """
    name = f"{quote(database_name(database_prefix, table.domain))}.{quote(table.name.lower())}"
    columns = ",\n".join(
        f"  {quote(f.name.lower())} {hive_type(f.dataType)}"
        + (f" COMMENT {literal(f.metadata['comment'])}" if f.metadata.get("comment") else "")
        for f in table.columns)
    lines = [f"CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n{columns}\n)"]
    if table.description:
        lines.append(f"COMMENT {literal(table.description)}")
    if table.partition_keys:
        keys = ", ".join(f"{quote(k.name)} {k.type}" for k in table.partition_keys)
        lines.append(f"PARTITIONED BY ({keys})")
    lines += ["STORED AS PARQUET", f"LOCATION {literal(table_location(storage, table))}",
              "TBLPROPERTIES ('classification'='parquet')"]
    statements = ["\n".join(lines)]

    parts = [e for e in entries if e.values] if table.partition_keys else []
    for i in range(0, len(parts), PARTITIONS_PER_STATEMENT):
        specs = "\n".join(
            "  PARTITION (" + ", ".join(f"{quote(k.name)}={literal(v)}"
                                        for k, v in zip(table.partition_keys, e.values, strict=True))
            + f") LOCATION {literal(table_location(storage, table, e.path))}"
            for e in parts[i:i + PARTITIONS_PER_STATEMENT])
        statements.append(f"ALTER TABLE {name} ADD IF NOT EXISTS\n{specs}")
    return statements
