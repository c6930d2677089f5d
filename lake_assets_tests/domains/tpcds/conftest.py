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
