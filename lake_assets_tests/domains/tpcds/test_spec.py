"""The 24 TPC-DS tables as declared: against the generator's own tables and the contract (no Spark)."""
from __future__ import annotations

import re

import pytest
from pyspark.sql import types as T

from lake_assets.domains.tpcds import schemas
from lake_assets.domains.tpcds.spec import DIMENSIONS, FACTS, TABLES


@pytest.fixture(scope="module")
def duckdb_tables():
    """Every table DuckDB's tpcds extension generates: name -> [(column, DuckDB type)] in order."""
    from lake_assets.domains.tpcds.generator import connect_tpcds

    con = connect_tpcds()
    try:
        con.execute("CALL dsdgen(sf=0)")
        rows = con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                           "ORDER BY table_name, ordinal_position").fetchall()
    finally:
        con.close()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, type_ in rows:
        out.setdefault(table, []).append((column, type_))
    return out


def test_tables_are_the_generators_columns_in_order_with_the_ddl_types(duckdb_tables):
    assert sorted(TABLES) == sorted(duckdb_tables)
    assert len(TABLES) == 24 and sum(len(t.columns) for t in TABLES.values()) == 425
    for name, spec in TABLES.items():
        assert spec.column_names == tuple(c for c, _ in duckdb_tables[name]), name
        for column, duck in duckdb_tables[name]:
            ours = spec.by_name[column].type
            # DuckDB types both identifier and integer as BIGINT (some INTEGER): the spec's split is by name.
            expected = {"VARCHAR": "string", "DATE": "date"}.get(duck) or (
                ours if duck in ("BIGINT", "INTEGER") else duck.lower().replace(" ", ""))
            assert ours == expected, (name, column, duck)


def test_identifiers_are_the_surrogate_keys_tickets_and_orders():
    for spec in TABLES.values():
        for c in spec.columns:
            key = c.name.endswith("_sk") or re.search(r"_(ticket|order)_number$", c.name)
            assert (c.type == "identifier") == bool(key), c.name


def test_keys_dating_and_measures_are_the_contracts():
    assert {n: t.primary_key for n, t in FACTS.items()} == {
        "store_sales": ("ss_item_sk", "ss_ticket_number"), "store_returns": ("sr_item_sk", "sr_ticket_number"),
        "catalog_sales": ("cs_item_sk", "cs_order_number"), "catalog_returns": ("cr_item_sk", "cr_order_number"),
        "web_sales": ("ws_item_sk", "ws_order_number"), "web_returns": ("wr_item_sk", "wr_order_number"),
        "inventory": ("inv_date_sk", "inv_item_sk", "inv_warehouse_sk")}
    assert len(DIMENSIONS) == 17
    assert all(t.primary_key == (t.columns[0].name,) and t.columns[0].name.endswith("_sk")
               for t in DIMENSIONS.values())
    assert {n: (t.dating.key, t.dating.column, t.dating.partition) for n, t in FACTS.items()} == {
        "store_sales": ("ss_sold_date_sk", "sold_date", "sold_month"),
        "catalog_sales": ("cs_sold_date_sk", "sold_date", "sold_month"),
        "web_sales": ("ws_sold_date_sk", "sold_date", "sold_month"),
        "store_returns": ("sr_returned_date_sk", "returned_date", "returned_month"),
        "catalog_returns": ("cr_returned_date_sk", "returned_date", "returned_month"),
        "web_returns": ("wr_returned_date_sk", "returned_date", "returned_month"),
        "inventory": ("inv_date_sk", "inv_date", "inv_month")}
    assert FACTS["catalog_sales"].date_keys == ("cs_sold_date_sk", "cs_ship_date_sk")
    # Rule 2: integer and decimal columns but the net profit; keys, tickets and orders are identifiers.
    assert TABLES["store_sales"].measures == (
        "ss_quantity", "ss_wholesale_cost", "ss_list_price", "ss_sales_price", "ss_ext_discount_amt",
        "ss_ext_sales_price", "ss_ext_wholesale_cost", "ss_ext_list_price", "ss_ext_tax", "ss_coupon_amt",
        "ss_net_paid", "ss_net_paid_inc_tax")
    assert "sr_net_loss" in TABLES["store_returns"].measures
    assert TABLES["inventory"].rule_names == ("missing_primary_key", "negative_value:inv_quantity_on_hand",
                                              "unknown_date", "unknown_item", "duplicate")
    assert TABLES["item"].rule_names == ("missing_primary_key", "duplicate")
    assert all(not t.measures and not t.date_keys for t in DIMENSIONS.values())


def test_spark_schemas_follow_the_ddl():
    ss = schemas.BRONZE["store_sales"]
    assert ss["ss_item_sk"].dataType == T.LongType() and ss["ss_ticket_number"].dataType == T.LongType()
    assert ss["ss_quantity"].dataType == T.IntegerType()
    assert ss["ss_net_paid"].dataType == T.DecimalType(7, 2)
    assert ss.fieldNames()[-4:] == ["_source_file", "_line", "_ingest_run_id", "_ingested_at"]
    assert schemas.BRONZE["promotion"]["p_cost"].dataType == T.DecimalType(15, 2)
    assert schemas.BRONZE["date_dim"]["d_date"].dataType == T.DateType()
    assert schemas.BRONZE["date_dim"]["d_year"].dataType == T.IntegerType()
    assert schemas.BRONZE["item"]["i_item_id"].dataType == T.StringType()
    assert schemas.SILVER["store_sales"].fieldNames() == [
        *TABLES["store_sales"].column_names, "sold_date", "_source_file", "load_timestamp"]
    assert schemas.SILVER["item"].fieldNames() == [*TABLES["item"].column_names, "_source_file", "load_timestamp"]
    assert schemas.QUARANTINE_SCHEMA.fieldNames() == [
        "record", "reason", "reasons", "source_file", "line", "ingest_run_id", "stage"]
