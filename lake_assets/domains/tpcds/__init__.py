"""The TPC-DS sales lake (contract: shared/contracts/tpcds.md, seed 004).

The 24 tables as data (``spec``, ``schemas``, ``tables``), the generator
(``lake generate tpcds``), bronze, silver and gold as DataFrame functions
(``bronze``, ``silver``, ``gold``), and the Dagster assets, checks, jobs and
landing sensor built from them (``assets``, ``checks``).
"""
from __future__ import annotations

from lake_assets.domain import Chart, Domain, Example, GenerateRequest, Option, at_least

NAME = "tpcds"
#: The smallest scale factor DuckDB's dsdgen finishes: below it (0.005, 0.001) it never returns.
MIN_SCALE = 0.01
#: Why ``--scale`` and :func:`~lake_assets.domains.tpcds.generator.generate_tpcds` refuse less.
BELOW_MIN_SCALE = ", the smallest scale dsdgen generates"


def definitions(settings=None):
    """Everything the tpcds domain adds to the code location, built with ``settings``."""
    from dagster import Definitions

    from lake_assets.domains.tpcds import assets, checks
    from lake_assets.settings import LakeSettings

    settings = settings or LakeSettings.from_env()
    a, c = assets.build(settings), checks.build(settings)
    return Definitions(
        assets=[*a["LANDING_SPECS"].values(), *a["BRONZE_ASSETS"].values(), *a["SILVER_ASSETS"].values(),
                a["PLAN"], *a["CHANGES_SPECS"].values(), *a["GOLD_ASSETS"]],
        asset_checks=c["TPCDS_CHECKS"],
        jobs=[a["ingest_tpcds_job"], a["tpcds_pipeline_job"], a["tpcds_months_job"]],
        sensors=[a["tpcds_landing_sensor"]],
    )


def _tables():
    from lake_assets.domains.tpcds.tables import TABLES_DECLARED

    return TABLES_DECLARED


def _generate(storage, req: GenerateRequest) -> str:
    """``lake generate tpcds --scale SF [--chunks N] [--gzip]``; ``--bad-share``/``--bad-files`` add broken
    lines (each quarantined or folded back by deduplication) and unreadable files."""
    from lake_assets.domains.tpcds.generator import generate_tpcds

    o = req.options
    gen = generate_tpcds(storage, scale=o["scale"], chunks=o["chunks"], gzip=bool(o["gzip"]),
                         bad_share=req.bad_share, bad_files=req.bad_files, seed=req.seed)
    bad = sum(gen.bad_lines.values())
    return (f"wrote {len(gen.files) + len(gen.bad_files)} raw file(s) at scale {o['scale']} ({sum(gen.rows.values())} rows in "
            f"{len(gen.rows)} tables; {bad} broken line(s), {len(gen.bad_files)} unreadable file(s)) "
            f"under {storage.uri('raw/tpcds')}")


def _landing():
    from lake_assets.domains.tpcds.assets import LANDING

    return LANDING


def _run(defs, instance, storage, progress, settings):
    from lake_assets.pipeline import run_landing_domain

    return run_landing_domain(defs, instance, storage, _landing(), progress=progress, build_job=BUILD_JOBS)


#: Ingest dates, then months (a Dagster job has one partitions definition).
BUILD_JOBS = ("tpcds_pipeline_job", "tpcds_months_job")


DOMAIN = Domain(
    name=NAME,
    description="The TPC-DS retail warehouse (dsdgen files) -> bronze -> silver (+ quarantine) -> sales metrics",
    definitions=definitions, tables=_tables, generate=_generate, run=_run, landing=_landing, build_job=BUILD_JOBS,
    report=(
        Chart("Net paid per channel per month", "SELECT month, channel, net_paid FROM tpcds.monthly_trends ORDER BY month",
              "line", x="month", y=("net_paid",), color="channel", requires=("tpcds.monthly_trends",)),
        Chart("Month-over-month growth of net paid per channel",
              "SELECT month, channel, mom_growth FROM tpcds.monthly_trends WHERE mom_growth IS NOT NULL ORDER BY month",
              "bar", x="month", y=("mom_growth",), color="channel", requires=("tpcds.monthly_trends",)),
        Chart("Top products per category, latest month",
              "SELECT category, category_rank AS rank, product_name, item_id, revenue, "
              "round(category_share * 100, 1) AS share_pct FROM tpcds.product_performance "
              "WHERE month = (SELECT max(month) FROM tpcds.product_performance) AND category_rank <= 3 "
              "ORDER BY category NULLS LAST, category_rank, item_id",
              "table", requires=("tpcds.product_performance",)),
    ),
    examples=(
        Example("Net paid per channel and year (gold)",
                "SELECT year(month) AS year, channel, sum(net_paid) AS net_paid FROM tpcds.monthly_trends "
                "GROUP BY ALL ORDER BY year, channel"),
        Example("Quarantined TPC-DS lines and rows by table, stage and reason",
                "SELECT 'store_sales' AS t, stage, reason, count(*) AS n FROM tpcds.quarantine_store_sales "
                "GROUP BY ALL ORDER BY n DESC"),
        Example("TPC-DS query 3, unchanged, against silver (lake sql --schema tpcds)",
                "SELECT d_year, i_brand_id, sum(ss_ext_sales_price) AS sum_agg FROM tpcds.date_dim, "
                "tpcds.store_sales, tpcds.item WHERE d_date_sk = ss_sold_date_sk AND ss_item_sk = i_item_sk "
                "AND i_manufact_id = 128 AND d_moy = 11 GROUP BY ALL ORDER BY d_year, sum_agg DESC LIMIT 10"),
    ),
    generate_options=(
        Option("--scale", at_least(MIN_SCALE, float, BELOW_MIN_SCALE), MIN_SCALE, "tpcds: TPC-DS scale factor (1 is about 1 GB of raw files)"),
        Option("--chunks", int, 1, "tpcds: files per table (dsdgen's -PARALLEL names)"),
        Option("--gzip", bool, False, "tpcds: gzip the files"),
    ),
)
