"""The orders lake's tables, declared once: the catalogs and the CLI read these.

Silver is partitioned by ``order_date`` (in the path only, as Athena expects);
discarded rows and the archive by landing set (``extracted_at=...``). The
landing zone is transient (emptied once a set is archived), so it is no table.

The declared schemas are the default source's (``source.orders_table``). A source
with other key or amount types, or more columns, writes its own: validation
returns them (``ValidateResult.*_schema``) and :func:`with_schema` makes the
declaration to register in the catalog.
"""
import dataclasses

from pyspark.sql import types as T

from lake_assets.catalog.tables import Table
from lake_assets.domains.orders import zones
from lake_assets.domains.orders.validate import DISCARDED_SCHEMA, SILVER_SCHEMA

DOMAIN = "orders"

SILVER = Table(DOMAIN, "orders", "silver", zones.SILVER, SILVER_SCHEMA,
               "The current state of every valid order, one row per order_id.",
               asset="orders_silver", partitioning="order_date:date")
DISCARDED = Table(DOMAIN, "discarded", "discarded", zones.DISCARDED, DISCARDED_SCHEMA,
                  "Every extracted row that broke a rule, with reason and reasons, by landing set.",
                  asset="orders_discarded", partitioning=f"{zones.SET_KEY}:string")
ARCHIVE = Table(DOMAIN, "archive", "archive", zones.ARCHIVE, SILVER_SCHEMA,
                "Every landing set as extracted, unchanged: the source of truth.",
                asset="orders_archive", partitioning=f"{zones.SET_KEY}:string", file_stem=None)

TABLES = (SILVER, DISCARDED, ARCHIVE)


def with_schema(table: Table, struct: T.StructType) -> Table:
    """``table`` with the schema its files actually have (the catalog must type the source's columns)."""
    return dataclasses.replace(table, schema=struct)
