"""The tpcds Domain declaration: its tables in the registry and its generate hook (no Spark)."""
from __future__ import annotations

import argparse
import datetime as dt

from lake_assets.catalog.tables import Registry
from lake_assets.domain import GenerateRequest
from lake_assets.domains.tpcds import DOMAIN
from lake_assets.domains.tpcds.spec import FACTS, TABLES


def test_tables_are_declared_once_each_silver_under_its_tpcds_name():
    registry = Registry.of(DOMAIN.tables())  # no name declared twice, no location inside another
    silver = {t.name: t for t in registry if t.zone == "silver"}
    assert sorted(silver) == sorted(TABLES)
    assert silver["store_sales"].qualified_name == "tpcds.store_sales"
    assert {n: [(k.name, k.type) for k in t.partition_keys] for n, t in silver.items() if n in FACTS} == {
        n: [(f.dating.partition, "string")] for n, f in FACTS.items()}
    assert all(not t.partition_keys for n, t in silver.items() if n not in FACTS)
    gold = {t.name: [k.name for k in t.partition_keys] for t in registry if t.zone == "gold"}
    assert gold == {"daily_sales_summary": ["sold_month"], "customer_lifetime_value": [],
                    "product_performance": ["sold_month"], "monthly_trends": []}
    assert len([t for t in registry if t.zone == "quarantine"]) == 24
    assert {t.name for t in registry if t.zone == "bronze"} == {f"bronze_{n}" for n in TABLES}


def test_generate_hook_takes_the_cli_options(local_lake, tmp_path):
    parser = argparse.ArgumentParser()
    for o in DOMAIN.generate_options:  # as ``lake generate`` adds them
        o.add_to(parser)
    args = parser.parse_args(["--scale", "0.01", "--chunks", "3", "--gzip"])
    request = GenerateRequest(start=dt.date(2024, 1, 1), days=1, records_per_day=1, bad_share=0.0, bad_files=1,
                              seed=7, now=dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc),
                              options={o.dest: getattr(args, o.dest) for o in DOMAIN.generate_options})
    line = DOMAIN.generate(local_lake, request)
    assert "wrote 73 raw file(s) at scale 0.01" in line and "1 unreadable file(s)" in line
    import gzip

    lines = [gzip.decompress(local_lake.read_bytes(f"raw/tpcds/store_sales/store_sales_{k}_3.dat.gz")).count(b"\n")
             for k in (1, 2, 3)]
    assert lines == [9603, 9603, 9604]  # 28810 rows in three chunks


def test_registered_with_its_assets_checks_jobs_and_sensor():
    """Listed in DOMAINS (so `lake generate|run|catalog` and the code location have it), its definitions:
    a landing, bronze and silver asset per table, four gold, the plan of months and a report of changed
    months per fact, the shared checks (a fact's and a monthly gold table's by month), three jobs, one sensor."""
    from lake_assets.domains import DOMAINS
    from lake_assets.settings import LakeSettings

    assert DOMAINS["tpcds"] is DOMAIN
    defs = DOMAIN.definitions(LakeSettings())
    keys = {k.to_user_string() for a in defs.assets for k in getattr(a, "keys", [getattr(a, "key", None)])}
    for zone in ("landing", "bronze", "silver"):
        assert {f"tpcds_{zone}_{t}" for t in TABLES} <= keys
    assert {f"tpcds_{g}" for g in ("daily_sales_summary", "customer_lifetime_value", "product_performance",
                                   "monthly_trends")} <= keys
    assert {"tpcds_silver_plan", *(f"tpcds_changes_{f}" for f in FACTS)} <= keys
    assert len(keys) == 3 * 24 + 4 + 1 + len(FACTS)
    months = {a.key.to_user_string(): a.partitions_def for a in defs.assets
              if getattr(a, "partitions_def", None) is not None and "tpcds_month" in str(a.partitions_def)}
    assert set(months) == ({f"tpcds_silver_{f}" for f in FACTS} | {f"tpcds_changes_{f}" for f in FACTS}
                           | {"tpcds_daily_sales_summary", "tpcds_product_performance"})
    checks = {c.name for cd in defs.asset_checks for c in cd.check_specs}
    for t in TABLES:
        assert {f"tpcds_bronze_{t}_lines_accounted", f"tpcds_silver_{t}_rows_accounted", f"tpcds_silver_{t}_keys",
                f"tpcds_silver_{t}_schema", f"tpcds_silver_{t}_quarantine_rate"} <= checks
    assert {j.name for j in defs.jobs} == {"ingest_tpcds_job", "tpcds_pipeline_job", "tpcds_months_job"}
    assert DOMAIN.build_job_name == ("tpcds_pipeline_job", "tpcds_months_job")
    by_month = {c.name for cd in defs.asset_checks for c in cd.check_specs if c.partitions_def is not None
                and "tpcds_month" in str(c.partitions_def)}
    assert {f"tpcds_silver_{f}_{c}" for f in FACTS for c in ("rows_accounted", "keys", "schema", "quarantine_rate")} \
        | {"tpcds_daily_sales_summary_schema", "tpcds_product_performance_schema"} == by_month
    assert [s.name for s in defs.sensors] == ["tpcds_landing_sensor"]
    assert DOMAIN.landing().folders == tuple(f"raw/tpcds/{t}" for t in TABLES)


def test_a_scale_dsdgen_never_finishes_is_refused_before_anything_runs(local_lake, capsys):
    """Below SF 0.01 DuckDB's dsdgen never returns: ``--scale`` refuses it (argparse's usage, exit 2), and
    the generator itself refuses it before starting DuckDB, writing nothing."""
    import pytest

    from lake_assets.domains.tpcds.generator import generate_tpcds

    parser = argparse.ArgumentParser()
    for o in DOMAIN.generate_options:
        o.add_to(parser)
    for bad in ("0.001", "0", "-1", "nan", "tiny"):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["--scale", bad])
        assert exit_.value.code == 2
        assert "--scale" in capsys.readouterr().err
    assert parser.parse_args(["--scale", "0.01"]).scale == 0.01
    with pytest.raises(ValueError, match="below 0.01, the smallest scale dsdgen generates"):
        generate_tpcds(local_lake, scale=0.005)
    assert local_lake.list_files("raw") == []
