"""read_validated_text: what the processed stages read, and how Spark splits it into tasks."""
from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest
from pyspark.sql import functions as F

from lake_assets.domains.logs import contract
from lake_assets.ingest.formats import JSON_GZIP, NDJSON
from lake_assets.ingest.router import ingest_file
from lake_assets.ingest.validated import read_validated_text, validated_files

UTC = dt.timezone.utc
DAY = dt.date(2024, 3, 9)
NOW = dt.datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


def _record(i: int) -> dict:
    return {"timestamp": f"2024-03-09T10:00:{i % 60:02d}Z", "service": "web", "request_id": f"r{i}",
            "method": "GET", "path": "/", "status": 200}


def _land(storage, lake_root, name: str, fmt, records: list[dict]) -> None:
    body = "".join(json.dumps(r) + "\n" for r in records).encode()
    data = gzip.compress(body) if fmt is JSON_GZIP else body
    storage.write_bytes(f"raw/{fmt.name}/{name}{fmt.extension}", data)
    result = ingest_file(storage, f"raw/{fmt.name}/{name}{fmt.extension}", fmt,
                         lambda r, ts: contract.routing_date(r, ts, dt.date(2024, 1, 1)),
                         run_id=f"run-{name}", now=NOW)
    assert result.status == "ingested", result


@pytest.fixture(params=["literal", "joined"], autouse=True)
def lineage_by(request, monkeypatch):
    """Lineage two ways: as literals in the plan (a few files) and joined by broadcast (many files)."""
    if request.param == "joined":
        monkeypatch.setattr("lake_assets.ingest.validated.LITERAL_LINEAGE_FILES", 0)
    return request.param


def test_gzip_and_plain_files_are_read_by_separate_scans_with_their_lineage(spark, local_lake, lake_root):
    """A gzip file holds many times the records its size says: packed into the same Spark task as
    plain files, it left one core working while the others idled. Each task now reads one kind."""
    for i in range(3):
        _land(local_lake, lake_root, f"plain{i}", NDJSON, [_record(100 * i + j) for j in range(40)])
        _land(local_lake, lake_root, f"packed{i}", JSON_GZIP, [_record(1000 + 100 * i + j) for j in range(60)])
    files = validated_files(local_lake, [DAY], (NDJSON, JSON_GZIP))
    assert len(files) == 6
    text = read_validated_text(spark, local_lake, files)

    rows = text.groupBy("source_format", "source_file", "ingest_run_id", "routed_date").count()
    got = {(r.source_format, r.source_file, r.ingest_run_id, r.routed_date, r["count"]) for r in rows.collect()}
    expected = {("ndjson", f"raw/ndjson/plain{i}.ndjson", f"run-plain{i}", DAY, 40) for i in range(3)}
    expected |= {("json_gzip", f"raw/json_gzip/packed{i}.json.gz", f"run-packed{i}", DAY, 60) for i in range(3)}
    assert got == expected
    # Splits as large as the whole input: one scan would pack all six files into one task.
    packing = {"spark.sql.files.minPartitionNum": "1", "spark.sql.files.openCostInBytes": "1"}
    before = {k: spark.conf.get(k, None) for k in packing}
    try:
        for k, v in packing.items():
            spark.conf.set(k, v)
        kinds_per_task = text.groupBy(F.spark_partition_id().alias("task")) \
            .agg(F.collect_set("source_format").alias("kinds")).collect()
    finally:
        for k, v in before.items():
            spark.conf.unset(k) if v is None else spark.conf.set(k, v)
    assert sorted(r.kinds for r in kinds_per_task) == [["json_gzip"], ["ndjson"]]
    # Every record's text arrives whole.
    assert text.where(F.col("record").startswith('{"timestamp"')).count() == 300


def test_converted_parquet_files_are_read_with_position_and_lineage(spark, local_lake):
    """A converted format's validated ``.parquet`` files (record, position) read beside numbered text files,
    each joined with its manifest's lineage on the same ``<format>/year=/month=/day=/<hash><ext>`` key."""
    from lake_assets.ingest.lines import dsdgen_format, no_date
    from lake_assets.ingest.router import Zones
    from lake_assets.ingest.tabular import tabular_format
    from lake_assets.ingest.validated import NUMBERED_INPUT_SCHEMA, TEXT_INPUT_SCHEMA

    zones = Zones(raw="raw/tpcds", validated="bronze/tpcds/_lines/{format}", archive="archive/tpcds/{format}",
                  rejected_files="quarantine/tpcds/_files", manifests="bronze/tpcds/_manifests/{format}")
    sales, items, other = dsdgen_format("store_sales"), dsdgen_format("item"), tabular_format("orders")
    landed = [
        (sales, "raw/tpcds/store_sales/store_sales_1_2.dat", b"1|a|\n\n2|b|\r\n", "run-1"),
        (sales, "raw/tpcds/store_sales/store_sales_2_2.dat.gz", gzip.compress(b"3|c|\n4|d|"), "run-2"),
        (items, "raw/tpcds/item/item.dat", b"1|x|\n", "run-1"),
        (other, "raw/tpcds/orders/o.csv", b"id,ts\n7,2024-03-10T00:00:00Z\n", "run-1"),
    ]
    for fmt, src, data, run in landed:
        local_lake.write_bytes(src, data)
        result = ingest_file(local_lake, src, fmt, lambda r, ts: no_date(r, ts), run_id=run, zones=zones, now=NOW)
        assert result.status == "ingested", result
    files = validated_files(local_lake, [NOW.date()], (sales, items, other), zones)
    # A converted file's records are not undated (no date was looked for); a routed one's without a date are.
    assert sorted((f.format, f.records, f.undated) for f in files) == [
        ("item", 1, 0), ("orders", 1, 1), ("store_sales", 2, 0), ("store_sales", 3, 0)]

    numbered = read_validated_text(spark, local_lake, files, numbered=True)
    assert sorted(numbered.columns) == sorted(NUMBERED_INPUT_SCHEMA.fieldNames())
    got = sorted((r.source_format, r.source_file, r.ingest_run_id, r.routed_date, r.position, r.record,
                  r.ingest_ts) for r in numbered.collect())
    ts = NOW.replace(tzinfo=None)  # Spark's local (UTC in tests) wall time
    assert [g[:6] for g in got] == [
        ("item", "raw/tpcds/item/item.dat", "run-1", NOW.date(), 0, "1|x|"),
        ("orders", "raw/tpcds/orders/o.csv", "run-1", NOW.date(), 0, '{"id":"7","ts":"2024-03-10T00:00:00Z"}'),
        ("store_sales", "raw/tpcds/store_sales/store_sales_1_2.dat", "run-1", NOW.date(), 0, "1|a|"),
        ("store_sales", "raw/tpcds/store_sales/store_sales_1_2.dat", "run-1", NOW.date(), 1, ""),
        ("store_sales", "raw/tpcds/store_sales/store_sales_1_2.dat", "run-1", NOW.date(), 2, "2|b|"),
        ("store_sales", "raw/tpcds/store_sales/store_sales_2_2.dat.gz", "run-2", NOW.date(), 0, "3|c|"),
        ("store_sales", "raw/tpcds/store_sales/store_sales_2_2.dat.gz", "run-2", NOW.date(), 1, "4|d|"),
    ]
    assert {g[6] for g in got} == {ts}

    plain = read_validated_text(spark, local_lake, [f for f in files if f.format != "orders"])
    assert sorted(plain.columns) == sorted(TEXT_INPUT_SCHEMA.fieldNames())
    assert sorted(r.record for r in plain.collect()) == ["", "1|a|", "1|x|", "2|b|", "3|c|", "4|d|"]
