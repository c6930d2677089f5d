"""Silver -> the four gold tables (contract §4), exact values on a small hand-made silver.

The silver (every amount chosen so each rule of §4 shows):
  store   2000-01-05 t1 item10 c100 q2 10.00/1.00/9.00/3.00    t1 item11 c100 q1 5.50/0/5.50/-1.25
          2000-01-05 t4 item12 no customer, every amount NULL
          2000-02-10 t2 item10 c101 q3 30.00/0/30.00/6.00      t2 item13 c101 q1 30.00/0/30.00/1.00
          (no date)  t3 item11 c102 q1 7.00/0/7.00/1.00
  catalog 2000-01-05 o1 item10 c100 q4 40.00/2.00/38.00/8.00   2001-01-20 o7 item12 c101 q1 12.00/0/12.00/2.00
  web     2000-02-10 o9 item11 c103 q5 50.00/5.00/42.00/0.00   2000-03-15 o10 item11 c103 q1 0/0/0/0
          2000-04-02 o11 item11 c103 q1 5.00/0/5.00/1.00
  returns store 2000-01-05 t1 c100 q1 5.50; 2000-03-01 t2 c101 q1 10.00; (no date) t3 c102 q1 7.00
          web 2000-02-10 o9 c999 q2 20.00 (a customer without sales)
  sales/discount/paid/profit; customers 100..102 known (103 is not); items 10, 11, 13 Books, 12 no category.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from lake_assets.catalog.tables import NULL_PARTITION
from lake_assets.domains.tpcds import gold
from lake_assets.domains.tpcds.schemas import GOLD, SILVER

d = dt.date
LINEAGE = {"_source_file": "raw/tpcds/x.dat", "load_timestamp": dt.datetime(2024, 1, 1)}


def _sale(prefix, date, order, item, customer, qty, sales, discount, paid, profit):
    cols = {"store": ("ss", "ss_ticket_number", "ss_customer_sk"),
            "catalog": ("cs", "cs_order_number", "cs_bill_customer_sk"),
            "web": ("ws", "ws_order_number", "ws_bill_customer_sk")}[prefix]
    p, order_col, customer_col = cols
    money = lambda v: None if v is None else D(v)  # noqa: E731
    return {"sold_date": date, order_col: order, f"{p}_item_sk": item, customer_col: customer,
            f"{p}_quantity": qty, f"{p}_ext_sales_price": money(sales), f"{p}_ext_discount_amt": money(discount),
            f"{p}_net_paid": money(paid), f"{p}_net_profit": money(profit), **LINEAGE}


@pytest.fixture(scope="module")
def lines(spark):
    def make(schema, rows):
        names = schema.fieldNames()
        return spark.createDataFrame([tuple(r.get(n) for n in names) for r in rows], schema)

    sales = {
        "store_sales": make(SILVER["store_sales"], [
            _sale("store", d(2000, 1, 5), 1, 10, 100, 2, "10.00", "1.00", "9.00", "3.00"),
            _sale("store", d(2000, 1, 5), 1, 11, 100, 1, "5.50", "0.00", "5.50", "-1.25"),
            _sale("store", d(2000, 1, 5), 4, 12, None, None, None, None, None, None),
            _sale("store", d(2000, 2, 10), 2, 10, 101, 3, "30.00", "0.00", "30.00", "6.00"),
            _sale("store", d(2000, 2, 10), 2, 13, 101, 1, "30.00", "0.00", "30.00", "1.00"),
            _sale("store", None, 3, 11, 102, 1, "7.00", "0.00", "7.00", "1.00"),
        ]),
        "catalog_sales": make(SILVER["catalog_sales"], [
            _sale("catalog", d(2000, 1, 5), 1, 10, 100, 4, "40.00", "2.00", "38.00", "8.00"),
            _sale("catalog", d(2001, 1, 20), 7, 12, 101, 1, "12.00", "0.00", "12.00", "2.00"),
        ]),
        "web_sales": make(SILVER["web_sales"], [
            _sale("web", d(2000, 2, 10), 9, 11, 103, 5, "50.00", "5.00", "42.00", "0.00"),
            _sale("web", d(2000, 3, 15), 10, 11, 103, 1, "0.00", "0.00", "0.00", "0.00"),
            _sale("web", d(2000, 4, 2), 11, 11, 103, 1, "5.00", "0.00", "5.00", "1.00"),
        ]),
    }
    returns = {
        "store_returns": make(SILVER["store_returns"], [
            {"returned_date": date, "sr_ticket_number": t, "sr_item_sk": 10, "sr_customer_sk": c,
             "sr_return_quantity": 1, "sr_return_amt": D(a), **LINEAGE}
            for date, t, c, a in ((d(2000, 1, 5), 1, 100, "5.50"), (d(2000, 3, 1), 2, 101, "10.00"),
                                  (None, 3, 102, "7.00"))]),
        "catalog_returns": make(SILVER["catalog_returns"], []),
        "web_returns": make(SILVER["web_returns"], [
            {"returned_date": d(2000, 2, 10), "wr_order_number": 9, "wr_item_sk": 11,
             "wr_returning_customer_sk": 999, "wr_return_quantity": 2, "wr_return_amt": D("20.00"), **LINEAGE}]),
    }
    customer = make(SILVER["customer"], [{"c_customer_sk": k, "c_customer_id": f"C{k}", **LINEAGE}
                                         for k in (100, 101, 102)])
    item = make(SILVER["item"], [
        {"i_item_sk": k, "i_item_id": f"I{k}", "i_product_name": f"p{k}", "i_category": cat, "i_brand": f"b{k}",
         **LINEAGE} for k, cat in ((10, "Books"), (11, "Books"), (12, None), (13, "Books"))])
    return gold.sales_lines(sales), gold.return_lines(returns), customer, item


def test_daily_sales_summary(lines):
    sales, returns, _, _ = lines
    out = gold.daily_sales_summary(sales, returns)
    assert out.drop("_partition").schema == GOLD["daily_sales_summary"]
    got = {(r.sold_date, r.channel): tuple(r)[2:] for r in out.collect()}
    z = D("0.00")
    assert got == {
        (d(2000, 1, 5), "store"): (2, 3, 3, D("15.50"), D("1.00"), D("14.50"), D("1.75"), 1, 1, D("5.50"), "2000-01"),
        (d(2000, 1, 5), "catalog"): (1, 1, 4, D("40.00"), D("2.00"), D("38.00"), D("8.00"), 1, 0, z, "2000-01"),
        (d(2000, 2, 10), "store"): (1, 2, 4, D("60.00"), z, D("60.00"), D("7.00"), 1, 0, z, "2000-02"),
        (d(2000, 2, 10), "web"): (1, 1, 5, D("50.00"), D("5.00"), D("42.00"), z, 1, 2, D("20.00"), "2000-02"),
        (d(2000, 3, 1), "store"): (0, 0, 0, z, z, z, z, 0, 1, D("10.00"), "2000-03"),  # returns only
        (d(2000, 3, 15), "web"): (1, 1, 1, z, z, z, z, 1, 0, z, "2000-03"),
        (d(2000, 4, 2), "web"): (1, 1, 1, D("5.00"), z, D("5.00"), D("1.00"), 1, 0, z, "2000-04"),
        (d(2001, 1, 20), "catalog"): (1, 1, 1, D("12.00"), z, D("12.00"), D("2.00"), 1, 0, z, "2001-01"),
    }


def test_customer_lifetime_value(lines):
    sales, returns, customer, _ = lines
    out = gold.customer_lifetime_value(sales, returns, customer)
    assert out.schema == GOLD["customer_lifetime_value"]
    got = {r.customer_sk: tuple(r)[1:] for r in out.collect()}
    assert got == {
        # customer_id, first, last, orders, line_items, quantity, paid, profit, returned, net, channels, rank, segment
        101: ("C101", d(2000, 2, 10), d(2001, 1, 20), 2, 3, 5, D("72.00"), D("9.00"), D("10.00"), D("62.00"), 2, 1,
              "platinum"),
        # 100 and 103 tie on net value: the lower key ranks first.
        100: ("C100", d(2000, 1, 5), d(2000, 1, 5), 2, 3, 7, D("52.50"), D("9.75"), D("5.50"), D("47.00"), 2, 2,
              "silver"),
        103: (None, d(2000, 2, 10), d(2000, 4, 2), 3, 3, 7, D("47.00"), D("1.00"), D("0.00"), D("47.00"), 1, 3,
              "bronze"),
        102: ("C102", None, None, 1, 1, 1, D("7.00"), D("1.00"), D("7.00"), D("0.00"), 1, 4, "bronze"),
    }


@pytest.mark.parametrize("n, expected", [
    (20, {"platinum": 1, "gold": 3, "silver": 6, "bronze": 10}),  # ceil(1), ceil(4), ceil(10): exact multiples
    (21, {"platinum": 2, "gold": 3, "silver": 6, "bronze": 10}),  # ceil(1.05)=2, ceil(4.2)=5, ceil(10.5)=11
    (1, {"platinum": 1}),
])
def test_segments_are_ceilings_of_shares_of_the_customers(spark, n, expected):
    from pyspark.sql import functions as F

    ranks = spark.range(1, n + 1).select(F.col("id").alias("rank"), F.lit(n).cast("bigint").alias("n"))
    got = ranks.groupBy(gold._segment(F.col("rank"), F.col("n")).alias("s")).count().collect()
    assert {r.s: r["count"] for r in got} == expected


def test_product_performance(lines):
    sales, _, _, item = lines
    out = gold.product_performance(sales, item)
    assert out.drop("_partition").schema == GOLD["product_performance"]
    got = {(r.month, r.item_sk): tuple(r)[2:] for r in out.collect()}
    jan, feb, mar, apr = d(2000, 1, 1), d(2000, 2, 1), d(2000, 3, 1), d(2000, 4, 1)
    books = lambda k: (f"I{k}", f"p{k}", "Books", f"b{k}")  # noqa: E731
    none12 = ("I12", "p12", None, "b12")
    assert got == {
        # attributes, quantity, revenue, profit, orders, margin, category rank, category share, partition
        (jan, 10): (*books(10), 6, D("50.00"), D("11.00"), 2, 11.0 / 50.0, 1, 50.0 / 55.5, "2000-01"),
        (jan, 11): (*books(11), 1, D("5.50"), D("-1.25"), 1, -1.25 / 5.5, 2, 5.5 / 55.5, "2000-01"),
        # A NULL category is one group; no revenue: no margin, no share.
        (jan, 12): (*none12, 0, D("0.00"), D("0.00"), 1, None, 1, None, "2000-01"),
        (feb, 11): (*books(11), 5, D("50.00"), D("0.00"), 1, 0.0, 1, 50.0 / 110.0, "2000-02"),
        (feb, 10): (*books(10), 3, D("30.00"), D("6.00"), 1, 6.0 / 30.0, 2, 30.0 / 110.0, "2000-02"),
        (feb, 13): (*books(13), 1, D("30.00"), D("1.00"), 1, 1.0 / 30.0, 2, 30.0 / 110.0, "2000-02"),  # dense
        (mar, 11): (*books(11), 1, D("0.00"), D("0.00"), 1, None, 1, None, "2000-03"),
        (apr, 11): (*books(11), 1, D("5.00"), D("1.00"), 1, 1.0 / 5.0, 1, 1.0, "2000-04"),
        (d(2001, 1, 1), 12): (*none12, 1, D("12.00"), D("2.00"), 1, 2.0 / 12.0, 1, 1.0, "2001-01"),
    }


def test_monthly_trends(lines):
    sales, _, _, _ = lines
    out = gold.monthly_trends(sales)
    assert out.schema == GOLD["monthly_trends"]
    got = {(r.month, r.channel): tuple(r)[2:] for r in out.collect()}
    z = D("0.00")
    assert got == {
        # orders, customers, quantity, net_paid, net_profit, prev month, mom, prev year, yoy
        (d(2000, 1, 1), "store"): (2, 1, 3, D("14.50"), D("1.75"), None, None, None, None),
        (d(2000, 2, 1), "store"): (1, 1, 4, D("60.00"), D("7.00"), D("14.50"), 45.5 / 14.5, None, None),
        (d(2000, 1, 1), "catalog"): (1, 1, 4, D("38.00"), D("8.00"), None, None, None, None),
        # No December row: no month-over-month; January a year before: year-over-year.
        (d(2001, 1, 1), "catalog"): (1, 1, 1, D("12.00"), D("2.00"), None, None, D("38.00"), -26.0 / 38.0),
        (d(2000, 2, 1), "web"): (1, 1, 5, D("42.00"), z, None, None, None, None),
        (d(2000, 3, 1), "web"): (1, 1, 1, z, z, D("42.00"), -1.0, None, None),
        (d(2000, 4, 1), "web"): (1, 1, 1, D("5.00"), D("1.00"), z, None, None, None),  # after a zero month
    }


def test_empty_silver_gives_empty_gold(lines):
    sales, returns, customer, item = lines
    none_sold, none_returned = sales.limit(0), returns.limit(0)
    assert gold.daily_sales_summary(none_sold, none_returned).count() == 0
    assert gold.customer_lifetime_value(none_sold, none_returned, customer).count() == 0
    assert gold.monthly_trends(none_sold).count() == 0
    assert NULL_PARTITION not in {r._partition for r in gold.product_performance(sales, item).collect()}

