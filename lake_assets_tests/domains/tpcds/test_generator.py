"""``lake generate tpcds``: dsdgen's format from DuckDB's generator, chunks, gzip, and the optional bad input."""
from __future__ import annotations

import gzip
import random

import pytest

from lake_assets.domains.tpcds.generator import break_line, connect_tpcds, generate_tpcds
from lake_assets.domains.tpcds.spec import TABLES


def _text(storage, rel: str) -> str:
    data = storage.read_bytes(rel)
    return (gzip.decompress(data) if rel.endswith(".gz") else data).decode("utf-8")


def test_writes_every_table_in_dsdgen_format_equal_to_the_generators_tables(local_lake, tmp_path):
    gen = generate_tpcds(local_lake, scale=0.01, chunks=2, work_dir=str(tmp_path))  # gzip: test_domain
    assert sorted(gen.rows) == sorted(TABLES) and gen.rows["store_sales"] == 28810
    assert gen.bad_lines == {} and gen.bad_files == []
    assert [f for f in gen.files if "/store_sales/" in f] == [
        "raw/tpcds/store_sales/store_sales_1_2.dat", "raw/tpcds/store_sales/store_sales_2_2.dat"]
    for table, spec in TABLES.items():
        lines = [line for f in gen.files if f"/{table}/" in f for line in _text(local_lake, f).splitlines()]
        assert len(lines) == gen.rows[table], table
        # A '|' after the last field too: one empty piece more than the table has columns.
        assert all(line.endswith("|") and line.count("|") == len(spec.columns) for line in lines), table
    # The values, read back by DuckDB as dsdgen files (an independent reader), are the generator's rows.
    con = connect_tpcds()
    try:
        con.execute("CALL dsdgen(sf=0.01)")
        for table in ("store_sales", "item", "date_dim", "customer"):
            spec = TABLES[table]
            cols = ", ".join(f"'{c}': '{con.execute(f'SELECT typeof({c}) FROM {table} LIMIT 1').fetchone()[0]}'"
                             for c in spec.column_names)
            files = [local_lake.local_path(f) for f in gen.files if f"/{table}/" in f]
            read = (f"SELECT {', '.join(spec.column_names)} FROM read_csv({files!r}, delim='|', header=false, "
                    f"quote='', escape='', columns={{{cols}, '__eol': 'VARCHAR'}})")
            # An empty string is an empty field, which dsdgen's format reads as NULL (c_login is '').
            generated = "SELECT " + ", ".join(f"nullif({c.name}, '')" if c.type == "string" else c.name
                                              for c in spec.columns) + f" FROM {table}"
            for a, b in ((generated, read), (read, generated)):
                assert con.execute(f"SELECT count(*) FROM (({a}) EXCEPT ALL ({b}))").fetchone()[0] == 0, table
    finally:
        con.close()


def test_one_plain_file_per_table_by_default(local_lake, tmp_path):
    gen = generate_tpcds(local_lake, scale=0.01, tables=("item", "reason"), work_dir=str(tmp_path))
    assert gen.files == ["raw/tpcds/item/item.dat", "raw/tpcds/reason/reason.dat"]
    assert _text(local_lake, "raw/tpcds/reason/reason.dat").count("\n") == gen.rows["reason"]


def test_bad_lines_are_appended_and_bad_files_cannot_be_read(local_lake, tmp_path):
    gen = generate_tpcds(local_lake, scale=0.01, tables=("store_sales",), bad_share=0.001, bad_files=2,
                         work_dir=str(tmp_path))
    # 28 broken lines, the seven kinds in turn.
    assert gen.bad_lines == {"wrong_field_count": 4, "invalid_type": 4, "missing_primary_key": 4,
                             "negative_value": 4, "unknown_date": 4, "unknown_item": 4, "duplicate": 4}
    lines = _text(local_lake, "raw/tpcds/store_sales/store_sales.dat").splitlines()
    assert len(lines) == 28810 + 28
    assert gen.bad_files == ["raw/tpcds/store_sales/store_sales_corrupt_1.dat.gz",
                             "raw/tpcds/store_sales/store_sales_not_utf8_2.dat"]
    with pytest.raises((OSError, EOFError)):
        gzip.decompress(local_lake.read_bytes(gen.bad_files[0]))
    with pytest.raises(UnicodeDecodeError):
        local_lake.read_bytes(gen.bad_files[1]).decode("utf-8")


def test_each_broken_line_breaks_what_it_says(dsdgen_line):
    spec = TABLES["store_sales"]
    line = dsdgen_line(spec, ss_sold_date_sk=2451813, ss_item_sk=128, ss_ticket_number=1, ss_quantity=79,
                       ss_net_paid="121.66", ss_net_profit="-779.73")
    rng = random.Random(1)
    fields = {kind: break_line(line, spec, kind, rng).split("|")[:-1] for kind in (
        "wrong_field_count", "missing_primary_key", "negative_value", "unknown_date", "unknown_item")}
    assert len(fields["wrong_field_count"]) == len(spec.columns) - 1
    assert [fields["unknown_date"][0], fields["unknown_item"][2]] == ["99999999", "99999999"]
    assert "" in [fields["missing_primary_key"][i] for i in (2, 9)]
    negative = [v for v in fields["negative_value"] if v in ("-1", "-1.00")]
    assert len(negative) == 1
    assert break_line(line, spec, "duplicate", rng) == line
