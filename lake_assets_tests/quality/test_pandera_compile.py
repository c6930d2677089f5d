"""``validate_with_pandera`` (pandera's schema checks compiled into one Spark aggregation) against
pandera's own verdicts on the same crafted violations."""
from __future__ import annotations

import datetime as dt
import json

import pandera.pyspark as pa
import pytest
from pandera.config import ValidationDepth, config_context
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.quality.checks import pandera_schema, validate_with_pandera

STRUCT = T.StructType([
    T.StructField("k", T.StringType(), False),  # not nullable
    T.StructField("n", T.LongType(), True),     # in_range(0, 10)
    T.StructField("ex", T.LongType(), True),    # in_range(0, 10), both ends excluded
    T.StructField("m", T.StringType(), True),   # isin
    T.StructField("no", T.StringType(), True),  # notin
    T.StructField("ge", T.LongType(), True),
    T.StructField("gt", T.LongType(), True),
    T.StructField("le", T.LongType(), True),
    T.StructField("lt", T.LongType(), True),
    T.StructField("d", T.DateType(), True),     # ge on a date
])
SCHEMA = pandera_schema(STRUCT, {
    "n": [pa.Check.in_range(0, 10)],
    "ex": [pa.Check.in_range(0, 10, include_min=False, include_max=False)],
    "m": [pa.Check.isin(["a", "b"])],
    "no": [pa.Check.notin(["bad"])],
    "ge": [pa.Check.ge(0)],
    "gt": [pa.Check.gt(0)],
    "le": [pa.Check.le(5)],
    "lt": [pa.Check.lt(5)],
    "d": [pa.Check.ge(dt.date(2024, 1, 1))],
})
GOOD = {"k": "x", "n": 0, "ex": 1, "m": "a", "no": "ok", "ge": 0, "gt": 1, "le": 5, "lt": 4,
        "d": dt.date(2024, 1, 1)}
#: The same columns, every one nullable: crafted frames may hold the nulls the schema forbids.
LOOSE = T.StructType([T.StructField(f.name, f.dataType, True) for f in STRUCT.fields])


def frame(spark, *changes: dict, struct=LOOSE):
    rows = [GOOD, *({**GOOD, **c} for c in changes)]
    return spark.createDataFrame([tuple(r.get(f.name) for f in struct.fields) for r in rows], struct)


def pandera_verdicts(schema, df) -> set[tuple[str | None, str]]:
    """(column, check) pairs pandera itself reports, validating schema and data its own way."""
    with config_context(validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        errors = json.loads(json.dumps(schema.validate(df).pandera.errors, default=str))
    return {(e["column"], e["check"].split("(", 1)[0]) for kinds in errors.values()
            for found in kinds.values() for e in found}


def our_verdicts(found: dict) -> set[tuple[str | None, str]]:
    out = {(e["column"], e["check"]) for e in found.get("DATA", [])}
    return out | {(e["column"], e["check"].split("(", 1)[0]) for kind, errs in found.items() if kind != "DATA"
                  for es in errs.values() for e in es}


@pytest.mark.parametrize("changes, expected", [
    ([], set()),
    ([{"k": None}], {("k", "not_nullable")}),
    ([{"n": 11}, {"n": -1}], {("n", "in_range")}),
    ([{"n": 10}], set()),                                    # range ends included
    ([{"ex": 0}, {"ex": 10}], {("ex", "in_range")}),         # ... or excluded
    ([{"m": "c"}], {("m", "isin")}),
    ([{"no": "bad"}], {("no", "notin")}),
    ([{"ge": -1}], {("ge", "greater_than_or_equal_to")}),
    ([{"gt": 0}], {("gt", "greater_than")}),
    ([{"le": 6}], {("le", "less_than_or_equal_to")}),
    ([{"lt": 5}], {("lt", "less_than")}),
    ([{"d": dt.date(2023, 12, 31)}], {("d", "greater_than_or_equal_to")}),
    # A null breaks no value check (only nullability): pandera and the compilation agree.
    ([{c: None for c in GOOD if c != "k"}], set()),
    ([{"k": None, "n": 99, "m": "z", "lt": 7}, {"n": 50}],
     {("k", "not_nullable"), ("n", "in_range"), ("m", "isin"), ("lt", "less_than")}),
], ids=lambda v: json.dumps(v, default=str)[:60] if isinstance(v, list) else None)
def test_data_checks_agree_with_pandera(spark, changes, expected):
    # Only the columns a case touches (all of them when it touches several), so pandera, which runs
    # a Spark job per column and check, stays quick.
    touched = sorted({c for change in changes for c in change}, key=list(GOOD).index)
    columns = touched if len(touched) == 1 else list(GOOD)
    schema, df = SCHEMA.select_columns(columns), frame(spark, *changes).select(*columns)
    found = validate_with_pandera(schema, df)
    assert pandera_verdicts(schema, df) == expected
    assert our_verdicts(found) == expected
    # Each failing check counts its rows.
    for e in found.get("DATA", []):
        assert e["failure_cases"] == sum(1 for c in changes if _breaks(c, e["column"], e["check"]))


def _breaks(change: dict, column: str, check: str) -> bool:
    if column not in change:
        return False
    v = change[column]
    if check == "not_nullable":
        return v is None
    return v is not None


@pytest.mark.parametrize("df_of, kind", [
    (lambda s: frame(s).withColumn("n", F.col("n").cast("int")),
     "WRONG_DATATYPE"),
    (lambda s: frame(s).withColumn("extra", F.lit(1)),
     "COLUMN_NOT_IN_SCHEMA"),
    (lambda s: frame(s).drop("m", "no"), "COLUMN_NOT_IN_DATAFRAME"),
])
def test_schema_errors_are_pandera_own(spark, df_of, kind):
    """Wrong types, extra and missing columns: pandera's own schema report, and no data checks run."""
    df = df_of(spark)
    found = validate_with_pandera(SCHEMA, df)
    assert set(found) == {"SCHEMA"} and kind in found["SCHEMA"]
    with config_context(validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        theirs = json.loads(json.dumps(SCHEMA.validate(df).pandera.errors, default=str))
    assert our_verdicts(found) == {(e["column"], e["check"].split("(", 1)[0])
                                   for es in theirs["SCHEMA"].values() for e in es}


def test_a_check_without_a_translation_is_refused(spark):
    schema = pandera_schema(T.StructType([T.StructField("s", T.StringType(), True)]),
                            {"s": [pa.Check.str_startswith("x")]})
    with pytest.raises(ValueError, match="str_startswith"):
        validate_with_pandera(schema, spark.createDataFrame([("xa",)], "s string"))
