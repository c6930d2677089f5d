"""The four gold tables on the generator's own SF 0.01 tables, against an independent computation in DuckDB SQL.

Silver here is the generator's tables as DuckDB holds them (dated from its
``date_dim``), handed to Spark through Arrow: what silver holds after clean
input. The reference is plain SQL written from the contract's §4, not the code
under test; the two must agree row for row, exactly (decimal sums, and ratios as
the double division of the exact decimals).
"""
from __future__ import annotations

import pytest

from lake_assets.domains.tpcds import gold

CHANNELS = {"store": ("store_sales", "ss", "ss_ticket_number", "ss_customer_sk", "store_returns", "sr",
                      "sr_ticket_number", "sr_customer_sk", "sr_return_amt", "sr_returned_date_sk"),
            "catalog": ("catalog_sales", "cs", "cs_order_number", "cs_bill_customer_sk", "catalog_returns", "cr",
                        "cr_order_number", "cr_returning_customer_sk", "cr_return_amount", "cr_returned_date_sk"),
            "web": ("web_sales", "ws", "ws_order_number", "ws_bill_customer_sk", "web_returns", "wr",
                    "wr_order_number", "wr_returning_customer_sk", "wr_return_amt", "wr_returned_date_sk")}

REFERENCE = """
CREATE TEMP VIEW sl AS {sales};
CREATE TEMP VIEW rl AS {returns};
CREATE TEMP VIEW ref_daily AS
WITH a AS (SELECT sold_date, channel, count(DISTINCT order_number) AS orders, count(*) AS line_items,
                  coalesce(sum(quantity), 0) AS quantity, coalesce(sum(sales), 0) AS gross, coalesce(sum(discount), 0)
                  AS disc, coalesce(sum(paid), 0) AS paid, coalesce(sum(profit), 0) AS profit,
                  count(DISTINCT customer_sk) AS customers
           FROM sl WHERE sold_date IS NOT NULL GROUP BY ALL),
     b AS (SELECT returned_date AS sold_date, channel, coalesce(sum(quantity), 0) AS rq, coalesce(sum(amount), 0) AS ra
           FROM rl WHERE returned_date IS NOT NULL GROUP BY ALL)
SELECT sold_date, channel, coalesce(orders, 0), coalesce(line_items, 0), coalesce(quantity, 0),
       coalesce(gross, 0)::DECIMAL(18,2), coalesce(disc, 0)::DECIMAL(18,2), coalesce(paid, 0)::DECIMAL(18,2),
       coalesce(profit, 0)::DECIMAL(18,2), coalesce(customers, 0), coalesce(rq, 0), coalesce(ra, 0)::DECIMAL(18,2),
       strftime(sold_date, '%Y-%m')
FROM a FULL JOIN b USING (sold_date, channel);
CREATE TEMP VIEW ref_clv AS
WITH c AS (SELECT customer_sk, min(sold_date) AS first, max(sold_date) AS last,
                  count(DISTINCT (channel, order_number)) AS orders, count(*) AS line_items,
                  coalesce(sum(quantity), 0) AS quantity, coalesce(sum(paid), 0) AS paid,
                  coalesce(sum(profit), 0) AS profit, count(DISTINCT channel) AS channels
           FROM sl WHERE customer_sk IS NOT NULL GROUP BY customer_sk),
     r AS (SELECT customer_sk, sum(amount) AS returned FROM rl WHERE customer_sk IS NOT NULL GROUP BY customer_sk),
     v AS (SELECT c.*, coalesce(r.returned, 0) AS returned, c.paid - coalesce(r.returned, 0) AS net
           FROM c LEFT JOIN r USING (customer_sk)),
     k AS (SELECT *, row_number() OVER (ORDER BY net DESC, customer_sk) AS value_rank, count(*) OVER () AS n FROM v)
SELECT customer_sk, cu.c_customer_id, first, last, orders, line_items, quantity, paid::DECIMAL(18,2),
       profit::DECIMAL(18,2), returned::DECIMAL(18,2), net::DECIMAL(18,2), channels, value_rank,
       CASE WHEN value_rank <= ceil(0.05 * n) THEN 'platinum' WHEN value_rank <= ceil(0.20 * n) THEN 'gold'
            WHEN value_rank <= ceil(0.50 * n) THEN 'silver' ELSE 'bronze' END
FROM k LEFT JOIN customer cu ON cu.c_customer_sk = k.customer_sk;
CREATE TEMP VIEW ref_product AS
WITH p AS (SELECT date_trunc('month', sold_date)::DATE AS month, item_sk, coalesce(sum(quantity), 0) AS quantity,
                  coalesce(sum(sales), 0) AS revenue, coalesce(sum(profit), 0) AS profit,
                  count(DISTINCT (channel, order_number)) AS orders
           FROM sl WHERE sold_date IS NOT NULL GROUP BY ALL),
     q AS (SELECT p.*, i.i_item_id, i.i_product_name, i.i_category, i.i_brand,
                  sum(revenue) OVER (PARTITION BY month, i.i_category) AS cat_revenue,
                  dense_rank() OVER (PARTITION BY month, i.i_category ORDER BY revenue DESC) AS category_rank
           FROM p LEFT JOIN item i ON i.i_item_sk = p.item_sk)
SELECT month, item_sk, i_item_id, i_product_name, i_category, i_brand, quantity, revenue::DECIMAL(18,2),
       profit::DECIMAL(18,2), orders, CASE WHEN revenue <> 0 THEN profit::DOUBLE / revenue::DOUBLE END,
       category_rank, CASE WHEN cat_revenue <> 0 THEN revenue::DOUBLE / cat_revenue::DOUBLE END,
       strftime(month, '%Y-%m')
FROM q;
CREATE TEMP VIEW ref_trends AS
WITH m AS (SELECT date_trunc('month', sold_date)::DATE AS month, channel, count(DISTINCT order_number) AS orders,
                  count(DISTINCT customer_sk) AS customers, coalesce(sum(quantity), 0) AS quantity,
                  coalesce(sum(paid), 0) AS paid, coalesce(sum(profit), 0) AS profit
           FROM sl WHERE sold_date IS NOT NULL GROUP BY ALL)
SELECT m.month, m.channel, m.orders, m.customers, m.quantity, m.paid::DECIMAL(18,2), m.profit::DECIMAL(18,2),
       pm.paid::DECIMAL(18,2), CASE WHEN pm.paid <> 0 THEN (m.paid - pm.paid)::DOUBLE / pm.paid::DOUBLE END,
       py.paid::DECIMAL(18,2), CASE WHEN py.paid <> 0 THEN (m.paid - py.paid)::DOUBLE / py.paid::DOUBLE END
FROM m LEFT JOIN m pm ON pm.channel = m.channel AND pm.month = m.month - INTERVAL 1 MONTH
       LEFT JOIN m py ON py.channel = m.channel AND py.month = m.month - INTERVAL 12 MONTH;
"""


def _lines_sql() -> tuple[str, str]:
    sales, returns = [], []
    for channel, (st, sp, order, customer, rt, rp, rorder, rcustomer, amount, rdate) in CHANNELS.items():
        sales.append(
            f"SELECT '{channel}' AS channel, d_date AS sold_date, {order} AS order_number, {sp}_item_sk AS item_sk, "
            f"{customer} AS customer_sk, {sp}_quantity AS quantity, {sp}_ext_sales_price AS sales, "
            f"{sp}_ext_discount_amt AS discount, {sp}_net_paid AS paid, {sp}_net_profit AS profit "
            f"FROM {st} LEFT JOIN date_dim ON {sp}_sold_date_sk = d_date_sk")
        returns.append(
            f"SELECT '{channel}' AS channel, d_date AS returned_date, {rorder} AS order_number, "
            f"{rcustomer} AS customer_sk, {rp}_return_quantity AS quantity, {amount} AS amount "
            f"FROM {rt} LEFT JOIN date_dim ON {rdate} = d_date_sk")
    return " UNION ALL ".join(sales), " UNION ALL ".join(returns)


@pytest.fixture(scope="module")
def generated(spark):
    """DuckDB's SF 0.01 tables, the reference gold views over them, and Spark's sales and return lines."""
    from lake_assets.domains.tpcds.generator import connect_tpcds

    con = connect_tpcds()
    con.execute("CALL dsdgen(sf=0.01)")
    sales_sql, returns_sql = _lines_sql()
    con.execute(REFERENCE.format(sales=sales_sql, returns=returns_sql))
    sales = spark.createDataFrame(con.execute("FROM sl").fetch_arrow_table())
    returns = spark.createDataFrame(con.execute("FROM rl").fetch_arrow_table())
    customer = spark.createDataFrame(con.execute("SELECT c_customer_sk, c_customer_id FROM customer").fetch_arrow_table())
    item = spark.createDataFrame(con.execute(
        "SELECT i_item_sk, i_item_id, i_product_name, i_category, i_brand FROM item").fetch_arrow_table())
    yield con, sales, returns, customer, item
    con.close()


def _same(df, con, view: str) -> None:
    ours = sorted((tuple(r) for r in df.collect()), key=repr)
    reference = sorted(con.execute(f"FROM {view}").fetchall(), key=repr)
    assert len(ours) == len(reference) > 0
    assert ours == reference


def test_gold_equals_an_independent_computation(generated):
    con, sales, returns, customer, item = generated
    sales, returns = sales.cache(), returns.cache()
    _same(gold.daily_sales_summary(sales, returns), con, "ref_daily")
    _same(gold.customer_lifetime_value(sales, returns, customer), con, "ref_clv")
    _same(gold.product_performance(sales, item), con, "ref_product")
    _same(gold.monthly_trends(sales), con, "ref_trends")
