"""The TPC-DS sales lake as Dagster assets: raw dsdgen files -> bronze -> silver (+ quarantine) -> gold.

* **Landing** (``tpcds_landing_<table>``, daily by ingest date): the shared
  ingestion (``ingest_tpcds_job``, started by ``tpcds_landing_sensor``) takes
  each file of ``raw/tpcds/<table>/``, converts its lines to a validated Parquet
  file of numbered lines, archives it and empties ``raw/``; an unreadable file
  goes whole to ``quarantine/tpcds/_files/``. The same bytes under any name are
  one delivery (archived, adding nothing).
* **Bronze** (``tpcds_bronze_<table>``, daily by ingest date): each landed file's
  lines typed from the DDL into ``bronze/tpcds/<table>/<sha256>.parquet``;
  lines that do not convert go to ``quarantine/tpcds/<table>/stage=bronze/``.
* **Silver** (``tpcds_silver_<table>``): standardised, checked and deduplicated
  over the whole table. A dimension is one file, rebuilt whole when its bronze
  changed. A fact is stored by month (``sold_month=`` ...), and its months are
  Dagster partitions (``tpcds_month``, dynamic: the months come from the rows,
  so they are added as rows bring them). ``tpcds_silver_plan`` (after bronze
  and the date_dim/item silver) works out which months a delivery touches: its
  rows' months, the months of the rows they replace and, for a ``date_dim`` or
  ``item`` delivery, the months of the fact rows referring to its keys, where
  they were and where they go (:mod:`~lake_assets.domains.tpcds.increments`).
  It reports each as a materialization of that month of
  ``tpcds_changes_<fact>``, which is what the fact's silver rebuilds (its
  ``CHANGES_FROM``): the automation and ``lake run`` rebuild exactly those
  months, a range of them in one run and one Spark job per asset. Rejected rows
  go to ``quarantine/tpcds/<table>/stage=silver/part-<month>.parquet``.
* **Gold**: ``daily_sales_summary`` and ``product_performance`` are partitioned
  by the same months (a month rebuilt when a fact's month was);
  ``customer_lifetime_value`` and ``monthly_trends`` are rebuilt whole when any
  input changed.

Every write goes through the shared publishing (:func:`~lake_assets.io_managers.publish_partitions`:
staged, one atomic rename or PUT per file) and is registered in the catalog.
"""

import datetime as dt
import functools
import json
from functools import reduce
from typing import Any, Callable, Iterable

from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake_assets.automation import REBUILD_ON_UPSTREAM_CHANGE, REBUILD_ON_WINDOW_CHANGE, rebuild_on_changes_from
from lake_assets.catalog.resource import CatalogResource
from lake_assets.catalog.tables import Table, tables_metadata
from lake_assets.domains.tpcds import bronze as bronze_rules
from lake_assets.domains.tpcds import gold, increments, schemas, silver
from lake_assets.domains.tpcds.silver import PARTITION
from lake_assets.domains.tpcds.spec import DIMENSIONS, FACTS, TABLES, TableSpec
from lake_assets.domains.tpcds.tables import BRONZE, GOLD, QUARANTINE, SILVER
from lake_assets.ingest.lines import dsdgen_format, no_date
from lake_assets.ingest.jobs import LandingSpec, build_ingest_job, build_landing_sensor
from lake_assets.ingest.router import Zones
from lake_assets.ingest.validated import read_validated_text, validated_files
from lake_assets.io_managers import publish_partitions
from lake_assets.lake import LakeStorage
from lake_assets.lake.layout import join
from lake_assets.partitions import add_keys, daily_partitions, data_partitions
from lake_assets.quality import metrics
from lake_assets.resources import LakeResource
from lake_assets.settings import LakeSettings, module_built_from_env
from lake_assets.spark import kept, spark_paths
from lake_assets.staleness import CHANGES_FROM, UNCHANGED, changed_partitions

GROUP_LANDING, GROUP_BRONZE, GROUP_SILVER, GROUP_GOLD = "tpcds_landing", "tpcds_bronze", "tpcds_silver", "tpcds_gold"
#: The metrics zone's dataset of every tpcds table (``metrics/tpcds/<asset>/``).
METRICS = "tpcds"

#: raw/tpcds/<table>/ -> the dsdgen line format of that table.
FORMATS = {name: dsdgen_format(name) for name in TABLES}
ZONES = Zones(
    raw="raw/tpcds",
    validated="bronze/tpcds/_lines/{format}",
    archive="archive/tpcds/{format}",
    rejected_files="quarantine/tpcds/_files",
    manifests="bronze/tpcds/_manifests/{format}",
    archive_name="{name}_{token}_{run_id}",
)


LANDING = LandingSpec(
    name="tpcds",
    formats=FORMATS,
    date_of=no_date,  # a dsdgen line carries no date of its own (its keys need date_dim): the ingest date
    validated_asset={name: AssetKey(f"tpcds_landing_{name}") for name in TABLES},
    zones=ZONES,
)

#: The value an unpartitioned table's rows carry in :data:`PARTITION` while they are published.
WHOLE = "all"


# -- reading and writing the zones -------------------------------------------------------------
def read_files(spark, storage: LakeStorage, table: Table, schema=None, months: Iterable[str] | None = None,
               file_column: str | None = None, paths: Iterable[str] | None = None) -> DataFrame:
    """A table's data files (those of ``months`` only, or those at ``paths`` under the table's location,
    when given) with ``schema``; empty if none.

    ``schema`` None reads the files as stored (the first file's footer: what a check must see).
    ``file_column`` adds each row's file name (bronze: which delivery a row came from).
    """
    from lake_assets.io_managers import stored_schema

    wanted = None if months is None else set(months)
    only = None if paths is None else set(paths)
    base = len(table.location) + 1
    files = [f.path for f in table.data_files(storage)
             if (wanted is None or increments.partition_of(f.path[base:]) in wanted)
             and (only is None or f.path[base:] in only)]
    if not files:
        df = spark.createDataFrame([], schema or table.schema)
        return df.withColumn(file_column, F.lit(None).cast("string")) if file_column else df
    schema = schema or stored_schema(storage, files[0])
    reader = spark.read if schema is None else spark.read.schema(schema)
    df = reader.parquet(*spark_paths(storage, files))
    return df.withColumn(file_column, F.col("_metadata.file_name")) if file_column else df


def _dest(table: Table, key: str) -> str:
    """The file of one partition value of a table (:data:`WHOLE`: an unpartitioned table's one file)."""
    return table.file_path("" if key == WHOLE else table.partition_path([key]))


def publish(storage: LakeStorage, catalog: CatalogResource, table: Table, df: DataFrame, keys: list[str], *,
            sort_within: tuple[str, ...] = (), any_key: bool = False) -> dict[str, int]:
    """Publish ``df`` (with :data:`PARTITION`) as the partitions ``keys`` of ``table`` and register them
    (``any_key``: and every other partition its rows hold, see :func:`publish_partitions`).

    A month left without rows loses its file (its rows moved or went to quarantine);
    an unpartitioned table with no rows is an empty file with its schema. An unpartitioned table's
    file is written by every task in parallel and merged (no shuffle of the whole table into one task).
    """
    whole = keys == [WHOLE]
    counts, _ = publish_partitions(storage, df, PARTITION, keys, lambda k: _dest(table, k),
                                   when_empty="write" if whole else "delete", sort_within=sort_within,
                                   any_key=any_key, shuffle=not whole)
    catalog.register(storage, table, {("" if k == WHOLE else table.partition_path([k])): n
                                      for k, n in counts.items()})
    return counts


def quarantine_file(name: str, stage: str, key: str) -> str:
    """A stage's quarantine file of one key (a bronze file's sha, a silver month): ``part-<key>.parquet``
    (a bare ``__HIVE_DEFAULT_PARTITION__.parquet`` would be hidden: readers skip names starting with ``_``)."""
    return join(QUARANTINE[name].location, f"stage={stage}", f"part-{key}.parquet")


def _quarantine(storage: LakeStorage, name: str, stage: str, df: DataFrame | None, keys: list[str],
                any_key: bool = False) -> dict[str, int]:
    """Publish a stage's quarantine rows of ``keys`` (a bronze file's sha, a silver month) to their files;
    ``df`` None: there are none, the keys' files go (no Spark)."""
    if df is None:
        for k in keys:
            if storage.exists(quarantine_file(name, stage, k)):
                storage.delete(quarantine_file(name, stage, k))
        return {k: 0 for k in keys}
    counts, _ = publish_partitions(storage, df, PARTITION, keys, lambda k: quarantine_file(name, stage, k),
                                   when_empty="delete", sort_within=("line",), any_key=any_key)
    return counts


def write_split(parsed: DataFrame, write_rows: Callable[[DataFrame], dict[str, int]],
                write_rejects: Callable[[DataFrame, list[str]], dict[str, int]],
                reject_keys: Callable[[dict[str, int]], list[str]], *, cache: bool = False
                ) -> tuple[dict[str, int], dict[str, int]]:
    """A parse's rows and its rejects (``reasons`` not empty) written in as few Spark jobs as the data allows.

    The rows' write counts the rejects as it goes (an observation, the house's one-pass way), so
    a second job, reading the parse again (or its cache), runs only when there are rejects; without
    any, the rejects of the keys written are cleared with no Spark at all (most tables, most runs).
    ``write_rows(frame)`` returns rows per key; ``reject_keys(rows)`` the keys whose rejects to
    (re)write; ``write_rejects(parse, keys)`` rejects per key (a key without any loses its file).
    ``cache``: the parse is kept from the first job for the second (released when both are done),
    which then reads it instead of parsing again: worth it where parsing costs more than keeping
    every row (see :data:`CACHED_PARSE_LINES`).
    """
    from pyspark.sql import Observation

    with kept(parsed, cache) as parsed:
        seen = Observation()
        rows = write_rows(parsed.observe(seen, F.count(F.when(F.size("reasons") > 0, 1)).alias("rejected")))
        keys = reject_keys(rows)
        try:
            rejected = seen.get["rejected"]
        except Exception:  # noqa: BLE001 (py4j's or Connect's error, the same cause)
            # Nothing to observe: when the rows' write finds none (a month all of whose rows moved away or
            # were rejected), Spark prunes the empty plan and its observation with it. Unknown, so look.
            rejected = None
        if rejected is None or rejected:
            return rows, write_rejects(parsed, keys)
        return rows, write_rejects(None, keys)


#: Bronze keeps a delivery's parse between its rows' job and its rejects' job up to this many lines
#: (a small or daily delivery, and every dimension but the largest): parsing again would cost more than
#: holding the rows (dsdgen's fixed date_dim and time_dim, 73 k and 86 k wide lines, take seconds to
#: parse). A bigger delivery is parsed again for its rejects, which are rare: caching every line of
#: a fact at scale factor 1 costs more than the second parse, and most deliveries have none.
CACHED_PARSE_LINES = 250_000


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _table_metrics(storage: LakeStorage, table: Table, keys: list[str], quarantine: dict[str, str],
                   rules: tuple[str, ...]) -> dict[str | None, list[metrics.Metric]]:
    """Rows and null rates of each written partition, with its quarantined rows and each rule's outcome."""
    out: dict[str | None, list[metrics.Metric]] = {}
    for key in keys:
        path = _dest(table, key)
        if not storage.exists(path):
            continue
        found = metrics.files_metrics(storage, {"": path})
        kept = int(next(m.value for m in found if m.name == "rows"))
        rejected = quarantine.get(key)
        found += metrics.reject_metrics(storage, kept, [rejected] if rejected and storage.exists(rejected) else [],
                                        rules)
        out[None if key == WHOLE else key] = found
    return out


# -- bronze --------------------------------------------------------------------------------------
def landed_sha(landed) -> str:
    """The sha256 of a landed file's raw file (its validated file's name): its bronze file's name."""
    return landed.path.rsplit("/", 1)[-1].split(".", 1)[0]


def build_bronze(spec: TableSpec, partitions, landing: AssetSpec) -> AssetsDefinition:
    """``tpcds_bronze_<table>`` for a range of ingest dates: every file landed then, typed, in one Spark job each."""
    name = spec.name
    table = BRONZE[name]

    @asset(name=f"tpcds_bronze_{name}", deps=[landing], partitions_def=partitions,
           backfill_policy=BackfillPolicy.single_run(), group_name=GROUP_BRONZE, kinds={"spark", "parquet"},
           automation_condition=REBUILD_ON_UPSTREAM_CHANGE, metadata=table.asset_metadata(),
           description=f"{name} lines typed from the TPC-DS DDL (bronze/tpcds/{name}/<sha256>.parquet, one file "
                       f"per raw file, with _source_file, _line, _ingest_run_id, _ingested_at); lines that do not "
                       f"convert go to quarantine/tpcds/{name}/stage=bronze/ with their reasons.")
    def _bronze(context: AssetExecutionContext, spark: LazyPySparkResource, lake: LakeResource,
                catalog: CatalogResource) -> MaterializeResult:
        storage, session = lake.storage, spark.spark_session
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        landed = validated_files(storage, days, (FORMATS[name],), ZONES)
        # A bronze file is a function of its landed file alone: one newer than its landed file is up to
        # date, and is left as it is (a later delivery the same day converts only itself, so silver sees
        # only it as new).
        converted = {f.name: f.mtime_ns for f in table.data_files(storage)}
        landed_at = {f.path: f.mtime_ns for f in storage.list_files(ZONES.validated_dir(name))}
        files = [f for f in landed if converted.get(f"{landed_sha(f)}.parquet", -1) < landed_at.get(f.path, 0)]
        shas = sorted({landed_sha(f) for f in files})
        context.log.info(f"{len(landed)} landed file(s) of {name} over {len(days)} ingest date(s), "
                         f"{len(landed) - len(files)} already converted")
        if files:
            # Each validated file (named by its raw file's sha256) is one bronze file of the same name.
            # Its name up to the first dot (landed_sha's way), cut per row without a regular expression.
            lines = read_validated_text(session, storage, files, numbered=True, with_file=True).withColumn(
                PARTITION, F.substring_index(F.substring_index(F.col("validated_file"), "/", -1), ".", 1))
            parsed = bronze_rules.parse_lines(bronze_rules.lines_from_validated(lines, PARTITION), spec, PARTITION)
        rows = quarantined = {}
        lines_read = sum(f.records for f in files)
        if files:
            rows, quarantined = write_split(
                parsed,
                lambda df: publish_partitions(
                    storage, bronze_rules.bronze_rows(df, spec, PARTITION), PARTITION, shas,
                    lambda sha: join(table.location, f"{sha}.parquet"), sort_within=("_line",),
                    # contract §2: bronze is Parquet/Snappy. Most runs convert a file or two: every
                    # task writes its lines' part and a file's parts are merged, rather than
                    # shuffling each file's lines to one task.
                    compression="snappy", shuffle=False)[0],
                lambda df, keys: _quarantine(storage, name, "bronze",
                                             None if df is None else bronze_rules.bronze_rejects(df, PARTITION), keys),
                lambda _rows: shas, cache=lines_read <= CACHED_PARSE_LINES)
        catalog.sync(storage, [table, QUARANTINE[name]])
        return MaterializeResult(metadata={
            "files": len(files), "files_up_to_date": len(landed) - len(files), "lines": lines_read, "dagster/row_count": sum(rows.values()),
            "quarantined": sum(quarantined.values()),
            "quarantine_rate": round(sum(quarantined.values()) / lines_read, 6) if lines_read else 0.0,
            "dagster/uri": MetadataValue.path(storage.uri(table.location)),
        })

    return _bronze


# -- silver ---------------------------------------------------------------------------------------
#: The dimensions a fact's rules read, with the key a fact row refers to them by.
DIMENSION_KEYS = {"date_dim": "d_date_sk", "item": "i_item_sk"}
#: The Dagster partitions of the facts and the monthly gold tables: the months the rows hold
#: (``YYYY-MM`` and Hive's NULL partition), added by the plan as deliveries bring them.
MONTHS = "tpcds_month"


def changes_key(name: str) -> AssetKey:
    """The report of a fact's months that a delivery touched (written by ``tpcds_silver_plan``)."""
    return AssetKey(f"tpcds_changes_{name}")


def _dimension_deliveries(inputs: dict, before: dict, dims=tuple(DIMENSION_KEYS)) -> dict[str, set[str]] | None:
    """For each of ``dims`` whose silver changed since the last plan: its bronze files delivered since
    (new or converted again; their keys are the dimension rows that may have changed). None when that
    cannot be told (no record of its bronze, or a bronze file gone): then every month is rebuilt."""
    out: dict[str, set[str]] = {}
    for dim in dims:
        if not increments.changed(inputs[dim], before.get(dim, {})):
            continue
        seen = before.get(f"bronze_{dim}")
        if seen is None or any(p not in inputs[f"bronze_{dim}"] for p in seen):
            return None
        out[dim] = increments.changed(inputs[f"bronze_{dim}"], seen)
    return out


def _fact_refs(spec: TableSpec, dim: str) -> tuple[str, ...]:
    return spec.date_keys if dim == "date_dim" else (spec.item_key,)


def _delivered_keys(session, storage: LakeStorage, dim: str, files: set[str]) -> DataFrame:
    """The keys (``_dim_key``) of a dimension's rows in some of its bronze files."""
    return read_files(session, storage, BRONZE[dim], schemas.BRONZE[dim], paths=files).select(
        F.col(DIMENSION_KEYS[dim]).alias("_dim_key")).where(F.col("_dim_key").isNotNull()).distinct()


def _stored_rows(session, storage: LakeStorage, name: str) -> DataFrame | None:
    """Silver ``name``'s stored rows, each with the month (:data:`PARTITION`) it is stored under; None when
    it stores nothing yet."""
    if not SILVER[name].data_files(storage):
        return None
    # The value of the file's folder (``sold_month=1999-01/part-...``), cut from the path per row without
    # a regular expression (read_validated_text's way: a pattern per row costs seconds on a big fact).
    folder = F.substring_index(F.substring_index(F.col("_metadata.file_path"), "/", -2), "/", 1)
    return read_files(session, storage, SILVER[name], schemas.SILVER[name]).withColumn(
        PARTITION, F.substring_index(folder, "=", -1))


def _referring(rows: DataFrame, spec: TableSpec, dim: str, keys: DataFrame) -> DataFrame:
    """The rows of a fact referring to one of ``keys`` (``_dim_key``) of ``dim`` by any of their references
    to it: one broadcast equi-join per reference (an OR of them would be a nested-loop join)."""
    return reduce(DataFrame.unionByName, [rows.join(F.broadcast(keys), F.col(ref) == F.col("_dim_key"), "left_semi")
                                          for ref in _fact_refs(spec, dim)])


def located(session, storage: LakeStorage, spec: TableSpec, date_dim: DataFrame) -> DataFrame:
    """A fact's bronze rows with only what placing them needs: bronze file, primary key, references,
    lineage line, and the month (:data:`PARTITION`) silver stores each under (its dating key's date in
    silver's ``date_dim``, Hive's NULL partition without one), as :func:`silver.parse` dates them."""
    cols = list(dict.fromkeys([*spec.primary_key, *spec.date_keys, spec.item_key, "_source_file", "_line"]))
    rows = read_files(session, storage, BRONZE[spec.name], schemas.BRONZE[spec.name],
                      file_column="_bronze_file").select(*cols, "_bronze_file")
    dates = F.broadcast(date_dim.select(F.col("d_date_sk").alias("_date_sk"), F.col("d_date").alias("_date")))
    return (rows.join(dates, F.col(spec.dating.key) == F.col("_date_sk"), "left")
            .withColumn(PARTITION, silver.partition_value(F.col("_date"))).drop("_date_sk", "_date"))


def _touched_months(session, storage: LakeStorage, rows_at: DataFrame, spec: TableSpec, new_files: set[str],
                    delivered: dict[str, set[str]]) -> list[str]:
    """The months a delivery touches: those of the rows it brings and of the rows referring to dimension
    rows it brings (``delivered``: dimension -> its new bronze files), then of every row sharing a primary
    key with one of them (the rows they replace, or that replace them), in their new place and, for rows
    a dimension moves or makes valid or invalid, where they were stored before. ``rows_at``: the fact's
    rows with their months (:func:`located`)."""
    # Traced from a dimension delivery, the fact's rows are read once for each reference to it besides
    # the rows sharing their keys: kept from the first read (a quarter off the plan of a date_dim and
    # item delivery at SF 0.01, the same months). Fact rows alone are read twice: no cache.
    with kept(rows_at, any(delivered.values())) as rows_at:
        touched: list[DataFrame] = []
        if new_files:
            touched.append(rows_at.where(F.col("_bronze_file").isin(*sorted(new_files))))
        for dim, files in delivered.items():
            if not files:
                continue
            touched.append(_referring(rows_at, spec, dim, _delivered_keys(session, storage, dim, files)))
        if not touched:
            return []
        rows = reduce(DataFrame.unionByName, touched)
        pk = list(spec.primary_key)
        keys = rows.select(*pk).where(reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in pk])).distinct()
        sharing = rows.unionByName(rows_at.join(keys, pk, "left_semi"))
        months = sharing.select(PARTITION)
        if any(delivered.values()):
            # A dimension row changes where its facts are dated, or whether they are valid: their old place.
            stored = _stored_rows(session, storage, spec.name)
            if stored is not None:
                months = months.union(stored.join(keys, pk, "left_semi").select(PARTITION))
            rejected = _stored_quarantine(storage, spec.name)
            if rejected:
                folder = join(QUARANTINE[spec.name].location, "stage=silver")
                lines = sharing.select(F.col("_source_file").alias("source_file"), F.col("_line").alias("line"))
                months = months.union(
                    session.read.schema(schemas.QUARANTINE_SCHEMA).parquet(*spark_paths(storage, [join(folder, f) for f in rejected]))
                    .withColumn(PARTITION, F.regexp_extract(F.col("_metadata.file_name"), r"^part-(.+)\.parquet$", 1))
                    .join(lines, ["source_file", "line"], "left_semi").select(PARTITION))
        return sorted(r[0] for r in months.distinct().collect())  # a few dozen month names, never rows


def _fact_inputs(storage: LakeStorage, name: str) -> dict[str, increments.Versions]:
    """What a fact's months are planned from: its bronze files, and the dimensions' silver and bronze."""
    inputs = {"bronze": increments.versions(storage, BRONZE[name])}
    inputs |= {d: increments.versions(storage, SILVER[d]) for d in DIMENSION_KEYS}
    return inputs | {f"bronze_{d}": increments.versions(storage, BRONZE[d]) for d in DIMENSION_KEYS}


def plan_fact(session, storage: LakeStorage, spec: TableSpec, inputs: dict, before: dict | None,
              date_dim: DataFrame) -> tuple[list[str], str]:
    """The months of fact ``spec`` to rebuild since the plan ``before`` (its inputs then; None: never
    planned), and why: every month its rows, its silver and its quarantine hold on a first plan, when a
    bronze file is gone or a dimension changed in a way that cannot be traced, else the months the
    delivery touches (:func:`_touched_months`)."""
    name = spec.name
    delivered = _dimension_deliveries(inputs, before) if before is not None else None
    if delivered is None or any(p not in inputs["bronze"] for p in before.get("bronze", {})):
        rows_at = located(session, storage, spec, date_dim)
        months = {r[0] for r in rows_at.select(PARTITION).distinct().collect()}  # month names, never rows
        months |= {increments.partition_of(p) for p in increments.versions(storage, SILVER[name])} - {None}
        months |= {p[len("part-"):].rsplit(".", 1)[0] for p in _stored_quarantine(storage, name)}
        return sorted(months), "every month (a first plan, a bronze file gone, or a dimension change of unknown rows)"
    new_files = increments.changed(inputs["bronze"], before.get("bronze", {}))
    if not new_files and not any(delivered.values()):
        return [], "nothing new"
    months = _touched_months(session, storage, located(session, storage, spec, date_dim), spec, new_files, delivered)
    return months, ", ".join([f"{len(new_files)} new bronze file(s)"]
                             + [f"{len(f)} new {d} bronze file(s)" for d, f in delivered.items()])


#: Where the plans are kept (``<run id>.json``: each fact's inputs when that run planned).
PLANS = "silver/tpcds/_plans"


def _last_plan(context: AssetExecutionContext, storage: LakeStorage) -> tuple[dict, str | None]:
    """The inputs of the last plan Dagster recorded (its materialization names its file), and that file.
    A plan whose run died before its materialization was recorded is not it: its months were never
    reported, so the next plan finds them again."""
    found = context.instance.fetch_materializations(context.asset_key, limit=1, ascending=False).records
    mat = found[0].asset_materialization if found else None
    path = (mat.metadata or {}).get("plan_file") if mat is not None else None
    path = getattr(path, "value", path)
    if not path or not storage.exists(path):
        return {}, None
    return json.loads(storage.read_text(path)), path


def build_plan(bronze: dict[str, AssetsDefinition], dims: dict[str, AssetsDefinition],
               months: DynamicPartitionsDefinition) -> AssetsDefinition:
    """``tpcds_silver_plan``: which months of each fact a delivery touches, reported as partitions of
    ``tpcds_changes_<fact>`` (new months are added to ``tpcds_month`` first)."""

    @asset(name="tpcds_silver_plan", deps=[*(bronze[n] for n in FACTS), dims["date_dim"], dims["item"]],
           group_name=GROUP_SILVER, kinds={"spark"}, automation_condition=REBUILD_ON_UPSTREAM_CHANGE,
           description="The months of each fact that a delivery touches: the months of the rows it brings, of "
                       "the rows they replace and, for a date_dim or item delivery, of the fact rows referring "
                       "to its keys (where they were and where they go). Each is reported as a partition of "
                       "tpcds_changes_<fact>, which the fact's silver rebuilds; the first plan reports every "
                       "month. A fact's months are Dagster partitions (tpcds_month), added here as rows bring "
                       "them.")
    def _plan(context: AssetExecutionContext, spark: LazyPySparkResource, lake: LakeResource) -> MaterializeResult:
        storage, session = lake.storage, spark.spark_session
        before, previous = _last_plan(context, storage)
        date_dim = read_files(session, storage, SILVER["date_dim"], schemas.SILVER["date_dim"])
        plans, inputs = {}, {}
        for name, spec in FACTS.items():
            inputs[name] = _fact_inputs(storage, name)
            plans[name] = plan_fact(session, storage, spec, inputs[name], before.get(name), date_dim)
            context.log.info(f"{name}: {len(plans[name][0])} month(s) to rebuild ({plans[name][1]})")
        added = add_keys(context.instance, months, {m for found, _ in plans.values() for m in found})
        for name, (found, why) in plans.items():
            for m in found:
                context.log_event(AssetMaterialization(asset_key=changes_key(name), partition=m,
                                                       metadata={"why": why}))
        # The plan's file is named by its run and only then recorded: the next plan starts from it
        # once this materialization (after the reports above) is in Dagster's records.
        path = join(PLANS, f"{context.run.run_id}.json")
        storage.write_text(path, json.dumps(inputs, indent=1, sort_keys=True))
        for f in storage.list_files(PLANS, recursive=False):
            if f.path not in (path, previous):
                storage.delete(f.path)
        return MaterializeResult(metadata={
            "plan_file": path, "months_added": MetadataValue.json(added),
            "months": MetadataValue.json({n: found for n, (found, _) in plans.items()})})

    return _plan


#: Run tag: ``all`` makes a run over a range of months rewrite every one of them, changed or not (a
#: rebuild asked for by hand); by default a month whose inputs did not change since it was built
#: keeps its files.
REWRITE_TAG = "lake/rewrite"


def months_to_rewrite(context: AssetExecutionContext, inputs: list[AssetKey]) -> list[str]:
    """Of the run's months, those to rewrite: each an input (``inputs``, same months) changed since it was
    built, or never built (every month with ``lake/rewrite=all``). A run covers a range of months, the
    months between the changed ones included: those keep their files, and their materialization says
    so (``lake/unchanged``), which is no reason for what reads them to be rebuilt."""
    keys = sorted(context.partition_keys)
    if context.run.tags.get(REWRITE_TAG) == "all":
        return keys
    found = changed_partitions(context.instance, context.asset_key, inputs, keys)
    for k in sorted(set(keys) - set(found)):
        context.add_asset_metadata({UNCHANGED: True}, partition_key=k)
    return found


def build_silver(spec: TableSpec, bronze: AssetsDefinition, dims: dict[str, AssetsDefinition],
                 months: DynamicPartitionsDefinition | None = None) -> AssetsDefinition:
    """``tpcds_silver_<table>``: the whole table's bronze rows checked and deduplicated; a dimension rewritten
    whole, a fact by month: the months a run names (see the module's docstring)."""
    name = spec.name
    table = SILVER[name]
    deps: list[Any] = [bronze]
    extra: dict[str, Any] = {}
    automation = REBUILD_ON_WINDOW_CHANGE
    if spec.is_fact:
        # Read whole; what their changes touch arrives as the plan's reports (CHANGES_FROM).
        deps = [AssetDep(bronze, partition_mapping=AllPartitionMapping()), dims["date_dim"], dims["item"],
                changes_key(name)]
        extra = {CHANGES_FROM: [changes_key(name).to_user_string()]}
        automation = rebuild_on_changes_from([changes_key(name)])

    @asset(name=f"tpcds_silver_{name}", deps=deps, group_name=GROUP_SILVER, kinds={"spark", "parquet"},
           partitions_def=months if spec.is_fact else None,
           backfill_policy=BackfillPolicy.single_run() if spec.is_fact else None,
           automation_condition=automation,
           # Both tables it writes (bronze's asset adds the quarantine's bronze stage).
           metadata={**tables_metadata({"": table, "quarantine": QUARANTINE[name]}), **extra},
           description=table.description + f" Rejected rows: quarantine/tpcds/{name}/stage=silver/.")
    def _silver(context: AssetExecutionContext, spark: LazyPySparkResource, lake: LakeResource,
                catalog: CatalogResource) -> MaterializeResult:
        storage, session = lake.storage, spark.spark_session
        rows_in = read_files(session, storage, BRONZE[name], schemas.BRONZE[name])
        if spec.is_fact:
            keys = months_to_rewrite(context, [changes_key(name)])
            if not keys:
                context.log.info(f"{name}: no month of this run changed")
                return MaterializeResult(metadata={"partitions_rebuilt": MetadataValue.json([]),
                                                   "dagster/row_count": 0, "quarantined": 0})
            date_dim = read_files(session, storage, SILVER["date_dim"], schemas.SILVER["date_dim"])
            item = read_files(session, storage, SILVER["item"], schemas.SILVER["item"])
            parsed = silver.parse(rows_in, spec, date_dim, item)
        else:
            keys = [WHOLE]
            parsed = silver.parse(rows_in, spec)
        context.log.info(f"{name}: rebuilding {len(keys)} partition(s)")
        loaded = _now()
        sort = (spec.dating.column,) if spec.dating else ()
        # Deduplicated over the whole table; the months asked for written (a row's month is its own).
        only = ((lambda df: df.where(F.col(PARTITION).isin(*keys))) if spec.is_fact
                else (lambda df: df.withColumn(PARTITION, F.lit(WHOLE))))
        rows, quarantined = write_split(
            parsed,
            lambda df: publish(storage, catalog, table, only(silver.silver_rows(df, spec, loaded)), keys,
                               sort_within=sort),
            lambda df, written: _quarantine(storage, name, "silver",
                                            None if df is None else only(silver.silver_rejects(df, spec)),
                                            written),
            lambda _rows: keys, cache=True)
        catalog.sync(storage, [QUARANTINE[name]])
        found = _table_metrics(storage, table, keys, {k: quarantine_file(name, "silver", k) for k in keys},
                               spec.rule_names)
        md = metrics.record(storage, dataset=METRICS, asset=f"tpcds_silver_{name}", run_id=context.run.run_id,
                            per_partition=found) if found else {}
        return MaterializeResult(metadata={
            **md, "partitions_rebuilt": MetadataValue.json(keys if spec.dating else []),
            "dagster/row_count": sum(rows.values()), "quarantined": sum(quarantined.values()),
            "dagster/uri": MetadataValue.path(storage.uri(table.location))})

    return _silver


def _stored_quarantine(storage: LakeStorage, name: str) -> list[str]:
    folder = join(QUARANTINE[name].location, "stage=silver")
    return [f.name for f in storage.list_files(folder, recursive=False) if f.name.endswith(".parquet")]


# -- gold ---------------------------------------------------------------------------------------
def _read_silver(session, storage, names: Iterable[str], months: list[str] | None) -> dict[str, DataFrame]:
    return {n: read_files(session, storage, SILVER[n], schemas.SILVER[n], months) for n in names}


def _gold_asset(name: str, deps: list, description: str, **kwargs):
    return asset(name=f"tpcds_{name}", deps=deps, group_name=GROUP_GOLD, kinds={"spark", "parquet"},
                 automation_condition=kwargs.pop("automation_condition", REBUILD_ON_UPSTREAM_CHANGE),
                 metadata={**GOLD[name].asset_metadata(), **kwargs.pop("metadata", {})},
                 description=description, **kwargs)


def _gold_result(context, storage: LakeStorage, name: str, counts: dict[str, int], keys: list[str]) -> MaterializeResult:
    table = GOLD[name]
    found = {None if k == WHOLE else k: metrics.files_metrics(storage, {"": _dest(table, k)})
             for k in keys if storage.exists(_dest(table, k))}
    md = metrics.record(storage, dataset=METRICS, asset=f"tpcds_{name}", run_id=context.run.run_id,
                        per_partition=found) if found else {}
    return MaterializeResult(metadata={
        **md, "dagster/row_count": sum(counts.values()),
        "partitions_rebuilt": MetadataValue.json([k for k in keys if k != WHOLE]),
        "dagster/uri": MetadataValue.path(storage.uri(table.location))})


def _monthly_gold(name: str, inputs: tuple[str, ...], whole: tuple[str, ...], make, silver_assets,
                  months: DynamicPartitionsDefinition) -> AssetsDefinition:
    """A gold table stored by month, partitioned like the facts: a month is rebuilt from that month's rows
    of ``inputs`` (and every row of ``whole``, read only: what a ``whole`` delivery changes reaches the
    months through the facts' silver, which the plan rebuilds where rows refer to its keys)."""
    table = GOLD[name]
    extra = {}
    triggers = [silver_assets[n].key for n in inputs]
    if whole:
        extra = {"metadata": {CHANGES_FROM: [silver_assets[n].key.to_user_string() for n in inputs]},
                 "automation_condition": rebuild_on_changes_from([silver_assets[n].key for n in inputs])}

    @_gold_asset(name, [silver_assets[n] for n in inputs + whole], table.description, partitions_def=months,
                 backfill_policy=BackfillPolicy.single_run(), **extra)
    def _gold(context: AssetExecutionContext, spark: LazyPySparkResource, lake: LakeResource,
              catalog: CatalogResource) -> MaterializeResult:
        storage, session = lake.storage, spark.spark_session
        keys = months_to_rewrite(context, triggers)
        context.log.info(f"{name}: rebuilding {len(keys)} month(s)")
        if not keys:
            return _gold_result(context, storage, name, {}, [])
        frames = _read_silver(session, storage, inputs, keys) | _read_silver(session, storage, whole, None)
        # Gold holds dated lines: the undated month (Hive's NULL partition) has no rows, and no file.
        out = make(frames).where(F.col(PARTITION).isin(*keys))
        counts = publish(storage, catalog, table, out, keys)
        return _gold_result(context, storage, name, counts, keys)

    return _gold


def _whole_gold(name: str, inputs: tuple[str, ...], make, silver_assets) -> AssetsDefinition:
    """A gold table rebuilt whole from every row of its inputs."""
    table = GOLD[name]

    @_gold_asset(name, [silver_assets[n] for n in inputs], table.description)
    def _gold(context: AssetExecutionContext, spark: LazyPySparkResource, lake: LakeResource,
              catalog: CatalogResource) -> MaterializeResult:
        storage, session = lake.storage, spark.spark_session
        out = make(_read_silver(session, storage, inputs, None)).withColumn(PARTITION, F.lit(WHOLE))
        counts = publish(storage, catalog, table, out, [WHOLE])
        return _gold_result(context, storage, name, counts, [WHOLE])

    return _gold


def build_gold(silver_assets: dict[str, AssetsDefinition], months: DynamicPartitionsDefinition
               ) -> list[AssetsDefinition]:
    sales, returns = gold.SALES_TABLES, gold.RETURNS_TABLES
    return [
        _monthly_gold("daily_sales_summary", sales + returns, (),
                      lambda t: gold.daily_sales_summary(gold.sales_lines(t), gold.return_lines(t)), silver_assets,
                      months),
        _monthly_gold("product_performance", sales, ("item",),
                      lambda t: gold.product_performance(gold.sales_lines(t), t["item"]), silver_assets, months),
        _whole_gold("customer_lifetime_value", sales + returns + ("customer",),
                    lambda t: gold.customer_lifetime_value(gold.sales_lines(t), gold.return_lines(t), t["customer"]),
                    silver_assets),
        _whole_gold("monthly_trends", sales, lambda t: gold.monthly_trends(gold.sales_lines(t)), silver_assets),
    ]


@functools.lru_cache
def build(settings: LakeSettings) -> dict[str, Any]:
    """The tpcds domain's assets, jobs and sensor for ``settings`` (made once per settings): ingest dates
    from ``settings.start_date``."""
    partitions = daily_partitions(settings.start_date)
    landing = {
        name: AssetSpec(
            f"tpcds_landing_{name}", partitions_def=partitions, group_name=GROUP_LANDING, kinds={"s3", "parquet"},
            description=f"The lines of the raw {name} files ingested on each date (bronze/tpcds/_lines/{name}/), "
                        f"archived under archive/tpcds/{name}/. Written by ingest_tpcds_job (sensor-driven).",
            metadata={"lake/prefix": f"bronze/tpcds/_lines/{name}"},
        )
        for name in TABLES
    }
    bronze = {name: build_bronze(spec, partitions, landing[name]) for name, spec in TABLES.items()}
    months = data_partitions(MONTHS)
    dims = {name: build_silver(spec, bronze[name], {}) for name, spec in DIMENSIONS.items()}
    plan = build_plan(bronze, dims, months)
    changes = {
        name: AssetSpec(changes_key(name), deps=[plan], partitions_def=months, group_name=GROUP_SILVER,
                        description=f"The months of {name} that a delivery touched, as tpcds_silver_plan reports "
                                    f"them (a materialization per month): what tpcds_silver_{name} rebuilds.")
        for name in FACTS
    }
    facts = {name: build_silver(spec, bronze[name], dims, months) for name, spec in FACTS.items()}
    silver_assets = {**dims, **facts}
    gold_assets = build_gold(silver_assets, months)
    ingest_tpcds_job = build_ingest_job(LANDING, settings.start_date, settings.retry_delay_seconds)
    tpcds_landing_sensor = build_landing_sensor(LANDING, ingest_tpcds_job)
    # A Dagster job has one partitions definition: ingest dates, then months.
    tpcds_pipeline_job = define_asset_job(
        "tpcds_pipeline_job", selection=[a.key for a in (*bronze.values(), *dims.values(), plan)],
        description="Build tpcds bronze for a range of ingest dates, the dimensions' silver, and the plan of "
                    "the months each fact's rows touch.")
    tpcds_months_job = define_asset_job(
        "tpcds_months_job", selection=[a.key for a in (*facts.values(), *gold_assets)],
        description="Build the facts' silver and the gold tables for a range of months (one Spark job per asset "
                    "over the range), and the whole gold tables.")
    return {"LANDING_SPECS": landing, "BRONZE_ASSETS": bronze, "SILVER_ASSETS": silver_assets, "PLAN": plan,
            "CHANGES_SPECS": changes, "GOLD_ASSETS": gold_assets, "ingest_tpcds_job": ingest_tpcds_job,
            "tpcds_landing_sensor": tpcds_landing_sensor, "tpcds_pipeline_job": tpcds_pipeline_job,
            "tpcds_months_job": tpcds_months_job}


__getattr__ = module_built_from_env(build)
