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

Types are the source's (see ``extract.py``): a set is read with the schema its
manifest records; silver, discarded and the archive are read as their files are,
their schemas merged by name, so a column a later source gained is null in rows
extracted before it. Silver's columns are the set's then any only older silver
rows have, then the lineage; :class:`ValidateResult` carries the schemas each
table has after the run, for the catalog.
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
from lake_assets.domains.orders.extract import DEFAULT_LANDING, LINEAGE
from lake_assets.domains.orders.source import VALID_STATUSES
from lake_assets.io_managers import publish_partitions
from lake_assets.lake import LakeStorage
from lake_assets.lake.layout import join
from lake_assets.quality.rules import Rule, reasons_column
from lake_assets.spark import spark_paths

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
        # The limit as its own decimal (a cast to the column's precision could overflow to null).
        Rule("amount_too_large", amount > F.lit(max_amount)),
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
    silver_rows: dict[str, int] = field(default_factory=dict)  # rows of each partition written
    archived: list[str] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    # Each table's schema after the run (its files' columns merged): what the catalog registers
    # (``tables.with_schema``), the declared ones being the default source's.
    silver_schema: T.StructType | None = None
    discarded_schema: T.StructType | None = None
    archive_schema: T.StructType | None = None


def _parquet_files(storage: LakeStorage, prefix: str) -> list[str]:
    return [f.path for f in storage.list_files(prefix) if f.path.endswith(".parquet")]


def _read(spark: SparkSession, storage: LakeStorage, files: list[str], empty: T.StructType) -> DataFrame:
    """Files as written, their schemas merged by name (a column some lack is null there); ``empty``:
    the schema of the empty frame when there are no files."""
    if not files:
        return spark.createDataFrame([], empty)
    return spark.read.option("mergeSchema", "true").parquet(*spark_paths(storage, files))


def discarded_schema(silver: T.StructType) -> T.StructType:
    """Discarded's columns for a silver schema: the source's, the reasons, the lineage, the landing set."""
    return T.StructType(
        [f for f in silver.fields if f.name not in LINEAGE]
        + [T.StructField("reason", T.StringType()), T.StructField("reasons", T.ArrayType(T.StringType()))]
        + [f for f in silver.fields if f.name in LINEAGE] + [T.StructField("_landing_set", T.StringType())])


#: Silver's and the archive's declared columns: the default source's (the partition column order_date
#: lives in the path, as Athena expects). A source with other types or more columns writes its own.
SILVER_SCHEMA = DEFAULT_LANDING.spark_schema
DISCARDED_SCHEMA = discarded_schema(SILVER_SCHEMA)


def set_schema(manifest: dict) -> T.StructType:
    """The schema a set was landed with (sets landed before manifests recorded it: the default's)."""
    return T.StructType.fromJson(manifest["schema"]) if "schema" in manifest else SILVER_SCHEMA


def read_silver(spark: SparkSession, storage: LakeStorage, empty: T.StructType = SILVER_SCHEMA) -> DataFrame:
    """Silver as stored, with ``order_date`` (the partition a row lives in: its order_ts's UTC date)."""
    df = _read(spark, storage, _parquet_files(storage, zones.SILVER), empty)
    return df.withColumn("order_date", F.to_date("order_ts"))


def read_discarded(spark: SparkSession, storage: LakeStorage, empty: T.StructType = DISCARDED_SCHEMA) -> DataFrame:
    return _read(spark, storage, _parquet_files(storage, zones.DISCARDED), empty)


def read_archive(spark: SparkSession, storage: LakeStorage, empty: T.StructType = SILVER_SCHEMA) -> DataFrame:
    """Every archived landing row (the full extracts, the source of truth)."""
    return _read(spark, storage, _parquet_files(storage, zones.ARCHIVE), empty)


def _conform(df: DataFrame, fields: list[T.StructField]) -> DataFrame:
    """``df`` as exactly ``fields``, in their order: a column it lacks is null, one it has cast to the field's type."""
    have = set(df.columns)
    return df.select(*[(F.col(f.name) if f.name in have else F.lit(None)).cast(f.dataType).alias(f.name)
                       for f in fields])


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
    schema = set_schema(manifest)
    landed = spark.read.schema(schema).parquet(*spark_paths(storage, parts))
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
        bad = _conform(checked.where(F.size("reasons") > 0).withColumn("reason", F.col("reasons")[0])
                       .withColumn("_landing_set", F.lit(name)), discarded_schema(schema).fields)
        # (One partition, "set", published whole by the lake's one publisher; a set without
        # discarded rows gets an empty file with its columns, as every partition does.)
        publish_partitions(storage, bad.withColumn("lake_partition", F.lit("set")), "lake_partition", ["set"],
                           lambda _: zones.discarded_file(name))

        # 2. silver: the newest version of every order in the set, wherever it is known.
        _merge_silver(spark, storage, checked, schema, out, log)
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
    out.discarded_schema = read_discarded(spark, storage, discarded_schema(schema)).schema
    out.archive_schema = read_archive(spark, storage, schema).schema
    log(f"{name}: archived to {archive}; silver partitions rewritten {out.silver_written}, "
        f"emptied {out.silver_removed}")
    return out


def _merge_silver(spark: SparkSession, storage: LakeStorage, checked: DataFrame, schema: T.StructType,
                  out: ValidateResult, log: Callable[[str], None]) -> None:
    silver = read_silver(spark, storage, schema)
    stored, incoming = silver.schema["order_id"].dataType, schema["order_id"].dataType
    if stored != incoming:
        # A source whose key changed kind (bigint <-> text) cannot be merged row by row: say so plainly.
        raise Failure(f"{out.set_name}: order_id is {incoming.simpleString()} in this set but "
                      f"{stored.simpleString()} in silver ({zones.SILVER}); the source's key changed type. "
                      "Rebuild silver from the archive with the new type, or restore the source's key type")
    # The set's columns, then any only stored silver rows have (a column the source dropped), then lineage.
    known = set(schema.names) | {"order_date"}
    fields = ([f for f in schema.fields if f.name not in LINEAGE]
              + [f for f in silver.schema.fields if f.name not in known]
              + [f for f in schema.fields if f.name in LINEAGE])
    out.silver_schema = T.StructType(fields)
    columns = [f.name for f in fields]
    affected = checked.where(F.col("order_id").isNotNull()).select("order_id").distinct()
    silver_hit = silver.join(affected, "order_id", "left_semi")
    discarded = read_discarded(spark, storage, discarded_schema(schema)).join(affected, "order_id", "left_semi")
    candidates = (
        _conform(silver_hit, fields).withColumn("_valid", F.lit(True))
        .unionByName(_conform(checked.where(F.size("reasons") == 0), fields).withColumn("_valid", F.lit(True)))
        .unionByName(_conform(discarded.select("order_id", "updated_at", "_extracted_at"), fields)
                     .withColumn("_valid", F.lit(False)))
    )
    # The newest version per order: the greatest (updated_at, extracted at, invalid) triple, an
    # invalid version winning a tie with a valid one; one hash aggregation, no sort.
    rest = [c for c in columns if c not in ("order_id", "updated_at", "_extracted_at")]
    newest = F.max(F.struct(F.col("updated_at"), F.col("_extracted_at"), (~F.col("_valid")).alias("_invalid"),
                            *[F.col(c) for c in rest])).alias("v")
    winners = (candidates.groupBy("order_id").agg(newest)
               .where(~F.col("v._invalid"))
               .select("order_id", *[F.col(f"v.{c}").alias(c) for c in ("updated_at", "_extracted_at", *rest)])
               .select(*columns).withColumn("order_date", F.to_date("order_ts")))
    # The orders of one set: computed once, used for the partitions to rewrite and for the write.
    winners = winners.persist()
    old_days = silver_hit.select("order_date").distinct().persist()
    try:
        days = sorted({r["order_date"].isoformat() for r in
                       old_days.union(winners.select("order_date")).distinct().collect()})
        if not days:
            return
        log(f"silver: merging {winners.count()} order(s) into partition(s) {days}")
        keep = _conform(silver.where(F.col("order_date").isin(*days)).join(affected, "order_id", "left_anti"),
                        fields + [T.StructField("order_date", T.DateType())])
        _publish_silver(storage, keep.unionByName(winners), days, out)
    finally:
        winners.unpersist()
        old_days.unpersist()


def _publish_silver(storage: LakeStorage, merged: DataFrame, days: list[str], out: ValidateResult) -> None:
    """Each rewritten partition replaced whole (one file); a partition left without rows is deleted."""
    counts, _ = publish_partitions(storage, merged, "order_date", days, zones.silver_file, when_empty="delete")
    out.silver_written += [d for d in days if counts[d]]
    out.silver_removed += [d for d in days if not counts[d]]
    out.silver_rows.update({d: n for d, n in counts.items() if n})