"""``lake sql`` on S3: DuckDB's httpfs extension against DuckDB's fsspec bridge, on moto.

Generates a hive-partitioned Parquet table (``date=YYYY-MM-DD/part-NNNNN.parquet``)
in a moto S3 server running in its own process (so serving requests does not
compete with the measured process for the GIL), registers it in a fresh embedded
catalog (:class:`~lake_assets.catalog.duckdb.DuckDBCatalog`), then times a few
queries over the catalog's view, each on a fresh connection as ``lake sql`` runs
them, three ways:

* ``httpfs``: DuckDB's httpfs extension from the ``duckdb-ext-httpfs`` wheel, an S3 secret
  from the AWS credential chain (what :func:`lake_assets.catalog.sql.connect` uses);
* ``fsspec``: ``con.register_filesystem(ArrowFSWrapper(pyarrow S3FileSystem))``;
* ``pyarrow``: the plain baseline, ``pyarrow.dataset`` over the same prefix (no DuckDB).

It checks the three agree on every answer, then prints each query's median and
minimum over ``--repeat`` interleaved runs and the ratios.

    .venv/bin/python benchmarks/sql_s3.py                       # 40 days x 10 files x 30,000 rows (~405 MB)
    .venv/bin/python benchmarks/sql_s3.py --days 5 --files-per-day 4 --rows-per-file 20000   # smoke
"""
from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SERVER = """
import sys
from moto.server import ThreadedMotoServer
s = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
s.start()
host, port = s.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()
s.stop()
"""

SERVICES = ["api", "auth", "billing", "search", "checkout", "catalog", "profile", "images"]


def start_moto() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    return proc, proc.stdout.readline().strip()


def generate(fs, base: str, start: dt.date, days: int, files_per_day: int, rows: int, seed: int) -> tuple[int, int]:
    """Write the table; returns (files, bytes)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    paths = pa.array([f"/v1/{s}/item/{i}" for s in SERVICES for i in range(125)])
    total = 0
    for d in range(days):
        day = start + dt.timedelta(days=d)
        t0 = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() * 1_000_000)
        for f in range(files_per_day):
            ts = np.sort(rng.integers(t0, t0 + 86_400_000_000, rows))
            table = pa.table({
                "event_ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "user_id": pa.array(rng.integers(0, 1_000_000, rows), pa.int64()),
                "service": pa.array(np.array(SERVICES)[rng.integers(0, len(SERVICES), rows)]),
                "path": paths.take(pa.array(rng.integers(0, len(paths), rows))),
                "status": pa.array(rng.choice([200, 200, 200, 201, 304, 404, 500], rows), pa.int32()),
                "latency_ms": pa.array(rng.gamma(2.0, 40.0, rows)),
                "bytes": pa.array(rng.integers(100, 2_000_000, rows), pa.int64()),
            })
            key = f"{base}/date={day.isoformat()}/part-{f:05d}.parquet"
            pq.write_table(table, key, filesystem=fs)
            total += fs.get_file_info(key).size
    return days * files_per_day, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=40)
    ap.add_argument("--files-per-day", type=int, default=10)
    ap.add_argument("--rows-per-file", type=int, default=30_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", help="also write the samples and summary to this file")
    args = ap.parse_args()

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}.items():
        os.environ[k] = v
    os.environ.pop("AWS_PROFILE", None)
    proc, endpoint = start_moto()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        return run(args, endpoint)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def run(args, endpoint: str) -> int:
    import tempfile

    import boto3
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from pyspark.sql import types as T

    from lake_assets.catalog.base import scan_partitions
    from lake_assets.catalog.duckdb import DuckDBCatalog
    from lake_assets.catalog.sql import connect
    from lake_assets.catalog.tables import Table
    from lake_assets.lake import LakeStorage

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    storage = LakeStorage(f"s3://{bucket}/lake")
    table = Table("bench", "events", "analytics", "analytics/events", T.StructType([
        T.StructField("event_ts", T.TimestampType()), T.StructField("user_id", T.LongType()),
        T.StructField("service", T.StringType()), T.StructField("path", T.StringType()),
        T.StructField("status", T.IntegerType()), T.StructField("latency_ms", T.DoubleType()),
        T.StructField("bytes", T.LongType())]), "benchmark events", asset="bench", partitioning="date",
        file_stem=None)
    start = dt.date(2024, 1, 1)
    t0 = time.perf_counter()
    files, size = generate(storage.fs, f"{bucket}/lake/{table.location}", start, args.days, args.files_per_day,
                           args.rows_per_file, args.seed)
    print(f"generated {files} files, {size / 1e6:.0f} MB, {files * args.rows_per_file:,} rows "
          f"on moto in {time.perf_counter() - t0:.1f}s")
    workdir = tempfile.mkdtemp(prefix="sql-s3-bench-")
    atexit.register(shutil.rmtree, workdir, True)
    catalog_path = os.path.join(workdir, "catalog.duckdb")
    t0 = time.perf_counter()
    catalog = DuckDBCatalog(catalog_path)
    catalog.register_table(storage, table)
    catalog.replace_partitions(storage, table, scan_partitions(storage, table))
    print(f"registered {len(catalog.describe(table).partitions)} partitions in {time.perf_counter() - t0:.1f}s")

    d_lo, d_hi, d_one = (start + dt.timedelta(days=min(n, args.days - 1)) for n in (10, 12, 20))
    user = 4242
    queries = {
        "count(*)": "SELECT count(*) AS n FROM bench.events",
        "full aggregate": "SELECT service, count(*) AS n, round(avg(latency_ms), 6) AS avg_ms FROM bench.events "
                          "GROUP BY service ORDER BY service",
        "pruned aggregate": f"SELECT date, sum(bytes) AS b FROM bench.events WHERE date BETWEEN DATE '{d_lo}' "
                            f"AND DATE '{d_hi}' GROUP BY date ORDER BY date",
        "point lookup": f"SELECT count(*) AS n, sum(bytes) AS b FROM bench.events WHERE date = DATE '{d_one}' "
                        f"AND user_id = {user}",
    }

    def dataset():
        return ds.dataset(f"{bucket}/lake/{table.location}", filesystem=storage.fs, format="parquet",
                          partitioning=ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive"))

    def pyarrow_answer(name: str):
        if name == "count(*)":
            return [(dataset().count_rows(),)]
        if name == "full aggregate":
            t = dataset().to_table(columns=["service", "latency_ms"]).group_by("service").aggregate(
                [("latency_ms", "count"), ("latency_ms", "mean")]).sort_by("service")
            return list(zip(t["service"].to_pylist(), t["latency_ms_count"].to_pylist(),
                            [round(m, 6) for m in t["latency_ms_mean"].to_pylist()]))
        if name == "pruned aggregate":
            f = (pc.field("date") >= d_lo) & (pc.field("date") <= d_hi)
            t = dataset().to_table(columns=["date", "bytes"], filter=f).group_by("date").aggregate(
                [("bytes", "sum")]).sort_by("date")
            return list(zip(t["date"].to_pylist(), t["bytes_sum"].to_pylist()))
        t = dataset().to_table(columns=["bytes"], filter=(pc.field("date") == d_one) & (pc.field("user_id") == user))
        return [(t.num_rows, pc.sum(t["bytes"]).as_py())]

    def duck(via: str):
        def answer(name: str):
            con = connect(catalog_path, storage_root=storage.root_uri, s3_via=via)
            try:
                return con.execute(queries[name]).fetchall()
            finally:
                con.close()
        return answer

    engines = {"httpfs": duck("httpfs"), "fsspec": duck("fsspec"), "pyarrow": pyarrow_answer}
    samples: dict[str, dict[str, list[float]]] = {q: {e: [] for e in engines} for q in queries}
    for rep in range(args.repeat):
        for q in queries:
            answers = {}
            for e, fn in engines.items():
                t0 = time.perf_counter()
                answers[e] = fn(q)
                samples[q][e].append(time.perf_counter() - t0)
            if rep == 0 and not (_same(answers["httpfs"], answers["fsspec"]) and _same(answers["httpfs"], answers["pyarrow"])):
                print(f"engines disagree on {q}: {answers}", file=sys.stderr)
                return 1

    print(f"\nseconds, median of {args.repeat} [min]; each query on a fresh connection")
    print(f"{'query':<18} {'httpfs':>14} {'fsspec':>14} {'pyarrow':>14} {'fsspec/httpfs':>14} {'pyarrow/httpfs':>15}")
    summary = {}
    for q, by in samples.items():
        med = {e: statistics.median(v) for e, v in by.items()}
        summary[q] = {"median_s": med, "min_s": {e: min(v) for e, v in by.items()},
                      "fsspec_over_httpfs": med["fsspec"] / med["httpfs"],
                      "pyarrow_over_httpfs": med["pyarrow"] / med["httpfs"]}
        print(f"{q:<18} " + " ".join(f"{med[e]:.2f} [{min(by[e]):.2f}]".rjust(14) for e in engines)
              + f" {summary[q]['fsspec_over_httpfs']:>13.1f}x {summary[q]['pyarrow_over_httpfs']:>14.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "files": files, "bytes": size, "samples": samples,
                       "summary": summary}, f, indent=2, default=str)
    return 0


def _same(a: list[tuple], b: list[tuple]) -> bool:
    """Equal answers, floats to 1e-6 (pyarrow and DuckDB sum a mean in different orders)."""
    return len(a) == len(b) and all(
        len(x) == len(y) and all(abs(u - v) <= 1e-6 * max(1.0, abs(u)) if isinstance(u, float) else u == v
                                 for u, v in zip(x, y)) for x, y in zip(a, b))


if __name__ == "__main__":
    sys.exit(main())
