"""Asset checks of the tpcds lake (contract §5), declared from the shared check factories.

* bronze, per ingest date: every line of every landed file is in bronze or in
  bronze's quarantine, once (manifests and Parquet footers: no Spark), blocking;
* silver, per table (a fact's per month: the months a run built): every bronze row is in silver or in silver's quarantine,
  once (footers), blocking; the primary key unique and, for a fact, every item
  and date key in ``item`` and ``date_dim`` (one Spark pass, blocking); the
  pandera schema (key columns never NULL, a fact's measures never negative);
  the share of the table's lines quarantined for a rule (``duplicate`` is a
  replaced row, not a bad one) against the WARN/ERROR thresholds;
* gold: the pandera schema of each table (per month for the monthly ones).

Every outcome is also merged into the metrics zone (``metrics/tpcds/``).
"""
from __future__ import annotations

import datetime as dt
import functools

import pandera.pyspark as pa
from dagster import AssetCheckResult, AssetChecksDefinition, MetadataValue
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.domains.tpcds import schemas
from lake_assets.domains.tpcds.assets import (
    FORMATS,
    METRICS,
    MONTHS,
    ZONES,
    landed_sha,
    located,
    quarantine_file,
    read_files,
)
from lake_assets.domains.tpcds.increments import partition_of
from lake_assets.domains.tpcds.silver import PARTITION
from lake_assets.domains.tpcds.gold import SALES
from lake_assets.domains.tpcds.spec import TABLES, TableSpec
from lake_assets.domains.tpcds.tables import BRONZE, GOLD, QUARANTINE, SILVER
from lake_assets.ingest.validated import validated_files
from lake_assets.lake import LakeStorage
from lake_assets.lake.layout import join
from lake_assets.partitions import daily_partitions, data_partitions
from lake_assets.quality.checks import (
    Reference,
    pandera_schema,
    rate_result,
    recorded_check,
    schema_check,
    table_checks,
)
from lake_assets.quality.metrics import reason_counts
from lake_assets.settings import LakeSettings, module_built_from_env


def _rows(storage: LakeStorage, paths) -> int:
    """Rows of Parquet files from their footers (a missing file holds none)."""
    import pyarrow.parquet as pq

    n = 0
    for path in paths:
        if storage.exists(path):
            with storage.open_random(path) as fh:
                n += pq.ParquetFile(fh).metadata.num_rows
    return n


def _stage_files(storage: LakeStorage, name: str, stage: str) -> list[str]:
    folder = join(QUARANTINE[name].location, f"stage={stage}")
    return [f.path for f in storage.list_files(folder, recursive=False) if f.name.endswith(".parquet")]


def stored(table, schema=None):
    """A check's reader of a table's files of the months it checks (every file of an unpartitioned
    table): as stored (the footer's schema) unless ``schema``."""
    return lambda spark, storage, keys: read_files(spark, storage, table, schema,
                                                   None if keys == [None] else keys)


def _months(spec: TableSpec):
    """The partitions of a fact's checks: its months (a dimension's checks have none)."""
    return data_partitions(MONTHS) if spec.is_fact else None


# -- bronze -------------------------------------------------------------------------------------------------
def bronze_accounted(spec: TableSpec, settings: LakeSettings) -> AssetChecksDefinition:
    name, asset = spec.name, f"tpcds_bronze_{spec.name}"

    @recorded_check(asset=asset, name=f"{asset}_lines_accounted", dataset=METRICS, blocking=True,
                    partitions_def=daily_partitions(settings.start_date),
                    description=f"Every line of every {name} file landed on these dates is in bronze or in "
                                "bronze's quarantine, once (ingestion manifests and Parquet footers).")
    def _check(context, keys):
        storage = context.resources.lake.storage
        days = [dt.date.fromisoformat(k) for k in keys]
        broken, totals = {}, {"lines": 0, "bronze_rows": 0, "quarantined": 0}
        for f in validated_files(storage, days, (FORMATS[name],), ZONES):
            sha = landed_sha(f)
            counts = {"lines": f.records,
                      "bronze_rows": _rows(storage, [join(BRONZE[name].location, f"{sha}.parquet")]),
                      "quarantined": _rows(storage, [quarantine_file(name, "bronze", sha)])}
            totals = {k: totals[k] + v for k, v in counts.items()}
            if counts["bronze_rows"] + counts["quarantined"] != counts["lines"]:
                broken[f.source_file] = counts
        lost = sum(abs(c["lines"] - c["bronze_rows"] - c["quarantined"]) for c in broken.values())
        return AssetCheckResult(passed=not broken, metadata={
            **totals, "mismatched_files": MetadataValue.json(broken)}), lost

    return _check


# -- silver ---------------------------------------------------------------------------------------------------
def silver_accounted(spec: TableSpec) -> AssetChecksDefinition:
    name, asset = spec.name, f"tpcds_silver_{spec.name}"
    what = (f"Every bronze {name} row is in silver or in silver's quarantine, once: " +
            ("per month checked (a bronze row's month from its date in date_dim, as silver places it: one "
             "Spark pass over bronze's date keys; silver and quarantine from Parquet footers)."
             if spec.is_fact else "Parquet footers."))

    @recorded_check(asset=asset, name=f"{asset}_rows_accounted", dataset=METRICS, blocking=True,
                    partitions_def=_months(spec), resources=("spark",) if spec.is_fact else (),
                    description=what)
    def _check(context, keys):
        storage = context.resources.lake.storage
        if not spec.is_fact:
            counts = {"bronze_rows": _rows(storage, [f.path for f in BRONZE[name].data_files(storage)]),
                      "silver_rows": _rows(storage, [f.path for f in SILVER[name].data_files(storage)]),
                      "quarantined": _rows(storage, _stage_files(storage, name, "silver"))}
            lost = abs(counts["bronze_rows"] - counts["silver_rows"] - counts["quarantined"])
            return AssetCheckResult(passed=lost == 0, metadata=counts), lost
        session = context.resources.spark.spark_session
        date_dim = read_files(session, storage, SILVER["date_dim"], schemas.SILVER["date_dim"])
        bronze = {r[0]: r[1] for r in located(session, storage, spec, date_dim)  # month -> count: never rows
                  .where(F.col(PARTITION).isin(*keys)).groupBy(PARTITION).count().collect()}
        base = len(SILVER[name].location) + 1
        files: dict[str, list[str]] = {}
        for f in SILVER[name].data_files(storage):
            files.setdefault(partition_of(f.path[base:]), []).append(f.path)
        broken, totals = {}, {"bronze_rows": 0, "silver_rows": 0, "quarantined": 0}
        for month in keys:
            counts = {"bronze_rows": bronze.get(month, 0), "silver_rows": _rows(storage, files.get(month, [])),
                      "quarantined": _rows(storage, [quarantine_file(name, "silver", month)])}
            totals = {k: totals[k] + v for k, v in counts.items()}
            if counts["bronze_rows"] != counts["silver_rows"] + counts["quarantined"]:
                broken[month] = counts
        lost = sum(abs(c["bronze_rows"] - c["silver_rows"] - c["quarantined"]) for c in broken.values())
        return AssetCheckResult(passed=not broken, metadata={
            **totals, "months": len(keys), "mismatched_months": MetadataValue.json(broken)}), lost

    return _check


def quarantine_rate(spec: TableSpec, settings: LakeSettings) -> AssetChecksDefinition:
    name, asset = spec.name, f"tpcds_silver_{spec.name}"

    @recorded_check(asset=asset, name=f"{asset}_quarantine_rate", dataset=METRICS, blocking=True,
                    partitions_def=_months(spec),
                    description=f"The share of {name}'s lines quarantined for breaking a rule (bronze's and "
                                f"silver's; a row replaced by a later delivery is not bad), against "
                                f"LAKE_QUARANTINE_RATE_WARN/ERROR ({settings.quarantine_rate.warn}/"
                                f"{settings.quarantine_rate.error}).")
    def _check(context, _keys):
        storage = context.resources.lake.storage
        bronze_bad = _rows(storage, _stage_files(storage, name, "bronze"))
        silver_files = _stage_files(storage, name, "silver")
        replaced = reason_counts(storage, silver_files).get("duplicate", 0) if silver_files else 0
        silver_bad = _rows(storage, silver_files) - replaced
        lines = bronze_bad + _rows(storage, [f.path for f in BRONZE[name].data_files(storage)])
        return rate_result(bronze_bad + silver_bad, lines - replaced, settings.quarantine_rate,
                           bronze_quarantined=bronze_bad, silver_quarantined=silver_bad,
                           replaced_duplicates=replaced), bronze_bad + silver_bad

    return _check


def _silver_pandera(spec: TableSpec) -> pa.DataFrameSchema:
    """The silver schema with the primary key never NULL (rule 1) and a fact's measures never negative (rule 2)."""
    struct = schemas.SILVER[spec.name]
    keyed = T.StructType([T.StructField(f.name, f.dataType, f.nullable and f.name not in spec.primary_key)
                          for f in struct.fields])
    return pandera_schema(keyed, {m: [pa.Check.ge(0)] for m in spec.measures})


def silver_checks(spec: TableSpec, settings: LakeSettings) -> list[AssetChecksDefinition]:
    name, asset = spec.name, f"tpcds_silver_{spec.name}"
    refs = []
    if spec.is_fact:
        date_dim = stored(SILVER["date_dim"], schemas.SILVER["date_dim"])
        refs = [Reference(k, date_dim, "tpcds_silver_date_dim", "d_date_sk") for k in spec.date_keys]
        refs.append(Reference(spec.item_key, stored(SILVER["item"], schemas.SILVER["item"]),
                              "tpcds_silver_item", "i_item_sk"))
    return [
        silver_accounted(spec),
        # The schema sees the table as stored; the keys read it with silver's declared types.
        # Per month for a fact: the months a run built (their keys unique within them: the dedup is
        # over the whole table, so a key is in one month), and their items and dates in the dimensions.
        table_checks(asset, stored(SILVER[name]), _silver_pandera(spec), spec.primary_key, refs=refs,
                     keys_table=stored(SILVER[name], schemas.SILVER[name]), dataset=METRICS,
                     partitions_def=_months(spec)),
        quarantine_rate(spec, settings),
    ]


# -- gold -------------------------------------------------------------------------------------------------------
_GOLD_VALUES = {
    "daily_sales_summary": {"channel": [pa.Check.isin(list(SALES))], "orders": [pa.Check.ge(0)]},
    "customer_lifetime_value": {"segment": [pa.Check.isin(["platinum", "gold", "silver", "bronze"])],
                                "value_rank": [pa.Check.ge(1)], "channels": [pa.Check.ge(1)]},
    "product_performance": {"category_rank": [pa.Check.ge(1)]},
    "monthly_trends": {"channel": [pa.Check.isin(list(SALES))]},
}


def gold_checks() -> list[AssetChecksDefinition]:
    """Each gold table's schema: per month for the monthly tables (the months a run built)."""
    return [schema_check(f"tpcds_{name}", stored(table), pandera_schema(schemas.GOLD[name], _GOLD_VALUES[name]),
                         dataset=METRICS, partitions_def=data_partitions(MONTHS) if table.partitioning else None)
            for name, table in GOLD.items()]


@functools.lru_cache
def build(settings: LakeSettings) -> dict:
    bronze = [bronze_accounted(spec, settings) for spec in TABLES.values()]
    silver = [c for spec in TABLES.values() for c in silver_checks(spec, settings)]
    return {"TPCDS_CHECKS": [*bronze, *silver, *gold_checks()]}


__getattr__ = module_built_from_env(build)
