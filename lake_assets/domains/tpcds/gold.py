"""Silver -> the four gold tables (contract §4), in Spark built-ins.

Every gold table is built from *sales lines* and *return lines*: the three
sales (returns) tables brought to one shape with their ``channel``, as the
contract's table says which column is which. Money is summed exactly, as
decimals of scale 2 (:data:`~lake_assets.domains.tpcds.schemas.MONEY`); a sum
over no value is 0, never NULL; ratios are doubles of the exact decimals. Every
output is selected and cast to its declared schema, so the files' types never
depend on what Spark infers from a sum.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lake_assets.domains.tpcds.schemas import (
    CUSTOMER_LIFETIME_VALUE,
    DAILY_SALES_SUMMARY,
    MONEY,
    MONTHLY_TRENDS,
    PRODUCT_PERFORMANCE,
)
from lake_assets.domains.tpcds.silver import PARTITION, partition_value

#: channel -> (table, order, item, customer, quantity, sales, discount, paid, profit) (contract §4).
SALES = {
    "store": ("store_sales", "ss_ticket_number", "ss_item_sk", "ss_customer_sk", "ss_quantity",
              "ss_ext_sales_price", "ss_ext_discount_amt", "ss_net_paid", "ss_net_profit"),
    "catalog": ("catalog_sales", "cs_order_number", "cs_item_sk", "cs_bill_customer_sk", "cs_quantity",
                "cs_ext_sales_price", "cs_ext_discount_amt", "cs_net_paid", "cs_net_profit"),
    "web": ("web_sales", "ws_order_number", "ws_item_sk", "ws_bill_customer_sk", "ws_quantity",
            "ws_ext_sales_price", "ws_ext_discount_amt", "ws_net_paid", "ws_net_profit"),
}
#: channel -> (table, order, customer, quantity, amount, date key) (contract §4).
RETURNS = {
    "store": ("store_returns", "sr_ticket_number", "sr_customer_sk", "sr_return_quantity", "sr_return_amt",
              "sr_returned_date_sk"),
    "catalog": ("catalog_returns", "cr_order_number", "cr_returning_customer_sk", "cr_return_quantity",
                "cr_return_amount", "cr_returned_date_sk"),
    "web": ("web_returns", "wr_order_number", "wr_returning_customer_sk", "wr_return_quantity", "wr_return_amt",
            "wr_returned_date_sk"),
}
SALES_TABLES = tuple(v[0] for v in SALES.values())
RETURNS_TABLES = tuple(v[0] for v in RETURNS.values())


def _month() -> Column:
    """The first-day-of-month DATE of a line's sold date."""
    return F.trunc(F.col("sold_date"), "month").alias("month")


def sales_lines(tables: dict[str, DataFrame]) -> DataFrame:
    """The three silver sales tables as one: channel, sold_date, order, item, customer and the amounts."""
    frames = []
    for channel, (table, order, item, customer, quantity, sales, discount, paid, profit) in SALES.items():
        frames.append(tables[table].select(
            F.lit(channel).alias("channel"), F.col("sold_date"), F.col(order).alias("order_number"),
            F.col(item).alias("item_sk"), F.col(customer).alias("customer_sk"),
            F.col(quantity).alias("quantity"), F.col(sales).alias("sales"), F.col(discount).alias("discount"),
            F.col(paid).alias("paid"), F.col(profit).alias("profit")))
    return frames[0].unionByName(frames[1]).unionByName(frames[2])


def return_lines(tables: dict[str, DataFrame]) -> DataFrame:
    """The three silver returns tables as one: channel, returned_date, order, customer, quantity, amount."""
    frames = []
    for channel, (table, order, customer, quantity, amount, _) in RETURNS.items():
        frames.append(tables[table].select(
            F.lit(channel).alias("channel"), F.col("returned_date"), F.col(order).alias("order_number"),
            F.col(customer).alias("customer_sk"), F.col(quantity).alias("quantity"),
            F.col(amount).alias("amount")))
    return frames[0].unionByName(frames[1]).unionByName(frames[2])


def _money(col: str | Column) -> Column:
    """An exact sum, 0 over no value."""
    return F.coalesce(F.sum(col), F.lit(0)).cast(MONEY)


def _count(col: str | Column) -> Column:
    return F.coalesce(F.sum(col), F.lit(0)).cast("bigint")


def _ratio(num: Column, den: Column) -> Column:
    """``num / den`` as a double; NULL when ``den`` is NULL or 0."""
    return F.when(den.isNotNull() & (den != 0), num.cast("double") / den.cast("double"))


def _cast(df: DataFrame, schema) -> DataFrame:
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def daily_sales_summary(sales: DataFrame, returns: DataFrame) -> DataFrame:
    """(sold_date, channel) for every date and channel with dated sales or dated returns, with ``_partition``."""
    by_sale = sales.where(F.col("sold_date").isNotNull()).groupBy("sold_date", "channel").agg(
        F.count_distinct("order_number").alias("orders"), F.count(F.lit(1)).alias("line_items"),
        _count("quantity").alias("quantity"), _money("sales").alias("gross_sales"),
        _money("discount").alias("discounts"), _money("paid").alias("net_paid"),
        _money("profit").alias("net_profit"), F.count_distinct("customer_sk").alias("customers"))
    by_return = returns.where(F.col("returned_date").isNotNull()).groupBy(
        F.col("returned_date").alias("sold_date"), "channel").agg(
        _count("quantity").alias("returned_quantity"), _money("amount").alias("returned_amount"))
    joined = by_sale.join(by_return, ["sold_date", "channel"], "full")
    zero = {"orders": 0, "line_items": 0, "quantity": 0, "customers": 0, "returned_quantity": 0}
    for name in ("gross_sales", "discounts", "net_paid", "net_profit", "returned_amount"):
        joined = joined.withColumn(name, F.coalesce(F.col(name), F.lit(0).cast(MONEY)))
    joined = joined.fillna(zero)
    return _cast(joined, DAILY_SALES_SUMMARY).withColumn(PARTITION, partition_value(F.col("sold_date")))


def _segment(rank: Column, n: Column) -> Column:
    """platinum: rank <= ceil(5% of n), gold <= ceil(20%), silver <= ceil(50%), else bronze (integer
    arithmetic: ``ceil(p*n/100) = (p*n + 99) div 100``, no floating-point edge at exact multiples)."""
    def ceil_share(p: int) -> Column:
        return F.floor((n * p + 99) / 100).cast("bigint")
    return (F.when(rank <= ceil_share(5), "platinum").when(rank <= ceil_share(20), "gold")
            .when(rank <= ceil_share(50), "silver").otherwise("bronze"))


def customer_lifetime_value(sales: DataFrame, returns: DataFrame, customer: DataFrame) -> DataFrame:
    """One row per customer with at least one sales line: totals, net value, rank and segment.

    The rank is over the whole table (one window without a partition): the gold
    table is one row per customer, which a single task sorts comfortably.
    """
    per_customer = sales.where(F.col("customer_sk").isNotNull()).groupBy("customer_sk").agg(
        F.min("sold_date").alias("first_purchase_date"), F.max("sold_date").alias("last_purchase_date"),
        F.count_distinct("channel", "order_number").alias("orders"), F.count(F.lit(1)).alias("line_items"),
        _count("quantity").alias("quantity"), _money("paid").alias("total_net_paid"),
        _money("profit").alias("total_net_profit"), F.count_distinct("channel").alias("channels"))
    returned = returns.where(F.col("customer_sk").isNotNull()).groupBy("customer_sk").agg(
        _money("amount").alias("returned_amount"))
    ids = customer.select(F.col("c_customer_sk").alias("customer_sk"), F.col("c_customer_id").alias("customer_id"))
    out = (per_customer.join(returned, "customer_sk", "left").join(ids, "customer_sk", "left")
           .withColumn("returned_amount", F.coalesce(F.col("returned_amount"), F.lit(0).cast(MONEY))))
    out = out.withColumn("net_value", (F.col("total_net_paid") - F.col("returned_amount")).cast(MONEY))
    everyone = Window.orderBy(F.col("net_value").desc(), F.col("customer_sk").asc())
    out = out.withColumn("value_rank", F.row_number().over(everyone))
    out = out.withColumn("segment", _segment(F.col("value_rank"), F.count(F.lit(1)).over(Window.partitionBy())))
    return _cast(out, CUSTOMER_LIFETIME_VALUE)


def product_performance(sales: DataFrame, item: DataFrame) -> DataFrame:
    """(month, item_sk) over dated sales lines, with the item's attributes, margin, and its dense rank and
    share of revenue among the month's items of its category (a NULL category is one group); with ``_partition``."""
    per_item = sales.where(F.col("sold_date").isNotNull()).groupBy(_month(), "item_sk").agg(
        _count("quantity").alias("quantity"), _money("sales").alias("revenue"), _money("profit").alias("net_profit"),
        F.count_distinct("channel", "order_number").alias("orders"))
    attrs = item.select(F.col("i_item_sk").alias("item_sk"), F.col("i_item_id").alias("item_id"),
                        F.col("i_product_name").alias("product_name"), F.col("i_category").alias("category"),
                        F.col("i_brand").alias("brand"))
    out = per_item.join(attrs, "item_sk", "left")
    category = Window.partitionBy("month", "category")
    out = out.withColumn("margin", _ratio(F.col("net_profit"), F.col("revenue")))
    out = out.withColumn("category_rank", F.dense_rank().over(category.orderBy(F.col("revenue").desc())))
    out = out.withColumn("category_share", _ratio(F.col("revenue"), F.sum("revenue").over(category)))
    return _cast(out, PRODUCT_PERFORMANCE).withColumn(PARTITION, partition_value(F.col("month")))


def monthly_trends(sales: DataFrame) -> DataFrame:
    """(month, channel) with dated sales, each with the channel's net paid in the previous calendar month
    and twelve months before (NULL when that month has no row) and the growth against each."""
    per_month = sales.where(F.col("sold_date").isNotNull()).groupBy(_month(), "channel").agg(
        F.count_distinct("order_number").alias("orders"), F.count_distinct("customer_sk").alias("customers"),
        _count("quantity").alias("quantity"), _money("paid").alias("net_paid"), _money("profit").alias("net_profit"))

    def earlier(months: int, name: str) -> DataFrame:
        return per_month.select(F.add_months(F.col("month"), months).alias("month"), "channel",
                                F.col("net_paid").alias(name))

    out = (per_month.join(earlier(1, "prev_month_net_paid"), ["month", "channel"], "left")
           .join(earlier(12, "prev_year_net_paid"), ["month", "channel"], "left"))
    out = out.withColumn("mom_growth", _ratio(F.col("net_paid") - F.col("prev_month_net_paid"),
                                              F.col("prev_month_net_paid")))
    out = out.withColumn("yoy_growth", _ratio(F.col("net_paid") - F.col("prev_year_net_paid"),
                                              F.col("prev_year_net_paid")))
    return _cast(out, MONTHLY_TRENDS)
