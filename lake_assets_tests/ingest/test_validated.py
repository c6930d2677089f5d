"""read_validated_text: what the processed stages read, and how Spark splits it into tasks."""
from __future__ import annotations

import datetime as dt
import gzip
import json

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
