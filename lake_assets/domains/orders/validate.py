"""Validation of one landing set (the seed's Lambda + Glue data-quality job), in Spark.

For a committed landing set:

1. every row gets the list of rules it breaks (:data:`RULE_NAMES`);
2. rows breaking any go to ``discarded/orders/<set>/part-00000.parquet`` with
   ``reason`` (the first) and ``reasons`` (all);
3. silver, the current state of each valid order by ``order_date``, is merged:
   for every order in the set, the newest version known anywhere (silver, this
   set, or a discarded version) wins, by ``updated_at`` then extraction time;
   if that version is invalid the order leaves silver. Only the partitions
   holding those orders are rewritten, each published whole (one file, atomic);
4. the set's files are copied unchanged to ``archive/orders/<set>/`` and only
   then removed from the landing zone (manifest first).

Every step is a replace, so processing a set again (a retry, a re-request after a
crash, sets processed out of order) gives the same silver and discarded files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

from dagster import Failure
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.domains.orders import zones
from lake_assets.domains.orders.extract import SOURCE_COLUMNS
from lake_assets.domains.orders.source import VALID_STATUSES
from lake_assets.lake import LakeStorage
from lake_assets.lake.layout import join
from lake_assets.quality.rules import Rule, reasons_column
from lake_assets.spark import SparkStage, spark_paths

LINEAGE = ["_extracted_at", "_extract_run_id"]
SILVER_COLUMNS = SOURCE_COLUMNS + LINEAGE
DISCARDED_COLUMNS = SOURCE_COLUMNS + ["reason", "reasons"] + LINEAGE + ["_landing_set"]

#: The rules in the order reasons are listed; the first broken one is a row's ``reason``.
RULE_NAMES = ["order_id_missing", "status_invalid", "amount_missing", "amount_negative", "amount_too_large",
              "currency_invalid", "order_ts_missing"]

DEFAULT_AMOUNT_MAX = Decimal("1000000")


def amount_max() -> Decimal:
    """ORDERS_AMOUNT_MAX: the largest sane order amount (default 1,000,000)."""
    return Decimal(os.environ.get("ORDERS_AMOUNT_MAX") or DEFAULT_AMOUNT_MAX)


def order_rules(max_amount: Decimal) -> list[Rule]:
    amount = F.col("amount")
    currency = F.col("currency")
    status = F.col("status")
    rules = [
        Rule("order_id_missing", F.col("order_id").isNull()),
        Rule("status_invalid", status.isNull() | ~status.isin(*VALID_STATUSES)),
        Rule("amount_missing", amount.isNull()),
        Rule("amount_negative", amount < F.lit(0)),
        Rule("amount_too_large", amount > F.lit(max_amount).cast(T.DecimalType(12, 2))),
        Rule("currency_invalid", currency.isNull() | ~currency.rlike("^[A-Z]{3}$")),
        Rule("order_ts_missing", F.col("order_ts").isNull()),
    ]
    assert [r.name for r in rules] == RULE_NAMES
    return rules


@dataclass
class ValidateResult:
    set_name: str
    source_folder: str
    rows: int = 0
    valid: int = 0
    discarded: int = 0
    silver_written: list[str] = field(default_factory=list)  # order_date partitions rewritten
    silver_removed: list[str] = field(default_factory=list)  # partitions left empty, deleted
    archived: list[str] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)


def _parquet_files(storage: LakeStorage, prefix: str) -> list[str]:
    return [f.path for f in storage.list_files(prefix) if f.path.endswith(".parquet")]


def _read(spark: SparkSession, storage: LakeStorage, files: list[str], schema: T.StructType) -> DataFrame:
    if not files:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(*spark_paths(storage, files))


#: Silver's columns (the partition column order_date lives in the path, as Athena expects).
SILVER_SCHEMA = T.StructType([
    T.StructField("order_id", T.LongType()), T.StructField("customer_id", T.StringType()),
    T.StructField("status", T.StringType()), T.StructField("amount", T.DecimalType(12, 2)),
    T.StructField("currency", T.StringType()), T.StructField("order_ts", T.TimestampType()),
    T.StructField("updated_at", T.TimestampType()), T.StructField("_extracted_at", T.TimestampType()),
    T.StructField("_extract_run_id", T.StringType()),
])
_BY_NAME = {f.name: f for f in SILVER_SCHEMA.fields}
DISCARDED_SCHEMA = T.StructType(
    [_BY_NAME[c] for c in SOURCE_COLUMNS]
    + [T.StructField("reason", T.StringType()), T.StructField("reasons", T.ArrayType(T.StringType()))]
    + [_BY_NAME[c] for c in LINEAGE] + [T.StructField("_landing_set", T.StringType())])
assert DISCARDED_SCHEMA.names == DISCARDED_COLUMNS


def read_silver(spark: SparkSession, storage: LakeStorage) -> DataFrame:
    """Silver as stored, with ``order_date`` (the partition a row lives in: its order_ts's UTC date)."""
    df = _read(spark, storage, _parquet_files(storage, zones.SILVER), SILVER_SCHEMA)
    return df.withColumn("order_date", F.to_date("order_ts"))


def read_discarded(spark: SparkSession, storage: LakeStorage) -> DataFrame:
    return _read(spark, storage, _parquet_files(storage, zones.DISCARDED), DISCARDED_SCHEMA)


def read_archive(spark: SparkSession, storage: LakeStorage) -> DataFrame:
    """Every archived landing row (the full extracts, the source of truth)."""
    return _read(spark, storage, _parquet_files(storage, zones.ARCHIVE), SILVER_SCHEMA)


def _write_files(storage: LakeStorage, df: DataFrame, partition_by: str | None = None) -> tuple[SparkStage, dict]:
    """Write into a stage; return it and the staged files by partition value (None: unpartitioned)."""
    stage = SparkStage.create(storage)
    writer = (df.repartition(partition_by) if partition_by else df.coalesce(1)).write.mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.parquet(stage.spark_uri)
    staged: dict = {}
    for f in stage.files():
        key = f.path.split(f"{partition_by}=", 1)[1].split("/", 1)[0] if partition_by else None
        staged.setdefault(key, []).append(f)
    if any(len(v) > 1 for v in staged.values()):
        stage.cleanup()
        raise RuntimeError(f"Spark wrote several files for one partition: {staged}")
    return stage, staged


def validate_set(spark: SparkSession, storage: LakeStorage, name: str, *, max_amount: Decimal | None = None,
                 log: Callable[[str], None] = lambda _: None) -> ValidateResult:
    """Route one landing set to silver and discarded, then archive it (see the module's docstring)."""
    folder = zones.set_location(storage, name)
    if folder is None:
        raise Failure(f"landing set {name!r} has no manifest in {zones.LANDING}/ or {zones.ARCHIVE}/")
    manifest = zones.read_manifest(storage, folder)
    out = ValidateResult(name, folder, manifest=manifest)
    parts = [join(folder, f["path"]) for f in manifest["files"]]
    rules = order_rules(max_amount if max_amount is not None else amount_max())
    landed = _read(spark, storage, parts, SILVER_SCHEMA)
    checked = landed.withColumn("reasons", reasons_column(rules)).persist()
    try:
        counts = checked.agg(F.count(F.lit(1)).alias("rows"),
                             F.count(F.when(F.size("reasons") == 0, 1)).alias("valid")).first()
        out.rows, out.valid = int(counts["rows"]), int(counts["valid"])
        out.discarded = out.rows - out.valid
        if out.rows != manifest["rows"]:
            raise Failure(f"{folder}: read {out.rows} rows, its manifest says {manifest['rows']}")
        log(f"{name}: {out.rows} row(s), {out.valid} valid, {out.discarded} discarded")

        # 1. discarded rows of this set: one file, replaced whole.
        bad = checked.where(F.size("reasons") > 0).select(
            *SOURCE_COLUMNS, F.col("reasons")[0].alias("reason"), "reasons", *LINEAGE,
            F.lit(name).alias("_landing_set"))
        stage, staged = _write_files(storage, bad)
        try:
            if staged.get(None):
                stage.publish(staged[None][0], zones.discarded_file(name))
        finally:
            stage.cleanup()

        # 2. silver: the newest version of every order in the set, wherever it is known.
        _merge_silver(spark, storage, checked, out, log)
    finally:
        checked.unpersist()

    # 3. archive unchanged, then clear the landing folder (manifest first: no half set stays committed).
    archive = zones.archive_folder(name)
    if folder != archive:
        for rel in parts + [join(folder, zones.MANIFEST)]:
            dest = join(archive, rel.rsplit("/", 1)[1])
            storage.copy(rel, dest)
            out.archived.append(dest)
        storage.delete(join(folder, zones.MANIFEST))
        for rel in parts:
            storage.delete(rel)
    landing = zones.landing_folder(name)
    if storage.exists(landing):
        storage.delete_dir(landing)
    log(f"{name}: archived to {archive}; silver partitions rewritten {out.silver_written}, "
        f"emptied {out.silver_removed}")
    return out


def _merge_silver(spark: SparkSession, storage: LakeStorage, checked: DataFrame, out: ValidateResult,
                  log: Callable[[str], None]) -> None:
    silver = read_silver(spark, storage)
    affected = checked.where(F.col("order_id").isNotNull()).select("order_id").distinct()
    silver_hit = silver.join(affected, "order_id", "left_semi")
    discarded = read_discarded(spark, storage).join(affected, "order_id", "left_semi")
    candidates = (
        silver_hit.select(*SILVER_COLUMNS, F.lit(True).alias("_valid"))
        .unionByName(checked.where(F.size("reasons") == 0).select(*SILVER_COLUMNS, F.lit(True).alias("_valid")))
        .unionByName(discarded.select(
            *[F.col(f.name) if f.name in ("order_id", "updated_at", "_extracted_at")
              else F.lit(None).cast(f.dataType).alias(f.name) for f in SILVER_SCHEMA.fields],
            F.lit(False).alias("_valid")))
    )
    # The newest version per order: the greatest (updated_at, extracted at, invalid) triple, an
    # invalid version winning a tie with a valid one; one hash aggregation, no sort.
    rest = [c for c in SILVER_COLUMNS if c not in ("order_id", "updated_at", "_extracted_at")]
    newest = F.max(F.struct(F.col("updated_at"), F.col("_extracted_at"), (~F.col("_valid")).alias("_invalid"),
                            *[F.col(c) for c in rest])).alias("v")
    winners = (candidates.groupBy("order_id").agg(newest)
               .where(~F.col("v._invalid"))
               .select("order_id", *[F.col(f"v.{c}").alias(c) for c in ("updated_at", "_extracted_at", *rest)])
               .select(*SILVER_COLUMNS).withColumn("order_date", F.to_date("order_ts")))
    # The orders of one set: computed once, used for the partitions to rewrite and for the write.
    winners = winners.persist()
    old_days = silver_hit.select("order_date").distinct().persist()
    try:
        days = sorted({r["order_date"].isoformat() for r in
                       old_days.union(winners.select("order_date")).distinct().collect()})
        if not days:
            return
        log(f"silver: merging {winners.count()} order(s) into partition(s) {days}")
        keep = (silver.where(F.col("order_date").isin(*days)).join(affected, "order_id", "left_anti")
                .select(*SILVER_COLUMNS, "order_date"))
        _publish_silver(storage, keep.unionByName(winners), days, out)
    finally:
        winners.unpersist()
        old_days.unpersist()


def _publish_silver(storage: LakeStorage, merged: DataFrame, days: list[str], out: ValidateResult) -> None:
    """Each rewritten partition replaced whole (one file); a partition left without rows is deleted."""
    stage, staged = _write_files(storage, merged, partition_by="order_date")
    try:
        for day in days:
            dest = zones.silver_file(day)
            if staged.get(day):
                stage.publish(staged[day][0], dest)
                out.silver_written.append(day)
            else:
                storage.delete(dest)
                out.silver_removed.append(day)
    finally:
        stage.cleanup()
