"""Bronze rows -> silver rows and quarantined rows (contract §3), in Spark built-ins.

One pass over a table's bronze rows: strings trimmed and emptied to NULL, the
rules evaluated in contract order into ``reasons`` (every rule a row breaks),
facts dated from ``date_dim`` (the DATE column and the ``YYYY-MM`` partition
value), then deduplication by primary key over the whole table among the rows
that broke no rule: the latest ingestion run wins (then the file name sorting
last, then the highest line), and every loser is quarantined as ``duplicate``.
Deduplicating the whole table, not a month, is what lets a correction that
moves a sale to another month remove it from its old one.

The dimension lookups (``date_dim``, ``item``) are silver's own, deduplicated
tables: a key appears there once, so the joins never multiply rows.
"""
from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lake_assets.catalog.tables import NULL_PARTITION
from lake_assets.domains.tpcds.bronze import quarantine_rows
from lake_assets.domains.tpcds.schemas import silver_schema
from lake_assets.domains.tpcds.spec import TableSpec
from lake_assets.quality.rules import Rule, reasons_column, sql_literal, sql_name

#: What "trimmed" strips (Spark's ``trim`` alone strips only spaces).
WHITESPACE = " \t\n\r\f\v"
#: The column holding a fact row's partition value (``sold_month``...): kept out of the files.
PARTITION = "_partition"


def record_text(spec: TableSpec) -> str:
    """SQL: a bronze row as a dsdgen line (NULL as an empty field, the trailing ``|``): its quarantine ``record``."""
    fields = ", ".join(f"coalesce(CAST({sql_name(c)} AS string), '')" for c in spec.column_names)
    return f"concat(concat_ws('|', {fields}), '|')"


def standardise(bronze: DataFrame, spec: TableSpec) -> DataFrame:
    """Strings trimmed, an empty string NULL; other columns and lineage as they are; ``record`` (the row's
    text as bronze holds it, :func:`record_text`) on the rows whose text trimming changed, NULL on the
    others. One SQL projection (``selectExpr``: one py4j call, where a Column per column made dozens).

    The text of every other row is the same made from its standardised columns (an empty string and
    NULL both print as an empty field), so it is made there, after deduplication and for rejects
    only (:func:`parse`): a row's text is not built, shuffled and cached for every valid row.
    """
    def clean(name: str) -> str:
        if spec.by_name[name].type != "string":
            return sql_name(name)
        return f"nullif(btrim({sql_name(name)}, {sql_literal(WHITESPACE)}), '') AS {sql_name(name)}"
    trimmed = [f"{sql_name(c.name)} <> btrim({sql_name(c.name)}, {sql_literal(WHITESPACE)})"
               for c in spec.columns if c.type == "string"]
    record = f"CASE WHEN {' OR '.join(trimmed)} THEN {record_text(spec)} END" if trimmed else "CAST(NULL AS string)"
    rest = [sql_name(c) for c in bronze.columns if c not in spec.by_name]
    return bronze.selectExpr(*[clean(c) for c in spec.column_names], *rest, f"{record} AS record")


def partition_value(date: Column) -> Column:
    """``YYYY-MM`` of a date, or Hive's NULL partition name when there is no date."""
    return F.coalesce(F.date_format(date, "yyyy-MM"), F.lit(NULL_PARTITION))


def parse(bronze: DataFrame, spec: TableSpec, date_dim: DataFrame | None = None,
          item: DataFrame | None = None) -> DataFrame:
    """A table's bronze rows -> standardised columns, lineage, ``record``, ``reasons`` (``duplicate``
    included) and, for a fact, its DATE column and ``_partition``.

    ``date_dim`` and ``item`` are silver's (facts only): the date of each
    ``*_date_sk`` and whether each item key exists.
    """
    rows = standardise(bronze, spec)
    rules = [Rule("missing_primary_key", " OR ".join(f"{sql_name(k)} IS NULL" for k in spec.primary_key))]
    if spec.is_fact:
        if date_dim is None or item is None:
            raise ValueError(f"{spec.name} is a fact: its rules need silver's date_dim and item")
        rows = _dated(rows, spec, date_dim)
        known_items = F.broadcast(item.select(F.col("i_item_sk").alias("_item_sk"), F.lit(True).alias("_item_known")))
        rows = rows.join(known_items, F.col(spec.item_key) == F.col("_item_sk"), "left").drop("_item_sk")
        rules += [Rule(f"negative_value:{m}", f"{sql_name(m)} < 0") for m in spec.measures]
        rules.append(Rule("unknown_date", " OR ".join(f"({sql_name(k)} IS NOT NULL AND _date_known_{i} IS NULL)"
                                                       for i, k in enumerate(spec.date_keys))))
        rules.append(Rule("unknown_item", f"{sql_name(spec.item_key)} IS NOT NULL AND _item_known IS NULL"))
    assert tuple(r.name for r in rules) + ("duplicate",) == spec.rule_names, "spec.rule_names is out of date"
    helpers = [c for c in rows.columns if c.startswith(("_date_known_", "_item_known"))]
    parsed = rows.withColumn("reasons", reasons_column(rules)).drop(*helpers)
    if spec.dating:
        parsed = parsed.withColumn(PARTITION, partition_value(F.col(spec.dating.column)))
    # A cached parse then holds each line's text for rejects only: as bronze held it where trimming
    # changed it (standardise), else made from the standardised columns, the same text.
    rejects_text = f"CASE WHEN size(reasons) > 0 THEN coalesce(record, {record_text(spec)}) END AS record"
    flagged = flag_duplicates(parsed, spec)
    return flagged.selectExpr(*[sql_name(c) if c != "record" else rejects_text for c in flagged.columns])


def _dated(rows: DataFrame, spec: TableSpec, date_dim: DataFrame) -> DataFrame:
    """Each ``*_date_sk`` looked up in ``date_dim`` (a known-flag each; the dating key's ``d_date`` kept)."""
    for i, key in enumerate(spec.date_keys):
        cols = [F.col("d_date_sk").alias(f"_date_sk_{i}"), F.lit(True).alias(f"_date_known_{i}")]
        if key == spec.dating.key:
            cols.append(F.col("d_date").alias(spec.dating.column))
        rows = rows.join(F.broadcast(date_dim.select(*cols)), F.col(key) == F.col(f"_date_sk_{i}"), "left")
        rows = rows.drop(f"_date_sk_{i}")
    return rows


def flag_duplicates(parsed: DataFrame, spec: TableSpec) -> DataFrame:
    """Among the rows that broke no rule, one per primary key wins: the latest ingestion run, then
    the file name sorting last, then the highest line. Every other gets the reason ``duplicate``."""
    valid = F.size("reasons") == 0
    order = [F.col("_ingested_at").desc(), F.col("_ingest_run_id").desc(), F.col("_source_file").desc(),
             F.col("_line").desc()]
    window = Window.partitionBy(valid.alias("_valid"), *spec.primary_key).orderBy(*order)
    rank = F.when(valid, F.row_number().over(window))
    return parsed.withColumn("reasons", F.when(rank > 1, F.array(F.lit("duplicate"))).otherwise(F.col("reasons")))


def silver_rows(parsed: DataFrame, spec: TableSpec, loaded_at: dt.datetime) -> DataFrame:
    """The rows that broke no rule, in silver's schema, with ``load_timestamp`` = ``loaded_at`` (UTC);
    a fact's also carry ``_partition`` (its ``sold_month``/``returned_month``/``inv_month`` value)."""
    schema = silver_schema(spec)
    loaded = loaded_at.astimezone(dt.timezone.utc).isoformat()  # with its +00:00: whatever the session's zone
    cols = [f"CAST({sql_name(f.name)} AS {f.dataType.simpleString()}) AS {sql_name(f.name)}"
            for f in schema.fields if f.name != "load_timestamp"]
    cols.append(f"TIMESTAMP {sql_literal(loaded)} AS load_timestamp")
    if spec.dating:
        cols.append(PARTITION)
    return parsed.where("size(reasons) = 0").selectExpr(*cols)


def silver_rejects(parsed: DataFrame, spec: TableSpec) -> DataFrame:
    """The rows that broke a rule (duplicates included), as quarantine rows (stage ``silver``);
    a fact's also carry ``_partition``: the month of its date (Hive's NULL partition without one)."""
    keep = [PARTITION] if spec.dating else []
    return quarantine_rows(parsed.where("size(reasons) > 0"), "silver", *keep)
