"""The embedded DuckDB catalog: views over real Parquet files written with pyarrow, answers
checked against pyarrow reading the same files."""
from __future__ import annotations

import datetime as dt
import decimal
import os
import subprocess
import sys
import time

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyspark.sql import types as T

from lake_assets.catalog.base import partition_entry, scan_partitions
from lake_assets.catalog.duckdb import DuckDBCatalog, duckdb_type
from lake_assets.catalog.sql import CatalogMissing, connect
from lake_assets.catalog.tables import NULL_PARTITION, Table

ACTIVITY = T.StructType([
    T.StructField("date", T.DateType()), T.StructField("service", T.StringType()),
    T.StructField("requests", T.LongType()), T.StructField("p95_ms", T.DoubleType()),
    T.StructField("first_ts", T.TimestampType()), T.StructField("revenue", T.DecimalType(12, 2)),
    T.StructField("tags", T.ArrayType(T.StringType())),
])
ARROW_ACTIVITY = pa.schema([
    ("date", pa.date32()), ("service", pa.string()), ("requests", pa.int64()), ("p95_ms", pa.float64()),
    ("first_ts", pa.timestamp("us", tz="UTC")), ("revenue", pa.decimal128(12, 2)), ("tags", pa.list_(pa.string())),
])
DAYS = [dt.date(2024, 3, d) for d in (1, 2, 3, 4)]


def activity_table(schema: T.StructType = ACTIVITY) -> Table:
    return Table("logs", "daily_activity", "analytics", "analytics/daily_activity", schema,
                 "Gold: one row per (date, service).", asset="daily_activity", partitioning="date")


def activity_rows(day: dt.date, n: int = 3) -> pa.Table:
    k = day.day
    return pa.table({
        "date": [day] * n, "service": [f"svc{i}" for i in range(n)],
        "requests": [k * 100 + i for i in range(n)], "p95_ms": [k + i / 4 for i in range(n)],
        "first_ts": [dt.datetime(day.year, day.month, day.day, 1, i, tzinfo=dt.timezone.utc) for i in range(n)],
        "revenue": [decimal.Decimal(f"{k}.{i:02d}") for i in range(n)], "tags": [["a"] * i for i in range(n)],
    }, schema=ARROW_ACTIVITY)


def write(storage, table: Table, path: str, data: pa.Table, name: str | None = None) -> str:
    rel = table.file_path(path) if name is None else "/".join(p for p in (table.location, path, name) if p)
    with storage.open_write(rel) as f:
        pq.write_table(data, f)
    return rel


def write_days(storage, table: Table, days=DAYS) -> None:
    for day in days:
        write(storage, table, table.partition_path([day.isoformat()]), activity_rows(day))


def query(catalog_path: str, sql: str, root: str | None = None) -> list[tuple]:
    con = connect(catalog_path, storage_root=root)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def arrow_rows(storage, table: Table) -> pa.Table:
    """What pyarrow reads from the registered files (the reference answer)."""
    parts = [pq.read_table(storage.open_random(f)) for e in scan_partitions(storage, table) for f in e.files]
    return pa.concat_tables(parts) if parts else ARROW_ACTIVITY.empty_table()


@pytest.fixture
def catalog(catalog_path) -> DuckDBCatalog:
    return DuckDBCatalog(catalog_path)


def test_register_creates_schema_and_typed_view_with_keys_last(local_lake, catalog, catalog_path):
    table = activity_table()
    write_days(local_lake, table)
    catalog.register_table(local_lake, table)
    catalog.replace_partitions(local_lake, table, scan_partitions(local_lake, table))

    described = query(catalog_path, "DESCRIBE logs.daily_activity")
    assert [(r[0], r[1]) for r in described] == [
        ("service", "VARCHAR"), ("requests", "BIGINT"), ("p95_ms", "DOUBLE"),
        ("first_ts", "TIMESTAMP WITH TIME ZONE"), ("revenue", "DECIMAL(12,2)"), ("tags", "VARCHAR[]"),
        ("date", "DATE"),  # in the files and in the path: once, as the partition key
    ]
    expected = arrow_rows(local_lake, table).sort_by([("date", "ascending"), ("service", "ascending")])
    got = query(catalog_path, "SELECT date, service, requests, p95_ms, first_ts, revenue, tags "
                              "FROM logs.daily_activity ORDER BY date, service")
    assert got == [tuple(r.values()) for r in expected.to_pylist()]

    row = query(catalog_path, "SELECT domain, name, zone, location, partition_keys, columns, asset "
                              "FROM lake_catalog.tables")
    assert row == [("logs", "daily_activity", "analytics", local_lake.uri(table.location),
                    [{"name": "date", "type": "date"}],
                    [{"name": f.name, "type": f.dataType.simpleString()} for f in table.columns],
                    "daily_activity")]
    parts = query(catalog_path, "SELECT partition_path, partition_values, files, rows FROM lake_catalog.partitions "
                                "ORDER BY 1")
    assert parts[0] == (f"date={DAYS[0]}", [str(DAYS[0])],
                        [local_lake.uri(table.file_path(f"date={DAYS[0]}"))], 3)


def test_the_partition_key_comes_from_the_path(local_lake, catalog, catalog_path):
    """A ``date`` written in the files that disagrees with the folder: the folder wins (as in Athena)."""
    table = activity_table()
    wrong = activity_rows(DAYS[0]).set_column(0, "date", pa.array([dt.date(1999, 1, 1)] * 3))
    write(local_lake, table, f"date={DAYS[1]}", wrong)
    catalog.register_table(local_lake, table)
    catalog.add_partitions(local_lake, table, [partition_entry(local_lake, table, f"date={DAYS[1]}", 3)])
    assert query(catalog_path, "SELECT DISTINCT date FROM logs.daily_activity") == [(DAYS[1],)]


def test_a_table_with_no_partition_is_an_empty_typed_view(local_lake, catalog, catalog_path):
    table = activity_table()
    catalog.register_table(local_lake, table)
    assert query(catalog_path, "SELECT count(*) FROM logs.daily_activity") == [(0,)]
    types = [(r[0], r[1]) for r in query(catalog_path, "DESCRIBE logs.daily_activity")]
    assert types[0] == ("service", "VARCHAR") and types[3] == ("first_ts", "TIMESTAMP WITH TIME ZONE")
    assert types[-1] == ("date", "DATE")
    # ... and the same types once files are there (an empty view and a full one answer alike).
    write_days(local_lake, table, DAYS[:1])
    catalog.replace_partitions(local_lake, table, scan_partitions(local_lake, table))
    assert [(r[0], r[1]) for r in query(catalog_path, "DESCRIBE logs.daily_activity")] == types


def test_add_remove_replace_partitions_change_the_answers(local_lake, catalog, catalog_path):
    table = activity_table()
    write_days(local_lake, table)
    catalog.register_table(local_lake, table)
    entries = {e.path: e for e in scan_partitions(local_lake, table)}
    total = "SELECT count(*), sum(requests) FROM logs.daily_activity"

    def expected(days):
        data = pa.concat_tables([activity_rows(d) for d in days])
        return [(data.num_rows, pc.sum(data["requests"]).as_py())]

    catalog.add_partitions(local_lake, table, [entries[f"date={DAYS[0]}"], entries[f"date={DAYS[1]}"]])
    assert query(catalog_path, total) == expected(DAYS[:2])
    catalog.add_partitions(local_lake, table, [entries[f"date={DAYS[2]}"]])
    assert query(catalog_path, total) == expected(DAYS[:3])
    catalog.remove_partitions(local_lake, table, [f"date={DAYS[0]}", "date=2000-01-01"])  # absent: ignored
    assert query(catalog_path, total) == expected(DAYS[1:3])
    catalog.replace_partitions(local_lake, table, [entries[f"date={DAYS[3]}"]])
    assert query(catalog_path, total) == expected(DAYS[3:])
    assert list(catalog.describe(table).partitions) == [f"date={DAYS[3]}"]
    catalog.remove_partitions(local_lake, table, [f"date={DAYS[3]}"])
    assert query(catalog_path, total) == [(0, None)]


def test_registering_twice_changes_nothing(local_lake, catalog, catalog_path):
    table = activity_table()
    write_days(local_lake, table)
    entries = scan_partitions(local_lake, table)
    catalog.register_table(local_lake, table)
    catalog.add_partitions(local_lake, table, entries)
    state = "SELECT (SELECT list(updated_at) FROM lake_catalog.tables), " \
            "(SELECT list(registered_at ORDER BY partition_path) FROM lake_catalog.partitions), " \
            "(SELECT sql FROM duckdb_views() WHERE view_name = 'daily_activity')"
    before = query(catalog_path, state)
    catalog.register_table(local_lake, table)
    catalog.add_partitions(local_lake, table, entries)
    catalog.replace_partitions(local_lake, table, entries)
    assert query(catalog_path, state) == before


def test_an_added_column_reads_null_from_old_files(local_lake, catalog, catalog_path):
    table = activity_table()
    write_days(local_lake, table, DAYS[:2])
    catalog.register_table(local_lake, table)
    catalog.add_partitions(local_lake, table, scan_partitions(local_lake, table))

    wider = activity_table(T.StructType([*ACTIVITY.fields, T.StructField("country", T.StringType())]))
    catalog.register_table(local_lake, wider)
    assert query(catalog_path, "SELECT count(*), count(country) FROM logs.daily_activity") == [(6, 0)]
    assert [r[0] for r in query(catalog_path, "DESCRIBE logs.daily_activity")][-2:] == ["country", "date"]
    # A new partition written with the column: both kinds of files in one view.
    new = activity_rows(DAYS[2]).append_column("country", pa.array(["FR", "DE", None]))
    write(local_lake, wider, f"date={DAYS[2]}", new)
    catalog.add_partitions(local_lake, wider, [partition_entry(local_lake, wider, f"date={DAYS[2]}", 3)])
    assert query(catalog_path, "SELECT date, list(country ORDER BY service) FROM logs.daily_activity "
                               "GROUP BY date ORDER BY date") == [
        (DAYS[0], [None] * 3), (DAYS[1], [None] * 3), (DAYS[2], ["FR", "DE", None])]
    assert [c for c, _ in catalog.describe(wider).columns][-1] == "country"


def test_describe(local_lake, catalog):
    table = activity_table()
    assert catalog.describe(table) is None
    assert not os.path.exists(catalog.path)  # reading never creates the file
    write_days(local_lake, table, DAYS[:2])
    catalog.register_table(local_lake, table)
    catalog.add_partitions(local_lake, table, scan_partitions(local_lake, table))
    got = catalog.describe(table)
    assert got.qualified_name == "logs.daily_activity"
    assert got.location == local_lake.uri("analytics/daily_activity")
    assert got.columns == [(f.name, f.dataType.simpleString()) for f in ACTIVITY.fields if f.name != "date"]
    assert got.partition_keys == [("date", "date")]
    assert got.partitions == {f"date={DAYS[0]}": 3, f"date={DAYS[1]}": 3} and got.rows == 6
    assert got.description == table.description


def test_explain_shows_partition_pruning(local_lake, catalog, catalog_path):
    table = activity_table()
    write_days(local_lake, table)
    catalog.register_table(local_lake, table)
    catalog.replace_partitions(local_lake, table, scan_partitions(local_lake, table))
    plan = query(catalog_path, f"EXPLAIN SELECT sum(requests) FROM logs.daily_activity WHERE date = '{DAYS[2]}'")
    assert "Scanning Files: 1/4" in plan[0][1]
    assert query(catalog_path, f"SELECT sum(requests) FROM logs.daily_activity WHERE date = '{DAYS[2]}'") == [
        (pc.sum(activity_rows(DAYS[2])["requests"]).as_py(),)]


def test_int_keys_under_a_location_that_holds_key_value_folders(local_lake, catalog, catalog_path):
    """logs' access table: ``processed/logs/log_type=access/year=/month=/day=`` (the location's own
    ``log_type=`` is no partition key); int keys typed INTEGER, pruning on them."""
    schema = T.StructType([T.StructField("request_id", T.StringType()), T.StructField("status", T.IntegerType())])
    table = Table("logs", "access", "processed", "processed/logs/log_type=access", schema, "access",
                  asset="processed_logs")
    other = Table("logs", "errors", "processed", "processed/logs/log_type=error", schema, "errors",
                  asset="processed_logs")
    for day in DAYS[:3]:
        path = table.partition_path([f"{day.year}", f"{day.month:02d}", f"{day.day:02d}"])
        write(local_lake, table, path, pa.table({"request_id": [f"r{day.day}"], "status": pa.array([200], pa.int32())}))
        write(local_lake, other, path, pa.table({"request_id": ["e"], "status": pa.array([500], pa.int32())}))
    catalog.register_table(local_lake, table)
    catalog.replace_partitions(local_lake, table, scan_partitions(local_lake, table))
    assert [(r[0], r[1]) for r in query(catalog_path, "DESCRIBE logs.access")] == [
        ("request_id", "VARCHAR"), ("status", "INTEGER"), ("year", "INTEGER"), ("month", "INTEGER"),
        ("day", "INTEGER")]
    assert query(catalog_path, "SELECT request_id, year, month, day FROM logs.access ORDER BY day") == [
        (f"r{d.day}", 2024, 3, d.day) for d in DAYS[:3]]
    assert "Scanning Files: 1/3" in query(catalog_path, "EXPLAIN SELECT * FROM logs.access WHERE day = 2")[0][1]


def test_null_and_escaped_partition_values(local_lake, catalog, catalog_path):
    """Spark writes a NULL key as ``__HIVE_DEFAULT_PARTITION__`` (DuckDB's hive reader cannot type it)
    and escapes ``:`` in values."""
    schema = T.StructType([T.StructField("id", T.LongType())])
    by_date = Table("shop", "orders", "silver", "silver/orders", schema, "orders", asset="orders",
                    partitioning="order_date:date", file_stem=None)
    write(local_lake, by_date, "order_date=2024-03-01", pa.table({"id": [1, 2]}), "part-0.parquet")
    write(local_lake, by_date, f"order_date={NULL_PARTITION}", pa.table({"id": [3]}), "part-0.parquet")
    catalog.register_table(local_lake, by_date)
    catalog.replace_partitions(local_lake, by_date, scan_partitions(local_lake, by_date))
    assert query(catalog_path, "SELECT id, order_date FROM shop.orders ORDER BY id") == [
        (1, dt.date(2024, 3, 1)), (2, dt.date(2024, 3, 1)), (3, None)]

    by_ts = Table("shop", "extracts", "silver", "silver/extracts", schema, "extracts", asset="orders",
                  partitioning="extracted_at:string", file_stem=None)
    write(local_lake, by_ts, "extracted_at=2024-03-01T10%3A00%3A00", pa.table({"id": [1]}), "p.parquet")
    write(local_lake, by_ts, f"extracted_at={NULL_PARTITION}", pa.table({"id": [2]}), "p.parquet")
    catalog.register_table(local_lake, by_ts)
    catalog.replace_partitions(local_lake, by_ts, scan_partitions(local_lake, by_ts))
    assert query(catalog_path, "SELECT id, extracted_at FROM shop.extracts ORDER BY id") == [
        (1, "2024-03-01T10:00:00"), (2, None)]


def test_unpartitioned_table(local_lake, catalog, catalog_path):
    schema = T.StructType([T.StructField("code", T.StringType()), T.StructField("region", T.StringType())])
    table = Table("shop", "dim_country", "gold", "gold/dim/dim_country", schema, "countries",
                  asset="dim_country", partitioning=None)
    write(local_lake, table, "", pa.table({"code": ["FR", "DE"], "region": ["Europe", "Europe"]}))
    catalog.register_table(local_lake, table)
    catalog.replace_partitions(local_lake, table, scan_partitions(local_lake, table))
    assert query(catalog_path, "SELECT * FROM shop.dim_country ORDER BY code") == [("DE", "Europe"), ("FR", "Europe")]
    assert catalog.describe(table).partitions == {"": 2}


def test_partitions_need_a_registered_table(local_lake, catalog):
    table = activity_table()
    write_days(local_lake, table, DAYS[:1])
    with pytest.raises(KeyError, match="register_table first"):
        catalog.add_partitions(local_lake, table, scan_partitions(local_lake, table))


def test_writes_wait_for_a_lock_held_by_another_process(local_lake, catalog, catalog_path):
    table = activity_table()
    catalog.register_table(local_lake, table)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time\n"
        f"con = duckdb.connect({catalog_path!r})\n"
        "print('locked', flush=True)\n"
        "time.sleep(float(sys.argv[1]))\n"
        "con.close()\n"), "1.5"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(duckdb.IOException, match="lock"):
        DuckDBCatalog(catalog_path, lock_timeout=0.2).register_table(local_lake, activity_table(
            T.StructType([*ACTIVITY.fields, T.StructField("x", T.StringType())])))
    t0 = time.monotonic()
    write_days(local_lake, table, DAYS[:1])
    catalog.add_partitions(local_lake, table, scan_partitions(local_lake, table))  # waits for the holder
    assert time.monotonic() - t0 > 0.5
    holder.wait(timeout=10)
    assert query(catalog_path, "SELECT count(*) FROM logs.daily_activity") == [(3,)]


def test_no_catalog_yet_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogMissing, match=r"no catalog at .*: run `lake run` or `lake catalog sync`"):
        connect(str(tmp_path / "none.duckdb"))


def test_views_over_a_lake_on_s3(s3_lake, catalog, catalog_path):
    table = activity_table()
    write_days(s3_lake, table)
    catalog.register_table(s3_lake, table)
    catalog.replace_partitions(s3_lake, table, scan_partitions(s3_lake, table))
    assert catalog.describe(table).location == f"{s3_lake.root_uri}/analytics/daily_activity"
    expected = arrow_rows(s3_lake, table).group_by("date").aggregate([("requests", "sum")]).sort_by("date")
    got = query(catalog_path, "SELECT date, sum(requests) FROM logs.daily_activity GROUP BY date ORDER BY date",
                root=s3_lake.root_uri)
    assert got == list(zip(expected["date"].to_pylist(), expected["requests_sum"].to_pylist()))
    plan = query(catalog_path, f"EXPLAIN SELECT * FROM logs.daily_activity WHERE date = '{DAYS[0]}'")
    assert "Scanning Files: 1/4" in plan[0][1]


@pytest.mark.parametrize("hive, duck", [
    ("string", "VARCHAR"), ("int", "INTEGER"), ("bigint", "BIGINT"), ("double", "DOUBLE"), ("float", "FLOAT"),
    ("boolean", "BOOLEAN"), ("date", "DATE"), ("timestamp", "TIMESTAMP WITH TIME ZONE"),
    ("timestamp_ntz", "TIMESTAMP"), ("decimal(38,2)", "DECIMAL(38,2)"), ("binary", "BLOB"),
    ("smallint", "SMALLINT"), ("tinyint", "TINYINT"), ("array<string>", "VARCHAR[]"),
    ("array<array<int>>", "INTEGER[][]"), ("map<string,bigint>", "MAP(VARCHAR, BIGINT)"),
    ("struct<a:int,b:array<decimal(10,2)>>", 'STRUCT("a" INTEGER, "b" DECIMAL(10,2)[])'),
])
def test_hive_types_map_to_duckdb(hive, duck):
    assert duckdb_type(hive) == duck
    duckdb.sql(f"SELECT CAST(NULL AS {duck})").fetchall()  # DuckDB parses it


def test_every_spark_type_a_table_can_declare_is_mapped():
    for t in (T.StringType(), T.IntegerType(), T.LongType(), T.ShortType(), T.ByteType(), T.FloatType(),
              T.DoubleType(), T.BooleanType(), T.BinaryType(), T.DateType(), T.TimestampType(),
              T.TimestampNTZType(), T.DecimalType(38, 2), T.ArrayType(T.StringType()),
              T.MapType(T.StringType(), T.LongType()),
              T.StructType([T.StructField("x", T.IntegerType())])):
        duckdb_type(t.simpleString())
