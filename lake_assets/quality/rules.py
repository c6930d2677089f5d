"""Row-level rules declared as data and compiled once into Spark columns.

A domain lists its rules in contract order; :func:`reasons_column` turns the
list into one ``array<string>`` of every rule a row breaks, so the quarantine,
the metrics and the docs all read the same list.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T


@dataclass(frozen=True)
class Rule:
    """A named rule; ``broken`` is a Spark boolean column, or the same condition as Spark SQL text,
    true when a row breaks it."""

    name: str
    broken: Column | str


def sql_name(column: str) -> str:
    """A column's name quoted for Spark SQL."""
    return f"`{column}`"


def sql_literal(text: str) -> str:
    """``text`` as a Spark SQL string literal (a backslash and a quote escaped, as the SQL parser unescapes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def reasons_column(rules: Sequence[Rule]) -> Column:
    """Every rule a row breaks, in the order given (empty for a valid row).

    The array is built only on rows breaking some rule: a valid row (nearly every row) gets
    the empty array from one ``OR`` of the rules. ``filter`` is a higher-order function, which
    Spark evaluates outside generated code: building it on every row was two thirds of TPC-DS
    bronze's parse (5.5 of 7.9 s on 865 k store_sales lines).
    """
    from functools import reduce

    if all(isinstance(r.broken, str) for r in rules):
        # The same expression as SQL text: one py4j call, where building it from Columns makes
        # several per rule (hundreds for a table of thirty columns).
        any_broken = " OR ".join(f"({r.broken})" for r in rules)
        flags = ", ".join(f"CASE WHEN {r.broken} THEN {sql_literal(r.name)} END" for r in rules)
        return F.expr(f"CASE WHEN {any_broken} THEN filter(array({flags}), x -> x IS NOT NULL) "
                      "ELSE CAST(array() AS array<string>) END")
    broken = [F.expr(r.broken) if isinstance(r.broken, str) else r.broken for r in rules]
    flags = F.array(*[F.when(b, F.lit(r.name)) for r, b in zip(rules, broken)])
    listed = F.filter(flags, lambda x: x.isNotNull())
    any_broken = reduce(lambda a, b: a | b, broken)
    return F.when(any_broken, listed).otherwise(F.array().cast(T.ArrayType(T.StringType(), True)))


def record_text_for_rejects(parsed: DataFrame) -> DataFrame:
    """``record`` kept only on rows that broke a rule (null on valid rows).

    Valid rows leave as typed columns and rejects keep the record's text, so a
    parse cached for both writes need not hold a second copy of the whole input.
    """
    return parsed.withColumn("record", F.when(F.size("reasons") > 0, F.col("record")))


#: The columns of every reject row, whatever the domain.
REJECT_SCHEMA = T.StructType(
    [
        T.StructField("record", T.StringType(), False),
        T.StructField("reason", T.StringType(), False),
        T.StructField("reasons", T.ArrayType(T.StringType(), True), False),
        T.StructField("source_format", T.StringType(), True),
        T.StructField("source_file", T.StringType(), True),
        T.StructField("stage", T.StringType(), False),
        T.StructField("ingest_run_id", T.StringType(), True),
        T.StructField("rejected_at", T.TimestampType(), False),
        T.StructField("_partition_date", T.DateType(), False),
    ]
)


def reject_rows(df: DataFrame, *, stage: str, rejected_at: Column | None = None) -> DataFrame:
    """Shape rows that broke rules into the reject table.

    ``df`` carries ``record``, ``reasons`` (non-empty), ``source_format``,
    ``source_file``, ``ingest_run_id`` and ``partition_date`` (the partition the
    reject lands under: the event date, or the ingest date when undatable).
    """
    return df.select(
        F.col("record"),
        F.col("reasons")[0].alias("reason"),
        F.col("reasons"),
        F.col("source_format"),
        F.col("source_file"),
        F.lit(stage).alias("stage"),
        F.col("ingest_run_id"),
        (rejected_at if rejected_at is not None else F.current_timestamp()).alias("rejected_at"),
        F.col("partition_date").alias("_partition_date"),
    )
