"""The tpcds lake's tables, declared once from the specs: the IO layer, the catalogs and the CLI read these.

Silver tables carry the TPC-DS names themselves (``tpcds.store_sales``), so the
99 queries resolve their unqualified names to silver once ``tpcds`` is the SQL
schema. Facts are partitioned by month (``sold_month=YYYY-MM``... a string key,
Hive's ``__HIVE_DEFAULT_PARTITION__`` for a row without a date), one file per
partition; dimensions are one file, replaced whole. Quarantine holds both
stages' rejects of a table, by ``stage``: bronze's one file per ingested raw
file, silver's one per month (facts) or one (dimensions). Bronze is one Parquet
file per ingested raw file (``<sha256 of the file>.parquet``), lineage included.
"""
from __future__ import annotations

from lake_assets.catalog.tables import Table
from lake_assets.domains.tpcds import schemas
from lake_assets.domains.tpcds.spec import TABLES, TableSpec

DOMAIN = "tpcds"


def _silver(spec: TableSpec) -> Table:
    kind = "fact" if spec.is_fact else "dimension"
    parts = f", partitioned by {spec.dating.partition}" if spec.dating else ""
    return Table(DOMAIN, spec.name, "silver", f"silver/tpcds/{spec.name}", schemas.SILVER[spec.name],
                 f"TPC-DS {kind} {spec.name}: trimmed, valid, one row per ({', '.join(spec.primary_key)}){parts}.",
                 asset=f"tpcds_silver_{spec.name}",
                 partitioning=f"{spec.dating.partition}:string" if spec.dating else None)


def _quarantine(spec: TableSpec) -> Table:
    return Table(DOMAIN, f"quarantine_{spec.name}", "quarantine", f"quarantine/tpcds/{spec.name}",
                 schemas.QUARANTINE_SCHEMA,
                 f"Every {spec.name} line bronze could not convert and every row silver refused or deduplicated "
                 "away: the record, reason, reasons, source file, line, ingest run and stage.",
                 asset=f"tpcds_silver_{spec.name}", partitioning="stage:string", file_stem=None)


def _bronze(spec: TableSpec) -> Table:
    return Table(DOMAIN, f"bronze_{spec.name}", "bronze", f"bronze/tpcds/{spec.name}", schemas.BRONZE[spec.name],
                 f"{spec.name} as delivered, typed from the TPC-DS DDL, with lineage: one file per raw file.",
                 asset=f"tpcds_bronze_{spec.name}", partitioning=None, file_stem=None)


BRONZE = {name: _bronze(spec) for name, spec in TABLES.items()}
SILVER = {name: _silver(spec) for name, spec in TABLES.items()}
QUARANTINE = {name: _quarantine(spec) for name, spec in TABLES.items()}

_GOLD = {
    "daily_sales_summary": ("sold_month:string", "(sold_date, channel): orders, line items, quantity, gross sales, "
                            "discounts, net paid, net profit, customers, returns by their return date."),
    "customer_lifetime_value": (None, "One row per customer with a sale: orders, totals, returns, net value, "
                                "rank by net value and segment (platinum, gold, silver, bronze)."),
    "product_performance": ("sold_month:string", "(month, item): quantity, revenue, profit, orders, margin, dense "
                            "rank and share of revenue within the month's category."),
    "monthly_trends": (None, "(month, channel): orders, customers, quantity, net paid and profit, with "
                       "month-over-month and year-over-year growth of net paid."),
}
GOLD = {name: Table(DOMAIN, name, "gold", f"gold/tpcds/{name}", schemas.GOLD[name], description,
                    asset=f"tpcds_{name}", partitioning=partitioning)
        for name, (partitioning, description) in _GOLD.items()}

TABLES_DECLARED = (*BRONZE.values(), *SILVER.values(), *QUARANTINE.values(), *GOLD.values())
