"""The 99 TPC-DS queries, exactly as DuckDB's ``tpcds`` extension ships them, through ``lake sql`` over silver.

Silver is the session's tpcds lake (``tpcds_lake`` in conftest): dsdgen's SF 0.01
files, broken lines and unreadable files included, taken through the domain's own
jobs (ingestion, bronze, silver), which register every table in the lake's DuckDB
catalog as they write it. Each query then runs through
``lake sql --schema tpcds -f <file> --format parquet -o <file>`` (the command as the
CLI builds it, in-process; Parquet keeps every type exact), so its unqualified
names resolve to silver's views.

The reference is DuckDB on the generator's own tables, standardised as the
contract's §3 standardises silver: every string trimmed of whitespace and ``''``
made NULL. DuckDB's tables hold ``''`` for absent strings (``c_login`` in 968 of
1000 rows, ``t_meal_time`` outside meal times: no query reads either) and values
with trailing spaces (``i_item_desc``, ``s_street_name``, ``ca_street_name``,
``cp_description``...), which q12, q17, q20, q50, q72, q81 and q98 return: without
the standardisation those seven differ by exactly those spaces. Nothing else is
changed, and nothing else differs: silver's integers are INTEGER where DuckDB's
tables say BIGINT (and ``c_last_review_date_sk`` BIGINT where DuckDB says
INTEGER), and silver adds columns (a fact's date, ``_source_file``,
``load_timestamp``, the month key) no query names. Compared: column names and
order, types (integer widths aside; decimals with their precision and scale) and
rows as a multiset, decimals, integers, strings and dates exactly, doubles to a
relative 1e-9. The answers do not depend on row order or DuckDB's threads, so the
ORDER BY ... LIMIT queries pick the same rows on both sides. At SF 0.01, 31
queries answer no row (or one of NULLs) on both sides: for them the test shows
they bind and run over silver, not more.
"""
from __future__ import annotations

import argparse
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake_assets.catalog.duckdb import DuckDBCatalog
from lake_assets.catalog.sql import add_sql_command
from lake_assets.catalog.tables import NULL_PARTITION
from lake_assets.domains.tpcds.spec import TABLES

SCALE = 0.01
QUERIES = range(1, 100)
#: What silver's standardisation strips (``silver.WHITESPACE``), spelled for DuckDB's ``trim``.
WHITESPACE_SQL = "' ' || chr(9) || chr(10) || chr(13) || chr(12) || chr(11)"


@pytest.fixture(scope="session")
def tpcds_silver_lake(tpcds_lake):
    """The session's tpcds lake (built through the domain's own jobs, broken lines and unreadable files
    included: each quarantined, so silver holds exactly the generator's tables) with its catalog:
    ``(storage, catalog path, partitions registered per silver table)``."""
    registered = {t.qualified_name: len(t.partitions) for t in DuckDBCatalog(tpcds_lake["catalog_path"]).list_tables()
                  if t.qualified_name.split(".", 1)[1] in TABLES}
    return tpcds_lake["storage"], tpcds_lake["catalog_path"], registered


@pytest.fixture(scope="module")
def reference():
    """DuckDB on the generator's own SF 0.01 tables, strings standardised as silver's (trimmed, '' -> NULL)."""
    from lake_assets.domains.tpcds.generator import connect_tpcds

    con = connect_tpcds()
    con.execute(f"CALL dsdgen(sf={SCALE})")
    for name in TABLES:
        strings = [c for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND data_type = 'VARCHAR'",
            [name]).fetchall()]
        if strings:
            replace = ", ".join(f"nullif(trim({c}, {WHITESPACE_SQL}), '') AS {c}" for c in strings)
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * REPLACE ({replace}) FROM {name}")
    queries = dict(con.execute("SELECT query_nr, query FROM tpcds_queries()").fetchall())
    yield con, queries
    con.close()


def lake_sql(*argv: str) -> int:
    """``lake sql ...`` through a parser built as the CLI builds it (as lake_assets_tests/catalog/test_sql.py)."""
    parser = argparse.ArgumentParser(prog="lake")
    parser.add_argument("--lake")
    add_sql_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def on_silver(tpcds_silver_lake, catalog_path, monkeypatch):
    """LAKE_ROOT and LAKE_CATALOG_PATH pointing at the module's lake and catalog (as a user's shell would)."""
    storage, path, _ = tpcds_silver_lake
    monkeypatch.setenv("LAKE_ROOT", storage.root_uri)
    monkeypatch.setenv("LAKE_CATALOG_PATH", path)
    return storage


def _close(a, b) -> bool:
    """Cells equal: doubles to a relative 1e-9, everything else (decimals, integers, strings, dates) exactly."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return type(a) is type(b) and a == b


def _same_row(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(map(_close, a, b))


def _key(row: tuple) -> tuple:
    """A sort key putting equal rows together: NULL first, doubles rounded so near-equal ones sort alike."""
    return tuple((0, "") if v is None else (1, repr(round(v, 6)) if isinstance(v, float) else repr(v))
                 for v in row)


def _type(t: pa.DataType) -> str:
    """A column's type as compared: integers are one kind (silver's ``integer`` columns are INTEGER, as the
    contract says; DuckDB's generator makes them BIGINT); decimals keep precision and scale."""
    return "integer" if pa.types.is_integer(t) else str(t)


def assert_same_rows(got: pa.Table, expected: pa.Table) -> None:
    """The same columns (names, order, types but integer widths) and the same rows as a multiset."""
    assert got.column_names == expected.column_names
    assert [_type(t) for t in got.schema.types] == [_type(t) for t in expected.schema.types]
    ours = sorted((tuple(r.values()) for r in got.to_pylist()), key=_key)
    theirs = sorted((tuple(r.values()) for r in expected.to_pylist()), key=_key)
    assert len(ours) == len(theirs), f"{len(ours)} rows, DuckDB gives {len(theirs)}"
    if all(map(_same_row, ours, theirs)):
        return
    # Near-equal doubles may sort apart: match row by row before calling it a difference.
    left = list(theirs)
    unmatched = []
    for row in ours:
        found = next((i for i, other in enumerate(left) if _same_row(row, other)), None)
        if found is None:
            unmatched.append(row)
        else:
            left.pop(found)
    assert not unmatched, (f"{len(unmatched)} rows differ; lake: {unmatched[:3]}; DuckDB: {left[:3]}")


def test_every_silver_table_is_registered_and_read_whole(tpcds_silver_lake, reference, on_silver, tmp_path):
    """All 24 tables in the catalog, each with the generator's rows (every broken line quarantined, nothing
    else), facts in monthly
    partitions plus Hive's NULL partition where a date key is NULL; counted through ``lake sql``'s views."""
    _, path, partitions = tpcds_silver_lake
    con, _ = reference
    assert set(partitions) == {f"tpcds.{n}" for n in TABLES}
    assert all(partitions[f"tpcds.{n}"] == 1 for n, spec in TABLES.items() if not spec.dating)
    registered = {t.qualified_name: t for t in DuckDBCatalog(path).list_tables() if t.qualified_name.startswith("tpcds.")}
    assert {f"tpcds.{n}" for n in TABLES} <= set(registered)  # (with bronze, quarantine and gold)
    expected = {n: con.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in TABLES}
    assert {n: registered[f"tpcds.{n}"].rows for n in TABLES} == expected
    for name, spec in TABLES.items():
        if spec.dating:
            key = spec.dating.key
            months, nulls = con.execute(
                f"SELECT count(DISTINCT strftime(d_date, '%Y-%m')), count(*) FILTER (WHERE {key} IS NULL) "
                f"FROM {name} LEFT JOIN date_dim ON {key} = d_date_sk").fetchone()
            parts = registered[f"tpcds.{name}"].partitions
            assert len(parts) == months + (nulls > 0), name
            assert (f"{spec.dating.partition}={NULL_PARTITION}" in parts) == (nulls > 0), name
    counts = " UNION ALL ".join(f"SELECT '{n}' AS t, count(*) AS n FROM {n}" for n in TABLES)
    out = tmp_path / "counts.parquet"
    assert lake_sql("sql", "--schema", "tpcds", "--format", "parquet", "-o", str(out), counts) == 0
    assert {r["t"]: r["n"] for r in pq.read_table(out).to_pylist()} == expected


@pytest.mark.parametrize("nr", QUERIES, ids=[f"q{n:02d}" for n in QUERIES])
def test_query_gives_duckdbs_answer(nr, on_silver, reference, tmp_path):
    con, queries = reference
    sql = queries[nr]
    query_file, out = tmp_path / f"q{nr:02d}.sql", tmp_path / f"q{nr:02d}.parquet"
    query_file.write_text(sql)
    assert lake_sql("sql", "--schema", "tpcds", "-f", str(query_file), "--format", "parquet", "-o", str(out)) == 0
    assert_same_rows(pq.read_table(out), con.execute(sql).fetch_arrow_table())
