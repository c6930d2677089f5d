"""Bronze rows -> silver rows and quarantined rows (contract §3): each rule, several at once, deduplication
over the whole table, NULL dates, standardisation, on hand-made rows."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from lake_assets.catalog.tables import NULL_PARTITION
from lake_assets.domains.tpcds import silver
from lake_assets.domains.tpcds.schemas import BRONZE, SILVER, silver_schema
from lake_assets.domains.tpcds.spec import TABLES

T1 = dt.datetime(2024, 1, 1, 10, 0)
T2 = dt.datetime(2024, 1, 2, 10, 0)
LOADED = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
# Run ids that sort against their time: the latest run is the one ingested last, not the largest id.
RUN1, RUN2 = "zz-first", "aa-second"
FILE_A, FILE_B = "raw/tpcds/t/a.dat", "raw/tpcds/t/b.dat"


def _bronze(frame, table: str, rows: list[dict]):
    """Bronze rows of ``table``: each dict's values plus lineage (run 1, file a, line = position by default)."""
    lineage = {"_source_file": FILE_A, "_ingest_run_id": RUN1, "_ingested_at": T1}
    return frame(BRONZE[table], [{**lineage, "_line": i, **r} for i, r in enumerate(rows, 1)])


@pytest.fixture
def dims(frame):
    """Silver's date_dim (keys 1: 2000-01-31, 2: 2000-02-01) and item (keys 10, 11, 12)."""
    meta = {"_source_file": "raw/tpcds/x.dat", "load_timestamp": T1}
    date_dim = frame(SILVER["date_dim"], [{"d_date_sk": 1, "d_date": dt.date(2000, 1, 31), **meta},
                                          {"d_date_sk": 2, "d_date": dt.date(2000, 2, 1), **meta}])
    item = frame(SILVER["item"], [{"i_item_sk": k, **meta} for k in (10, 11, 12)])
    return date_dim, item


def test_fact_rules_dedup_and_partitions(frame, dims, dsdgen_line):
    spec = TABLES["store_sales"]
    corrected = {"_ingest_run_id": RUN2, "_ingested_at": T2, "_line": 1}
    rows = [
        dict(ss_sold_date_sk=1, ss_item_sk=10, ss_ticket_number=1, ss_quantity=2,
             ss_net_profit=Decimal("-5.00")),  # valid: a net profit may be negative
        dict(ss_sold_date_sk=None, ss_item_sk=10, ss_ticket_number=2, ss_quantity=1),  # no date: kept
        dict(ss_sold_date_sk=1, ss_item_sk=99, ss_ticket_number=None, ss_quantity=-1),  # three rules
        dict(ss_sold_date_sk=1, ss_item_sk=10, ss_ticket_number=3, ss_wholesale_cost=Decimal("-1.00"),
             ss_coupon_amt=Decimal("-0.01")),
        dict(ss_sold_date_sk=77, ss_item_sk=11, ss_ticket_number=4),  # unknown date
        dict(ss_sold_date_sk=1, ss_item_sk=11, ss_ticket_number=5, ss_quantity=1),  # moved to February by run 2
        dict(ss_sold_date_sk=2, ss_item_sk=11, ss_ticket_number=5, ss_quantity=3, **corrected),
        dict(ss_sold_date_sk=1, ss_item_sk=12, ss_ticket_number=6, ss_quantity=4),  # re-delivered in file b
        dict(ss_sold_date_sk=1, ss_item_sk=12, ss_ticket_number=6, ss_quantity=4, _source_file=FILE_B, _line=1),
        dict(ss_sold_date_sk=1, ss_item_sk=12, ss_ticket_number=7, ss_quantity=1, _source_file=FILE_B, _line=2),
        dict(ss_sold_date_sk=1, ss_item_sk=12, ss_ticket_number=7, ss_quantity=2, _source_file=FILE_B, _line=3),
        dict(ss_sold_date_sk=1, ss_item_sk=10, ss_ticket_number=8, ss_quantity=1),  # wins: its later copy is broken
        dict(ss_sold_date_sk=1, ss_item_sk=10, ss_ticket_number=8, ss_quantity=-2, **{**corrected, "_line": 2}),
    ]
    parsed = silver.parse(_bronze(frame, "store_sales", rows), spec, *dims).cache()
    good = silver.silver_rows(parsed, spec, LOADED)
    assert good.schema.fieldNames() == silver_schema(spec).fieldNames() + ["_partition"]
    assert [(f.name, f.dataType) for f in good.schema.fields[:-1]] == [
        (f.name, f.dataType) for f in silver_schema(spec).fields]
    got = {(r.ss_ticket_number, r.ss_quantity, r.sold_date, r._partition, r._source_file)
           for r in good.collect()}
    assert got == {
        (1, 2, dt.date(2000, 1, 31), "2000-01", FILE_A),
        (2, 1, None, NULL_PARTITION, FILE_A),
        (5, 3, dt.date(2000, 2, 1), "2000-02", FILE_A),  # the correction, in its new month only
        (6, 4, dt.date(2000, 1, 31), "2000-01", FILE_B),
        (7, 2, dt.date(2000, 1, 31), "2000-01", FILE_B),
        (8, 1, dt.date(2000, 1, 31), "2000-01", FILE_A),
    }
    assert {r.load_timestamp for r in good.collect()} == {LOADED.replace(tzinfo=None)}

    bad = silver.silver_rejects(parsed, spec).collect()
    assert sorted((r.line, r.source_file, r.ingest_run_id, r.reason, r.reasons, r._partition, r.stage)
                  for r in bad) == sorted([
        (3, FILE_A, RUN1, "missing_primary_key",
         ["missing_primary_key", "negative_value:ss_quantity", "unknown_item"], "2000-01", "silver"),
        (4, FILE_A, RUN1, "negative_value:ss_wholesale_cost",
         ["negative_value:ss_wholesale_cost", "negative_value:ss_coupon_amt"], "2000-01", "silver"),
        (5, FILE_A, RUN1, "unknown_date", ["unknown_date"], NULL_PARTITION, "silver"),
        (6, FILE_A, RUN1, "duplicate", ["duplicate"], "2000-01", "silver"),  # the old month's copy
        (8, FILE_A, RUN1, "duplicate", ["duplicate"], "2000-01", "silver"),
        (2, FILE_B, RUN1, "duplicate", ["duplicate"], "2000-01", "silver"),
        (2, FILE_A, RUN2, "negative_value:ss_quantity", ["negative_value:ss_quantity"], "2000-01", "silver"),
    ])
    # The record is the bronze row as a dsdgen line.
    [three] = [r for r in bad if r.line == 3 and r.source_file == FILE_A]
    assert three.record == dsdgen_line(spec, ss_sold_date_sk=1, ss_item_sk=99, ss_quantity=-1)
    assert parsed.count() == len(rows)  # the lookups multiplied nothing


def test_every_date_key_of_a_fact_is_looked_up(frame, dims):
    spec = TABLES["catalog_sales"]
    rows = [dict(cs_sold_date_sk=1, cs_ship_date_sk=77, cs_item_sk=10, cs_order_number=1),
            dict(cs_sold_date_sk=2, cs_ship_date_sk=None, cs_item_sk=10, cs_order_number=2)]
    parsed = silver.parse(_bronze(frame, "catalog_sales", rows), spec, *dims)
    assert sorted((r.cs_order_number, r.reasons, r.sold_date) for r in parsed.collect()) == [
        (1, ["unknown_date"], dt.date(2000, 1, 31)), (2, [], dt.date(2000, 2, 1))]


def test_inventory_is_dated_by_its_key(frame, dims):
    spec = TABLES["inventory"]
    rows = [dict(inv_date_sk=2, inv_item_sk=10, inv_warehouse_sk=1, inv_quantity_on_hand=5),
            dict(inv_date_sk=None, inv_item_sk=10, inv_warehouse_sk=1, inv_quantity_on_hand=-1),
            dict(inv_date_sk=77, inv_item_sk=13, inv_warehouse_sk=1)]
    parsed = silver.parse(_bronze(frame, "inventory", rows), spec, *dims)
    assert sorted((r._line, r.reasons, r.inv_date, r._partition) for r in parsed.collect()) == [
        (1, [], dt.date(2000, 2, 1), "2000-02"),
        (2, ["missing_primary_key", "negative_value:inv_quantity_on_hand"], None, NULL_PARTITION),
        (3, ["unknown_date", "unknown_item"], None, NULL_PARTITION)]


def test_dimensions_are_trimmed_keyed_and_deduplicated(frame):
    spec = TABLES["item"]
    later = {"_ingest_run_id": RUN2, "_ingested_at": T2}
    rows = [dict(i_item_sk=1, i_item_id=" \tAAAA \n", i_item_desc="   ", i_category="", i_brand="a  b",
                 i_current_price=Decimal("1.50")),
            dict(i_item_sk=None, i_item_id="B"),
            dict(i_item_sk=2, i_item_id="old"),
            dict(i_item_sk=2, i_item_id="new", **later),
            # Duplicates (a file sorting first: line 1 wins): the record is the row as bronze held it,
            # spaces and empty strings included.
            dict(i_item_sk=1, i_item_id=" padded ", i_brand="", _source_file="raw/tpcds/t/0.dat"),
            dict(i_item_sk=1, i_item_id="AAAA", i_brand="", _source_file="raw/tpcds/t/0.dat")]
    parsed = silver.parse(_bronze(frame, "item", rows), spec)
    good = silver.silver_rows(parsed, spec, LOADED)
    assert good.schema.fieldNames() == silver_schema(spec).fieldNames()  # no partition: dimensions are whole
    assert sorted((r.i_item_sk, r.i_item_id, r.i_item_desc, r.i_category, r.i_brand, r.i_current_price)
                  for r in good.collect()) == [(1, "AAAA", None, None, "a  b", Decimal("1.50")),
                                               (2, "new", None, None, None, None)]
    bad = silver.silver_rejects(parsed, spec)
    assert "_partition" not in bad.columns
    line = lambda *fields: "|".join([*fields, *[""] * (len(spec.columns) - len(fields))]) + "|"  # noqa: E731
    assert sorted((r.line, r.reasons, r.record) for r in bad.collect()) == [
        (2, ["missing_primary_key"], line("", "B")),
        (3, ["duplicate"], line("2", "old")),
        (5, ["duplicate"], line("1", " padded ")),
        (6, ["duplicate"], line("1", "AAAA"))]  # (its empty brand an empty field, as NULL prints)


def test_a_fact_without_its_lookups_is_refused(frame):
    with pytest.raises(ValueError, match="date_dim and item"):
        silver.parse(_bronze(frame, "store_sales", []), TABLES["store_sales"])
