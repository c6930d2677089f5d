"""Where the processed stage's time goes: the access-record parse, layer by layer, in Spark.

Generates and ingests a lake (the same generator as logs_e2e.py), then times
Spark over the validated access records with one more layer each time: reading
the text with its lineage, the strict JSON parse, the contract's fields, the
extra attributes, the typed columns, and the rules (the whole parse_access).
Each layer runs twice in one session: the first run includes code generation
and JIT warm-up, the second is the steady state. Sinks are Spark's ``noop``
format, so only the parse is measured.

    .venv/bin/python benchmarks/parse_profile.py [--records 500000] [--master local[2]]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=500_000)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "lake-parse-profile"))
    args = p.parse_args(argv)
    sys.path[:0] = [HERE, PROJECT]
    import logs_e2e

    shutil.rmtree(args.workdir, ignore_errors=True)
    lake, home = os.path.join(args.workdir, "lake"), logs_e2e.fresh_home(os.path.join(args.workdir, "home"))
    start = dt.date.today() - dt.timedelta(days=args.days)
    gen = logs_e2e.generate(lake, start=start, days=args.days, records_per_day=args.records // args.days,
                            bad_share=0.01, bad_files=0, seed=7)
    env = {**os.environ, **logs_e2e.lake_env(lake, home, argparse.Namespace(master=args.master))}
    subprocess.run(logs_e2e.child("ingest"), env=env, check=True, capture_output=True)
    os.environ.update(LAKE_ROOT=lake, SPARK_MASTER=args.master)

    from dagster_pyspark.resources import spark_session_from_config
    from pyspark.sql import functions as F

    from lake_assets import settings
    from lake_assets.domains.logs import contract
    from lake_assets.ingest.validated import json_get, json_record, read_validated_text, validated_files
    from lake_assets.lake import LakeStorage
    from lake_assets.quality.timestamps import event_time_column
    from lake_assets.spark import spark_config_from_env

    spark = spark_session_from_config(spark_config_from_env())
    spark.sparkContext.setLogLevel("ERROR")
    storage = LakeStorage(lake)
    days = [start + dt.timedelta(days=i) for i in range(args.days + 2)]
    files = validated_files(storage, days, contract.ACCESS_FORMATS)
    records = sum(f.records for f in files)
    raw_mb = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(lake, "archive"))
                 for f in fs if "/ndjson/" in os.path.join(d, f) or "/json_gzip/" in os.path.join(d, f)) / 1e6

    text = read_validated_text(spark, storage, files)
    obj = text.select("record", json_record(F.col("record")).alias("_obj"))
    fields = obj.select(*[json_get(F.col("_obj"), f"$.{n}", "string").alias(n) for n in contract.ACCESS_FIELDS])
    extras = F.map_filter(json_get(F.col("_obj"), "$", "map<string,variant>"),
                          lambda k, v: ~k.isin(*contract.ACCESS_FIELDS))
    with_extras = obj.select(*[json_get(F.col("_obj"), f"$.{n}", "string").alias(n) for n in contract.ACCESS_FIELDS],
                             F.when(F.size(extras) > 0, F.to_json(extras)).alias("attributes"))
    typed = with_extras.select("*", event_time_column(F.col("timestamp")).alias("ts"),
                               F.col("status").try_cast("int").alias("st"),
                               F.col("bytes_sent").try_cast("bigint").alias("b"),
                               F.col("latency_ms").try_cast("double").alias("l"))
    layers = [
        ("read text + lineage", text),
        ("+ strict JSON parse", obj.select(F.col("_obj").isNull().alias("malformed"))),
        ("+ 12 contract fields", fields),
        ("+ extra attributes", with_extras),
        ("+ typed (timestamps, numbers)", typed),
        ("+ rules = parse_access", contract.parse_access(text, settings.start_date())),
    ]
    print(f"{records:,} access records, {raw_mb:.1f} MB of raw access files, master {args.master}, "
          f"{os.cpu_count()} CPU(s)\n")
    print(f"{'layer':<32} {'first s':>8} {'steady s':>9} {'records/s':>10} {'raw MB/s':>9}")
    for name, df in layers:
        times = []
        for _ in range(2):
            t = time.perf_counter()
            df.write.format("noop").mode("overwrite").save()
            times.append(time.perf_counter() - t)
        print(f"{name:<32} {times[0]:8.1f} {times[1]:9.1f} {records / times[1]:10,.0f} {raw_mb / times[1]:9.1f}")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
