"""Fixtures of the tpcds tests: small DataFrames built from the declared schemas."""
from __future__ import annotations

import pytest


@pytest.fixture
def frame(spark):
    """``frame(schema, rows)``: a DataFrame of ``schema`` from dicts (a column a dict lacks is NULL)."""

    def _make(schema, rows):
        names = schema.fieldNames()
        unknown = {k for r in rows for k in r} - set(names)
        assert not unknown, f"not in the schema: {sorted(unknown)}"
        return spark.createDataFrame([tuple(r.get(n) for n in names) for r in rows], schema)

    return _make


@pytest.fixture
def dsdgen_line():
    """``dsdgen_line(spec, **values)``: a line as dsdgen writes it (a missing value is an empty field)."""

    def _line(spec, **values):
        unknown = set(values) - set(spec.column_names)
        assert not unknown, f"not columns of {spec.name}: {sorted(unknown)}"
        return "|".join(str(values.get(c, "")) for c in spec.column_names) + "|"

    return _line


@pytest.fixture(scope="session")
def tpcds_lake(spark, tmp_path_factory):
    """The tpcds lake built once per test run through the code location's own jobs (`lake run`'s path):
    dsdgen's SF 0.01 in two gzip chunks per table, with broken lines (each quarantined, or a re-delivered
    line deduplication folds back, so silver still holds exactly the generator's tables) and two
    unreadable files. A dict: ``root``, ``storage``, ``gen`` (what was generated), ``raw`` (each raw
    file's bytes), ``defs``, ``instance`` (the Dagster instance holding the run), ``report`` (the run's
    DomainRun) and ``catalog_path`` (its DuckDB catalog). Read it, never write it: tests that change
    the lake copy it first (:func:`copy_of_tpcds_lake`)."""
    from dagster import DagsterInstance

    from lake_assets.definitions import build_defs
    from lake_assets.domains import DOMAINS
    from lake_assets.domains.tpcds.generator import generate_tpcds
    from lake_assets.lake import LakeStorage
    from lake_assets.pipeline import run_landing_domain

    base = tmp_path_factory.mktemp("tpcds_lake")
    root, catalog_path = str(base / "lake"), str(base / "catalog.duckdb")
    storage = LakeStorage(root)
    gen = generate_tpcds(storage, scale=0.01, chunks=2, gzip=True, bad_share=0.002, bad_files=2, seed=11,
                         work_dir=str(base))
    raw = {f.path: storage.read_bytes(f.path) for f in storage.list_files("raw/tpcds")}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAKE_CATALOG_PATH", catalog_path)  # read when the definitions are built
        defs = build_defs(root)
    with DagsterInstance.ephemeral() as instance:
        report = run_landing_domain(defs, instance, storage, DOMAINS["tpcds"].landing(),
                                    build_job=DOMAINS["tpcds"].build_job_name)
        yield {"root": root, "storage": storage, "gen": gen, "raw": raw, "defs": defs, "instance": instance,
               "report": report, "catalog_path": catalog_path}


@pytest.fixture(scope="session")
def copy_of_tpcds_lake(tpcds_lake, tmp_path_factory):
    """``copy_of_tpcds_lake()``: a copy of :func:`tpcds_lake`'s lake (files and their times) with definitions
    of its own (no catalog) and the same Dagster instance (its records describe the copy as well):
    ``(root, storage, defs, instance)``, to run further deliveries on without changing the shared lake."""
    import shutil

    from lake_assets.definitions import build_defs
    from lake_assets.lake import LakeStorage

    def _copy():
        root = str(tmp_path_factory.mktemp("tpcds_copy") / "lake")
        shutil.copytree(tpcds_lake["root"], root)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("LAKE_CATALOG", "none")
            defs = build_defs(root)
        return root, LakeStorage(root), defs, tpcds_lake["instance"]

    return _copy
