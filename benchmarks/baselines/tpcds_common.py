"""What the two TPC-DS baselines share: the DDL as data and the contract's channel tables.

``lake_assets/domains/tpcds/spec.py`` is loaded as a module of its own (it imports nothing),
so neither baseline imports ``lake_assets`` (or Dagster) and neither retypes the 24 tables.
"""
from __future__ import annotations

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(os.path.dirname(HERE))
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


def load_spec():
    """``lake_assets/domains/tpcds/spec.py`` as a module of its own: the DDL as data, nothing else imported."""
    path = os.path.join(PROJECT, "lake_assets", "domains", "tpcds", "spec.py")
    mod_spec = importlib.util.spec_from_file_location("tpcds_spec_for_baseline", path)
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_spec.name] = module  # dataclasses look their module up
    mod_spec.loader.exec_module(module)
    return module


SPEC = load_spec()
TABLES, FACTS, DIMENSIONS = SPEC.TABLES, SPEC.FACTS, SPEC.DIMENSIONS

# Contract §4: channel -> (table, order, item, customer, quantity, sales, discount, paid, profit).
SALES = {
    "store": ("store_sales", "ss_ticket_number", "ss_item_sk", "ss_customer_sk", "ss_quantity",
              "ss_ext_sales_price", "ss_ext_discount_amt", "ss_net_paid", "ss_net_profit"),
    "catalog": ("catalog_sales", "cs_order_number", "cs_item_sk", "cs_bill_customer_sk", "cs_quantity",
                "cs_ext_sales_price", "cs_ext_discount_amt", "cs_net_paid", "cs_net_profit"),
    "web": ("web_sales", "ws_order_number", "ws_item_sk", "ws_bill_customer_sk", "ws_quantity",
            "ws_ext_sales_price", "ws_ext_discount_amt", "ws_net_paid", "ws_net_profit"),
}
# channel -> (table, order, customer, quantity, amount).
RETURNS = {
    "store": ("store_returns", "sr_ticket_number", "sr_customer_sk", "sr_return_quantity", "sr_return_amt"),
    "catalog": ("catalog_returns", "cr_order_number", "cr_returning_customer_sk", "cr_return_quantity",
                "cr_return_amount"),
    "web": ("web_returns", "wr_order_number", "wr_returning_customer_sk", "wr_return_quantity", "wr_return_amt"),
}
