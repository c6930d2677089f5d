"""dsdgen lines -> bronze rows or quarantined lines (contract §2), reason by reason, on hand-made lines."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from lake_assets.domains.tpcds import bronze
from lake_assets.domains.tpcds.schemas import BRONZE, QUARANTINE_SCHEMA
from lake_assets.domains.tpcds.spec import TABLES

ITEM = TABLES["item"]
AT = dt.datetime(2024, 5, 1, 12, 0)
VALID = dict(i_item_sk=1, i_item_id="AAAAAAAABAAAAAAA", i_rec_start_date="1997-10-27", i_item_desc="  two spaces ",
             i_current_price="27.02", i_wholesale_cost="12.3", i_brand_id="-5", i_brand="exportischolar #2",
             i_category="Music", i_manager_id="6", i_product_name="ought")


def _parse(frame, lines):
    df = frame(bronze.LINES_SCHEMA, [{"record": text, "source_file": "raw/tpcds/item/item.dat", "line": n,
                                      "ingest_run_id": "run-1", "ingested_at": AT}
                                     for n, text in enumerate(lines, 1)])
    return bronze.parse_lines(df, ITEM).cache()


def test_every_reason_of_a_line_in_column_order(frame, dsdgen_line):
    line = lambda **kw: dsdgen_line(ITEM, **{**VALID, **kw})  # noqa: E731
    valid = line()
    cases = {
        valid: [],
        valid[:-1]: [],  # without the trailing "|" (not dsdgen's way): still the table's count of fields
        "|".join(valid.split("|")[:-2]) + "|": ["wrong_field_count"],  # a field short
        valid + "x|": ["wrong_field_count"],  # a field too many
        line(i_item_sk="12x", i_brand_id="1.0"): ["invalid_type:i_item_sk", "invalid_type:i_brand_id"],
        line(i_item_sk="9223372036854775808"): ["invalid_type:i_item_sk"],  # overflows int64
        line(i_brand_id="2147483648"): ["invalid_type:i_brand_id"],  # overflows int32
        line(i_brand_id=" 5"): ["invalid_type:i_brand_id"],
        line(i_current_price="1.005"): ["invalid_type:i_current_price"],  # more decimals than the scale
        line(i_current_price="1.000"): ["invalid_type:i_current_price"],
        line(i_current_price="100000.00"): ["invalid_type:i_current_price"],  # overflows decimal(7,2)
        line(i_current_price="+1.00"): ["invalid_type:i_current_price"],
        line(i_rec_start_date="2001-02-30"): ["invalid_type:i_rec_start_date"],  # no such day
        line(i_rec_start_date="2001-2-03"): ["invalid_type:i_rec_start_date"],
        line(i_rec_start_date="2001-02-03 00:00:00", i_current_price="x", i_manager_id="1e3"):
            ["invalid_type:i_rec_start_date", "invalid_type:i_current_price", "invalid_type:i_manager_id"],
    }
    assert len(cases) == 15  # no two cases are the same line
    rows = _parse(frame, list(cases)).orderBy("_line").collect()
    assert [r.reasons for r in rows] == list(cases.values())
    first = rows[0]
    assert (first.i_item_sk, first.i_item_id, first.i_rec_start_date, first.i_rec_end_date, first.i_item_desc,
            first.i_current_price, first.i_wholesale_cost, first.i_brand_id, first.i_class_id) == (
        1, "AAAAAAAABAAAAAAA", dt.date(1997, 10, 27), None, "  two spaces ", Decimal("27.02"), Decimal("12.30"),
        -5, None)
    assert rows[1].i_item_sk == 1 and rows[1].reasons == []
    # A line with the wrong count is not lined up with columns: no typed value at all.
    assert all(rows[2][c] is None for c in ITEM.column_names)


def test_rows_and_rejects_take_the_contracts_shapes(frame, dsdgen_line):
    good = dsdgen_line(ITEM, **VALID)
    bad = dsdgen_line(ITEM, **{**VALID, "i_current_price": "-"})
    parsed = _parse(frame, [good, "garbage", bad])
    rows = bronze.bronze_rows(parsed, ITEM)
    assert rows.schema == BRONZE["item"]
    [row] = rows.collect()
    assert (row._source_file, row._line, row._ingest_run_id, row._ingested_at) == (
        "raw/tpcds/item/item.dat", 1, "run-1", AT)
    rejects = bronze.bronze_rejects(parsed)
    assert rejects.schema.fieldNames() == QUARANTINE_SCHEMA.fieldNames()
    assert [tuple(r) for r in rejects.orderBy("line").collect()] == [
        ("garbage", "wrong_field_count", ["wrong_field_count"], "raw/tpcds/item/item.dat", 2, "run-1", "bronze"),
        (bad, "invalid_type:i_current_price", ["invalid_type:i_current_price"], "raw/tpcds/item/item.dat", 3,
         "run-1", "bronze"),
    ]


def test_lines_come_from_the_shared_ingestions_numbered_text(frame, dsdgen_line):
    from lake_assets.ingest.validated import NUMBERED_INPUT_SCHEMA

    validated = frame(NUMBERED_INPUT_SCHEMA, [{
        "record": dsdgen_line(ITEM, **VALID), "routed_date": dt.date(2024, 5, 1), "source_format": "item",
        "source_file": "raw/tpcds/item/item.dat", "ingest_run_id": "run-1", "ingest_ts": AT, "position": 0}])
    lines = bronze.lines_from_validated(validated)
    assert lines.schema.fieldNames() == bronze.LINES_SCHEMA.fieldNames()
    [row] = bronze.bronze_rows(bronze.parse_lines(lines, ITEM), ITEM).collect()
    assert (row.i_item_sk, row._line, row._ingested_at) == (1, 1, AT)  # the first line is line 1


def test_a_split_write_reads_its_rejects_from_the_kept_parse_then_releases_it(frame, dsdgen_line):
    """``write_split`` with ``cache``: the rejects' job reads the parse the rows' job kept (no second parse),
    and the parse is released once both are written; without rejects there is no second job at all."""
    from lake_assets.domains.tpcds.assets import write_split

    good, bad = dsdgen_line(ITEM, **VALID), "garbage"
    for lines, cache in (([good, bad], True), ([good, bad], False), ([good], True)):
        df = frame(bronze.LINES_SCHEMA, [{"record": text, "source_file": "raw/tpcds/item/item.dat", "line": n,
                                          "ingest_run_id": "run-1", "ingested_at": AT}
                                         for n, text in enumerate(lines, 1)])
        parsed = bronze.parse_lines(df, ITEM)
        seen = {}

        def write_rows(frame_):
            seen["rows_cached"] = parsed.is_cached
            return {"f": bronze.bronze_rows(frame_, ITEM).count()}

        def write_rejects(frame_, keys):
            seen["rejects_cached"] = None if frame_ is None else frame_.is_cached
            found = [] if frame_ is None else [r.record for r in bronze.bronze_rejects(frame_).collect()]
            seen["rejects"] = found
            return {k: len(found) for k in keys}

        rows, rejected = write_split(parsed, write_rows, write_rejects, lambda written: sorted(written), cache=cache)
        assert rows == {"f": 1}
        assert seen["rows_cached"] is cache
        if len(lines) == 2:
            assert (rejected, seen["rejects"], seen["rejects_cached"]) == ({"f": 1}, [bad], cache)
        else:  # no reject: the keys' rejects cleared without reading the parse again
            assert (rejected, seen["rejects"], seen["rejects_cached"]) == ({"f": 0}, [], None)
        assert not parsed.is_cached  # released
