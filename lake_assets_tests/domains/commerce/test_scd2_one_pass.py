"""``scd2_result`` in one pass gives the verdict of the three counts it replaced, on edge cases
the check's failure test does not craft: versions without a user, a user whose current flag is
never set, ties, several unknown members."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F

from lake_assets.domains.commerce import gold
from lake_assets.domains.commerce.checks import scd2_result

TS = dt.datetime
U = gold.UNKNOWN_USER_KEY


def plain_counts(dim) -> dict:
    """The check's three counts as three separate Spark queries (what it ran before its one pass)."""
    known = dim.where(F.col("user_id").isNotNull())
    nxt = F.lead("valid_from").over(Window.partitionBy("user_id").orderBy("valid_from"))
    windows = known.withColumn("_next", nxt)
    bad_windows = windows.where(
        (F.col("valid_to").isNotNull() & (F.col("valid_to") <= F.col("valid_from")))
        | (F.col("_next").isNotNull() & (F.col("valid_to").isNull() | (F.col("_next") < F.col("valid_to"))))
    ).count()
    bad_current = known.groupBy("user_id").agg(F.sum(F.col("is_current").cast("int")).alias("c")) \
        .where(F.col("c") != 1).count()
    unknown = dim.where(F.col("user_key") == U).count()
    return {"overlapping_or_empty_windows": bad_windows, "users_without_exactly_one_current_row": bad_current,
            "unknown_member_rows": unknown}


def row(key, user_id, valid_from, valid_to=None, current=True):
    return (key, user_id, None, None, None, valid_from, valid_to, current)


CASES = {
    "clean": [row(U, None, None, None, None), row(1, "a", TS(2024, 1, 1), TS(2024, 1, 5), False),
              row(2, "a", TS(2024, 1, 5))],
    "no current flag set": [row(U, None, None, None, None), row(1, "a", TS(2024, 1, 1), None, None),
                            row(2, "b", TS(2024, 1, 1), TS(2024, 1, 3), None), row(3, "b", TS(2024, 1, 3), None, None)],
    "versions without a user": [row(U, None, None, None, None), row(7, None, TS(2024, 1, 1), TS(2023, 1, 1)),
                                row(8, None, TS(2024, 1, 2), TS(2024, 1, 1), True)],
    "two unknown members": [row(U, None, None, None, None), row(U, None, None, None, None), row(1, "a", TS(2024, 1, 1))],
    "ties and overlaps": [row(U, None, None, None, None), row(1, "a", TS(2024, 1, 1), TS(2024, 1, 9), False),
                          row(2, "a", TS(2024, 1, 1), TS(2024, 1, 9), True), row(3, "a", TS(2024, 1, 5)),
                          row(4, "b", TS(2024, 2, 1), TS(2024, 2, 1), False), row(5, "b", None, None, True)],
    "no unknown member": [row(1, "a", TS(2024, 1, 1)), row(2, "b", TS(2024, 1, 1), None, False)],
    "empty": [],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_scd2_result_is_the_three_counts(spark, tmp_path, case):
    path = str(tmp_path / uuid.uuid4().hex)
    spark.createDataFrame(CASES[case], gold.DIM_USERS).repartition(3).write.parquet(path)
    dim = spark.read.parquet(path)
    result, wrong = scd2_result(dim)
    expected = plain_counts(dim)
    assert {k: getattr(v, "value", v) for k, v in result.metadata.items()} == expected
    assert wrong == expected["overlapping_or_empty_windows"] + expected["users_without_exactly_one_current_row"] \
        + abs(expected["unknown_member_rows"] - 1)
    assert result.passed == (wrong == 0)
