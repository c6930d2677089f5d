"""``lake sql`` and :class:`LakeSQLResource` over a catalog of real Parquet files (local and on moto
S3); every answer is compared with pyarrow reading the same files."""
from __future__ import annotations

import argparse
import datetime as dt
import decimal
import io
import json
import os
import subprocess
import sys
import types

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from pyspark.sql import types as T

from lake_assets.catalog.base import scan_partitions
from lake_assets.catalog.duckdb import DuckDBCatalog
from lake_assets.catalog.sql import LakeSQLResource, add_sql_command, write_csv, write_json
from lake_assets.catalog.tables import Table

ACTIVITY = Table("logs", "daily_activity", "analytics", "analytics/daily_activity", T.StructType([
    T.StructField("date", T.DateType()), T.StructField("service", T.StringType()),
    T.StructField("requests", T.LongType()), T.StructField("server_errors", T.LongType()),
    T.StructField("first_ts", T.TimestampType()), T.StructField("revenue", T.DecimalType(12, 2)),
]), "Gold: one row per (date, service).", asset="daily_activity", partitioning="date")
COUNTRY = Table("shop", "dim_country", "gold", "gold/dim/dim_country", T.StructType([
    T.StructField("code", T.StringType()), T.StructField("names", T.ArrayType(T.StringType()))]),
    "ISO countries.", asset="dim_country", partitioning=None)
DAYS = [dt.date(2024, 3, d) for d in (1, 2, 3, 4)]
SERVICES = ["api", "auth", "billing"]


def activity(day: dt.date) -> pa.Table:
    n, k = len(SERVICES), day.day
    return pa.table({
        "date": pa.array([day] * n, pa.date32()), "service": SERVICES,
        "requests": pa.array([k * 1000 + 7 * i for i in range(n)], pa.int64()),
        "server_errors": pa.array([(k + i) % 3 for i in range(n)], pa.int64()),
        "first_ts": pa.array([dt.datetime(2024, 3, k, 0, i, 30, tzinfo=dt.timezone.utc) for i in range(n)],
                             pa.timestamp("us", tz="UTC")),
        "revenue": pa.array([decimal.Decimal(f"{k * 10 + i}.25") for i in range(n)], pa.decimal128(12, 2)),
    })


def build_lake(storage, catalog_path: str) -> None:
    """Write both tables with pyarrow and register them (as a run would)."""
    for day in DAYS:
        with storage.open_write(ACTIVITY.file_path(ACTIVITY.partition_path([day.isoformat()]))) as f:
            pq.write_table(activity(day), f)
    with storage.open_write(COUNTRY.file_path("")) as f:
        pq.write_table(pa.table({"code": ["DE", "FR"], "names": [["Germany", "Deutschland"], ["France"]]}), f)
    catalog = DuckDBCatalog(catalog_path)
    for table in (ACTIVITY, COUNTRY):
        catalog.register_table(storage, table)
        catalog.replace_partitions(storage, table, scan_partitions(storage, table))


def expected_activity(storage) -> pa.Table:
    """pyarrow's reading of the registered files, in the view's column order (data columns, then the
    partition key), sorted by (date, service)."""
    files = [f for e in scan_partitions(storage, ACTIVITY) for f in e.files]
    data = pa.concat_tables([pq.read_table(storage.open_random(f)) for f in files])
    return data.select(["service", "requests", "server_errors", "first_ts", "revenue", "date"]).sort_by(
        [("date", "ascending"), ("service", "ascending")])


@pytest.fixture
def lake(local_lake, catalog_path, monkeypatch):
    monkeypatch.setenv("LAKE_ROOT", local_lake.root_uri)
    build_lake(local_lake, catalog_path)
    return local_lake


def lake_sql(*argv: str) -> int:
    """``lake [--lake ROOT] sql ...`` through a parser built as the CLI builds it."""
    parser = argparse.ArgumentParser(prog="lake")
    parser.add_argument("--lake")
    add_sql_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


ALL = "SELECT * FROM logs.daily_activity ORDER BY date, service"


def test_table_format_prints_aligned_rows(lake, capsys):
    assert lake_sql("sql", "SELECT date, service, requests FROM logs.daily_activity ORDER BY date, service LIMIT 5") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["date", "service", "requests"]
    assert set(lines[1]) <= {"-", "+"}
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule aligned
    expected = expected_activity(lake).slice(0, 5)
    got = [[c.strip() for c in line.split("|")] for line in lines[2:7]]
    assert got == [[str(r["date"]), r["service"], str(r["requests"])] for r in expected.to_pylist()]
    assert lines[2].index("|") == lines[0].index("|")  # columns line up
    assert lines[7] == "(5 rows)"


def test_table_format_caps_the_rows_it_keeps(lake, capsys):
    assert lake_sql("sql", "--max-rows", "2", ALL) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and out[-1].startswith("(first 2 rows shown")


def test_csv_matches_pyarrow(lake, capsys):
    assert lake_sql("sql", "--format", "csv", ALL) == 0
    expected = expected_activity(lake)
    got = pacsv.read_csv(io.BytesIO(capsys.readouterr().out.encode()),
                         convert_options=pacsv.ConvertOptions(column_types=expected.schema))
    assert got.equals(expected)


def test_json_lines_match_pyarrow(lake, capsys):
    assert lake_sql("sql", "--format", "json", ALL) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = [{"date": r["date"].isoformat(), "service": r["service"], "requests": r["requests"],
                 "server_errors": r["server_errors"], "first_ts": r["first_ts"].isoformat(),
                 "revenue": float(r["revenue"])} for r in expected_activity(lake).to_pylist()]
    assert got == expected


def test_parquet_output_matches_pyarrow(lake, tmp_path, capsys):
    out = tmp_path / "result.parquet"
    assert lake_sql("sql", "--format", "parquet", "--output", str(out), ALL) == 0
    assert capsys.readouterr().out == ""
    got = pq.read_table(out)
    assert got.schema.field("first_ts").type == pa.timestamp("us", tz="UTC")
    assert got.to_pylist() == expected_activity(lake).to_pylist()


def test_csv_output_file_and_nested_values(lake, tmp_path):
    out = tmp_path / "countries.csv"
    assert lake_sql("sql", "--format", "csv", "-o", str(out), "SELECT * FROM shop.dim_country ORDER BY code") == 0
    lines = out.read_text().splitlines()
    assert lines[0] == '"code","names"'
    assert [json.loads(pacsv.read_csv(out)["names"][i].as_py()) for i in range(2)] == [
        ["Germany", "Deutschland"], ["France"]]


def test_schema_resolves_unqualified_names(lake, capsys):
    query = "SELECT sum(requests) AS total FROM daily_activity"
    assert lake_sql("sql", "--schema", "logs", "--format", "csv", query) == 0
    assert capsys.readouterr().out.splitlines() == [
        '"total"', str(pc.sum(expected_activity(lake)["requests"]).as_py())]
    assert lake_sql("sql", query) == 2  # not without it
    assert lake_sql("sql", "--schema", "nowhere", query) == 2


def test_unknown_table_lists_the_registered_tables(lake, capsys):
    assert lake_sql("sql", "SELECT * FROM logs.daily_activty") == 2
    err = capsys.readouterr().err
    assert "Table with name daily_activty does not exist" in err
    assert "Registered tables:" in err
    assert "logs.daily_activity" in err and "shop.dim_country" in err and "Gold: one row" in err


def test_syntax_error_prints_duckdb_message(lake, capsys):
    assert lake_sql("sql", "SELEC * FROM logs.daily_activity") == 2
    err = capsys.readouterr().err
    assert "Parser Error" in err and 'syntax error at or near "SELEC"' in err


def test_file_with_several_statements(lake, tmp_path, capsys):
    script = tmp_path / "q.sql"
    script.write_text("SELECT count(*) AS n FROM logs.daily_activity;\n"
                      "SELECT service, sum(server_errors) AS server_errors\n"
                      "FROM logs.daily_activity GROUP BY service ORDER BY server_errors DESC, service;\n")
    assert lake_sql("sql", "-f", str(script)) == 0
    out = capsys.readouterr().out
    expected = expected_activity(lake).group_by("service").aggregate([("server_errors", "sum")])
    expected = expected.sort_by([("server_errors_sum", "descending"), ("service", "ascending")])
    lines = out.splitlines()
    assert [line.strip() for line in lines[:4]] == ["n", "---", str(expected_activity(lake).num_rows), "(1 row)"]
    rows = [[c.strip() for c in line.split("|")] for line in lines[4:] if "|" in line]
    assert rows == [["service", "server_errors"], *([s, str(n)] for s, n in zip(
        expected["service"].to_pylist(), expected["server_errors_sum"].to_pylist()))]
    # csv: only the last statement's rows
    assert lake_sql("sql", "--format", "csv", "-f", str(script)) == 0
    assert capsys.readouterr().out.splitlines()[0] == '"service","server_errors"'


def test_explain_shows_pruning_through_lake_sql(lake, capsys):
    assert lake_sql("sql", f"EXPLAIN SELECT * FROM logs.daily_activity WHERE date = DATE '{DAYS[1]}'") == 0
    assert "Scanning Files: 1/4" in capsys.readouterr().out


def test_no_catalog_yet(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAKE_CATALOG_PATH", str(tmp_path / "nothing" / "catalog.duckdb"))
    assert lake_sql("sql", "SELECT 1") == 1
    assert "no catalog at" in capsys.readouterr().err


def test_interactive_prompt_reads_statements_from_stdin(lake, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(
        ".tables\n"
        "SELECT count(*) AS n\n"
        "  FROM logs.daily_activity;\n"
        "SELECT * FROM nope;\n"
        "USE logs;\n"
        "SELECT max(requests) AS m FROM daily_activity;\n"
        "\\q\n"
        "SELECT 'never' AS x;\n"))
    assert lake_sql("sql", "--format", "csv") == 2  # one statement failed
    captured = capsys.readouterr()
    expected = expected_activity(lake)
    assert captured.out.splitlines() == [
        "Registered tables:",
        "  logs.daily_activity  Gold: one row per (date, service).",
        "  shop.dim_country     ISO countries.",
        '"n"', str(expected.num_rows),
        '"m"', str(pc.max(expected["requests"]).as_py()),
    ]
    assert "Table with name nope does not exist" in captured.err


def test_interactive_prompt_in_a_subprocess(lake, tmp_path):
    main = ("import argparse, sys\n"
            "from lake_assets.catalog.sql import add_sql_command\n"
            "p = argparse.ArgumentParser(prog='lake'); p.add_argument('--lake')\n"
            "add_sql_command(p.add_subparsers(dest='command', required=True))\n"
            "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n")
    proc = subprocess.run(
        [sys.executable, "-c", main, "--lake", lake.root_uri, "sql", "--schema", "logs"],
        input="SELECT service, sum(requests) AS requests\nFROM daily_activity\nGROUP BY service\n"
              "ORDER BY service;\nSELECT count(*) AS n FROM shop.dim_country",  # the last needs no ';'
        capture_output=True, text=True, timeout=120, env={**os.environ}, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    expected = expected_activity(lake).group_by("service").aggregate([("requests", "sum")]).sort_by("service")
    rows = [[c.strip() for c in line.split("|")] for line in proc.stdout.splitlines() if "|" in line]
    assert rows == [["service", "requests"],
                    *[[s, str(n)] for s, n in zip(expected["service"].to_pylist(),
                                                  expected["requests_sum"].to_pylist())]]
    assert [line.strip() for line in proc.stdout.splitlines()[-2:]] == ["2", "(1 row)"]


def test_the_same_queries_on_s3(s3_lake, catalog_path, monkeypatch, capsys, tmp_path):
    build_lake(s3_lake, catalog_path)
    monkeypatch.delenv("LAKE_ROOT", raising=False)
    expected = expected_activity(s3_lake)
    assert lake_sql("--lake", s3_lake.root_uri, "sql", "--format", "csv", ALL) == 0
    got = pacsv.read_csv(io.BytesIO(capsys.readouterr().out.encode()),
                         convert_options=pacsv.ConvertOptions(column_types=expected.schema))
    assert got.equals(expected)
    out = tmp_path / "r.parquet"
    assert lake_sql("sql", "--schema", "logs", "--format", "parquet", "-o", str(out),
                    "SELECT * FROM daily_activity ORDER BY date, service") == 0
    assert pq.read_table(out).to_pylist() == expected.to_pylist()
    assert lake_sql("sql", f"EXPLAIN SELECT * FROM logs.daily_activity WHERE date = DATE '{DAYS[0]}'") == 0
    assert "Scanning Files: 1/4" in capsys.readouterr().out
    assert LakeSQLResource.from_env().query("SELECT count(*) AS n FROM shop.dim_country").to_pylist() == [{"n": 2}]


def test_lake_sql_resource(lake, catalog_path):
    resource = LakeSQLResource(catalog_path=catalog_path, lake_root=lake.root_uri)
    got = resource.query(ALL)
    assert got.to_pylist() == expected_activity(lake).to_pylist()
    assert resource.query("SELECT count(*) AS n FROM daily_activity", schema="logs").to_pylist() == [{"n": 12}]
    batches = list(resource.batches("SELECT * FROM range(200000) t(i)"))
    assert sum(b.num_rows for b in batches) == 200000 and len(batches) > 1
    env = LakeSQLResource.from_env()
    assert (env.engine, env.catalog_path, env.lake_root) == ("duckdb", catalog_path, lake.root_uri)


def test_athena_engine_writes_through_the_same_writers(lake, monkeypatch, capsys):
    calls = []
    schema = pa.schema([("service", pa.string()), ("n", pa.int64())])

    def athena_batches(sql: str, *, database: str | None = None):
        calls.append((sql, database))
        return schema, iter([pa.record_batch([["api"], [3]], schema=schema),
                             pa.record_batch([["auth"], [4]], schema=schema)])

    monkeypatch.setitem(sys.modules, "lake_assets.catalog.athena",
                        types.SimpleNamespace(athena_batches=athena_batches))
    monkeypatch.setenv("LAKE_GLUE_DATABASE_PREFIX", "demo_")
    assert lake_sql("sql", "--engine", "athena", "--schema", "logs", "--format", "json",
                    "SELECT service, count(*) AS n FROM daily_activity GROUP BY 1") == 0
    assert capsys.readouterr().out.splitlines() == ['{"service": "api", "n": 3}', '{"service": "auth", "n": 4}']
    assert calls == [("SELECT service, count(*) AS n FROM daily_activity GROUP BY 1", "demo_logs")]
    assert LakeSQLResource(engine="athena").query("SELECT 1").num_rows == 2
    assert calls[-1] == ("SELECT 1", None)


@pytest.mark.parametrize("writer", [write_csv, write_json])
def test_text_writers_stream_batch_by_batch(writer):
    """Each batch is written before the next one is read: a result never sits in memory whole."""
    out = io.StringIO()
    schema = pa.schema([("i", pa.int64())])
    seen = []

    def batches():
        for k in range(3):
            seen.append(len(out.getvalue()))
            yield pa.record_batch([pa.array(range(k * 10, k * 10 + 10), pa.int64())], schema=schema)

    assert writer(pa.RecordBatchReader.from_batches(schema, batches()), out) == 30
    assert seen[0] == 0 and seen[1] > 0 and seen[2] > seen[1]


def test_an_asset_reads_gold_through_the_resource(lake, catalog_path):
    from dagster import asset, materialize

    @asset
    def busiest_service(sql: LakeSQLResource) -> str:
        rows = sql.query("SELECT service, sum(requests) AS r FROM daily_activity GROUP BY service "
                         "ORDER BY r DESC LIMIT 1", schema="logs")
        return rows["service"][0].as_py()

    result = materialize([busiest_service], resources={"sql": LakeSQLResource.from_env()})
    expected = expected_activity(lake).group_by("service").aggregate([("requests", "sum")])
    assert result.output_for_node("busiest_service") == expected.sort_by(
        [("requests_sum", "descending")])["service"][0].as_py()
