"""The TPC-DS sales lake (contract: shared/contracts/tpcds.md, seed 004).

Built so far: the 24 tables as data (``spec``, ``schemas``, ``tables``), the
generator (``lake generate tpcds``), the dsdgen reader for ingestion
(``reader``), and bronze, silver and gold as DataFrame functions (``bronze``,
``silver``, ``gold``). Not yet: the assets, jobs, sensor and checks, so this
domain is not listed in :data:`lake_assets.domains.DOMAINS` and its
``definitions`` and ``run`` hooks refuse.
"""
from __future__ import annotations

from lake_assets.domain import Domain, GenerateRequest, Option

NAME = "tpcds"


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


def _not_built(*_args, **_kw):
    raise NotImplementedError("the tpcds domain's assets are not built yet (issue 13): generate and the "
                              "DataFrame functions work, definitions and lake run do not")


DOMAIN = Domain(
    name=NAME,
    description="The TPC-DS retail warehouse (dsdgen files) -> bronze -> silver (+ quarantine) -> sales metrics",
    definitions=_not_built, tables=_tables, generate=_generate, run=_not_built,
    generate_options=(
        Option("--scale", float, 0.01, "tpcds: TPC-DS scale factor (1 is about 1 GB of raw files)"),
        Option("--chunks", int, 1, "tpcds: files per table (dsdgen's -PARALLEL names)"),
        Option("--gzip", bool, False, "tpcds: gzip the files"),
    ),
)
