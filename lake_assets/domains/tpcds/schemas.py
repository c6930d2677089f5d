"""The Spark schemas of every tpcds zone, derived from the specs (``spec``): never written twice.

Bronze, silver and quarantine schemas follow the contract (§2, §3): the
specification's columns typed from its DDL, plus each zone's lineage. Gold's
four tables (§4) are declared here too, explicitly: what the gold functions
select and cast to, and what the catalog registers.

``pyspark.sql.types`` is plain Python: importing this starts no Spark.
"""
from __future__ import annotations

from pyspark.sql import types as T

from lake_assets.domains.tpcds.spec import TABLES, Column, TableSpec

#: Money in gold: sums of decimal(7,2) amounts, exact, scale 2 (18 digits: an int64 in Parquet).
MONEY = T.DecimalType(18, 2)

#: The lineage bronze adds to every row (contract §2).
BRONZE_LINEAGE = (
    T.StructField("_source_file", T.StringType(), False),
    T.StructField("_line", T.LongType(), False),
    T.StructField("_ingest_run_id", T.StringType(), False),
    T.StructField("_ingested_at", T.TimestampType(), False),
)


def spark_type(column: Column) -> T.DataType:
    """Contract §2: identifier -> int64, integer -> int32, decimal(p,s) exact, date -> DATE, char/varchar -> string."""
    if column.decimal:
        return T.DecimalType(*column.decimal)
    return {"identifier": T.LongType(), "integer": T.IntegerType(), "date": T.DateType(),
            "string": T.StringType()}[column.type]


def column_fields(spec: TableSpec) -> list[T.StructField]:
    """The specification's columns as Spark fields, nullable (dsdgen writes NULL as an empty field,
    and a NULL key is silver's rule 1 to quarantine, not bronze's to refuse)."""
    return [T.StructField(c.name, spark_type(c), True) for c in spec.columns]


def bronze_schema(spec: TableSpec) -> T.StructType:
    return T.StructType(column_fields(spec) + list(BRONZE_LINEAGE))


def silver_schema(spec: TableSpec) -> T.StructType:
    """Bronze's columns (lineage dropped but ``_source_file``), a fact's DATE column (``sold_date``...)
    and ``load_timestamp``. The monthly partition key (``sold_month``...) is in the path only."""
    fields = column_fields(spec)
    if spec.dating:
        fields.append(T.StructField(spec.dating.column, T.DateType(), True))
    return T.StructType(fields + [T.StructField("_source_file", T.StringType(), False),
                                  T.StructField("load_timestamp", T.TimestampType(), False)])


#: quarantine/tpcds/<table>/: the contract's columns, for bronze and silver rejects alike.
QUARANTINE_SCHEMA = T.StructType([
    T.StructField("record", T.StringType(), False),
    T.StructField("reason", T.StringType(), False),
    T.StructField("reasons", T.ArrayType(T.StringType(), False), False),
    T.StructField("source_file", T.StringType(), False),
    T.StructField("line", T.LongType(), False),
    T.StructField("ingest_run_id", T.StringType(), False),
    T.StructField("stage", T.StringType(), False),
])

BRONZE = {name: bronze_schema(spec) for name, spec in TABLES.items()}
SILVER = {name: silver_schema(spec) for name, spec in TABLES.items()}


def _struct(*fields: tuple[str, T.DataType, bool]) -> T.StructType:
    return T.StructType([T.StructField(n, t, nullable) for n, t, nullable in fields])


_L, _D, _S, _F = T.LongType(), T.DateType(), T.StringType(), T.DoubleType()
# Nullability is what the gold functions write (the files' schema): a grouping key out of a join or
# an aggregation stays nullable in Spark's eyes even where the contract never leaves it NULL; the
# checks (pandera) assert those keys are never NULL.

#: gold/tpcds/daily_sales_summary/sold_month=YYYY-MM/: (sold_date, channel).
DAILY_SALES_SUMMARY = _struct(
    ("sold_date", _D, True), ("channel", _S, True), ("orders", _L, False), ("line_items", _L, False),
    ("quantity", _L, False), ("gross_sales", MONEY, False), ("discounts", MONEY, False),
    ("net_paid", MONEY, False), ("net_profit", MONEY, False), ("customers", _L, False),
    ("returned_quantity", _L, False), ("returned_amount", MONEY, False),
)
#: gold/tpcds/customer_lifetime_value/: one row per customer with a sales line.
CUSTOMER_LIFETIME_VALUE = _struct(
    ("customer_sk", _L, True), ("customer_id", _S, True), ("first_purchase_date", _D, True),
    ("last_purchase_date", _D, True), ("orders", _L, False), ("line_items", _L, False), ("quantity", _L, False),
    ("total_net_paid", MONEY, False), ("total_net_profit", MONEY, False), ("returned_amount", MONEY, False),
    ("net_value", MONEY, True), ("channels", T.IntegerType(), False), ("value_rank", _L, False),
    ("segment", _S, False),
)
#: gold/tpcds/product_performance/sold_month=YYYY-MM/: (month, item_sk).
PRODUCT_PERFORMANCE = _struct(
    ("month", _D, True), ("item_sk", _L, True), ("item_id", _S, True), ("product_name", _S, True),
    ("category", _S, True), ("brand", _S, True), ("quantity", _L, False), ("revenue", MONEY, False),
    ("net_profit", MONEY, False), ("orders", _L, False), ("margin", _F, True),
    ("category_rank", T.IntegerType(), False), ("category_share", _F, True),
)
#: gold/tpcds/monthly_trends/: (month, channel).
MONTHLY_TRENDS = _struct(
    ("month", _D, True), ("channel", _S, False), ("orders", _L, False), ("customers", _L, False),
    ("quantity", _L, False), ("net_paid", MONEY, False), ("net_profit", MONEY, False),
    ("prev_month_net_paid", MONEY, True), ("mom_growth", _F, True), ("prev_year_net_paid", MONEY, True),
    ("yoy_growth", _F, True),
)
GOLD = {"daily_sales_summary": DAILY_SALES_SUMMARY, "customer_lifetime_value": CUSTOMER_LIFETIME_VALUE,
        "product_performance": PRODUCT_PERFORMANCE, "monthly_trends": MONTHLY_TRENDS}
