"""The partitioned Parquet IO manager: Spark DataFrames in and out of the lake.

An asset declares where it lives with definition metadata (see :func:`lake_table`).
On output, the DataFrame is written once by Spark into a stage, one file per
partition (``repartition`` by the partition date), then each file is published
to ``<prefix>/<partition path>/<file>.parquet``: a single atomic rename or
object PUT, so a reader sees the old partition or the new one, never half of
either or both. Partitions of the run with no rows get an empty file with the
schema, so re-running a partition that lost its rows clears it. A run over a
range of partitions (``BackfillPolicy.single_run()``) is one Spark job.
"""

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    ConfigurableIOManager,
    InputContext,
    MetadataValue,
    OutputContext,
    ResourceDependency,
    TableColumn,
    TableSchema,
)
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lake_assets.catalog.resource import CatalogResource
from lake_assets.catalog.tables import Table, tables_metadata, tables_of
from lake_assets.lake import LakeFile, LakeStorage, partition_path
from lake_assets.lake.layout import join
from lake_assets.quality import metrics
from lake_assets.resources import LakeResource
from lake_assets.spark import SparkStage, spark_paths
from lake_assets.staleness import FINGERPRINT

_PART = "lake_partition"


def lake_table(table: Table | Mapping[str, Table], *, date_column: str = "event_date",
               metrics: str | None = None, rejects: Table | None = None,
               rules: tuple[str, ...] = ()) -> dict[str, Any]:
    """Definition metadata telling the IO manager which declared table(s) an asset writes.

    ``table`` is the asset's :class:`~lake_assets.catalog.tables.Table`, or a mapping
    subtable name -> table when one asset writes several tables of different schemas
    (the asset then returns a mapping name -> DataFrame). ``date_column`` picks each
    row's partition; a name starting with ``_`` is dropped from the files. An
    unpartitioned table is one file, replaced whole (a full refresh).

    ``metrics`` names the metrics-zone dataset: each written partition then gets
    its row count and null rates (from the file's footer), and, when ``rejects``
    names the table holding the rows this one quarantined (written first, by the
    same run), the quarantined count and the outcome of each of ``rules``.
    """
    tables = dict(table) if isinstance(table, Mapping) else {"": table}
    for t in tables.values():
        if t.partitioning and not t.daily:
            raise ValueError(f"{t.qualified_name}: the IO manager writes daily or unpartitioned tables only")
    meta = {**tables_metadata(tables), "lake/date_column": date_column}
    if metrics:
        meta["lake/metrics_dataset"] = metrics
    if rejects is not None:
        meta["lake/rejects"] = rejects.to_json()
        meta["lake/rules"] = "\n".join(rules)
    return meta


def _tables(meta: Mapping[str, Any]) -> dict[str | None, Table]:
    """The declared tables of an asset: ``{None: table}``, or subtable name -> table."""
    found = tables_of(meta)
    if not found:
        raise ValueError("this asset declares no lake table (metadata=lake_table(...))")
    return {k or None: t for k, t in found.items()}


def _rejects_table(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    if "lake/rejects" not in meta:
        return None
    return lake_table(Table.from_json(meta["lake/rejects"]))


def _partition_dir(table: Table, key: str | None) -> str:
    return partition_path(table.partitioning, key) if key is not None and table.partitioning else ""


def partition_file(meta: Mapping[str, Any], key: str | None, subtable: str | None = None) -> str:
    """The lake path of one partition's file (``key`` None: the unpartitioned table's file)."""
    table = _tables(meta)[subtable]
    return table.file_path(_partition_dir(table, key))


def register_written(catalog, storage: LakeStorage, meta: Mapping[str, Any],
                     rows: Mapping[str | None, Mapping[str | None, int]]) -> None:
    """Tell the catalog what a write published: ``rows[subtable][partition key]``; 0 rows unregisters."""
    if catalog is None:
        return
    for sub, table in _tables(meta).items():
        catalog.register(storage, table, {_partition_dir(table, k): n for k, n in rows.get(sub, {}).items()})


def register_from_files(catalog, storage: LakeStorage, meta: Mapping[str, Any], keys: list[str | None]) -> None:
    """Register partitions written elsewhere (a Pipes script on EMR or Glue), rows from their footers."""
    register_written(catalog, storage, meta,
                     {sub: {k: partition_row_counts(storage, meta, k)[sub] for k in keys} for sub in _tables(meta)})


def _schema_metadata(df: DataFrame) -> TableSchema:
    return TableSchema(columns=[TableColumn(f.name, f.dataType.simpleString()) for f in df.schema.fields])


def _preview_md(table: pa.Table) -> str:
    cols = table.column_names
    rows = table.to_pylist()
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    def cell(v: Any) -> str:
        s = str(v) if v is not None else ""
        return (s[:60] + "…" if len(s) > 60 else s).replace("|", "\\|").replace("\n", " ")
    return head + "".join("| " + " | ".join(cell(r[c]) for c in cols) + " |\n" for r in rows)


def write_table(storage: LakeStorage, meta: Mapping[str, Any], obj: DataFrame | Mapping[str, DataFrame],
                keys: list[str | None], *, asset: str, run_id: str, preview_rows: int = 5,
                catalog=None) -> dict[str, Any]:
    """Write an asset's DataFrame(s) to its partitions ``keys``, publish them, register them, file metrics.

    What the IO manager does on output, as a function, so a Spark step running
    elsewhere (a Pipes script on EMR or Glue) writes the lake the same way.
    ``catalog`` (a :class:`~lake_assets.catalog.resource.CatalogResource`, optional)
    registers the partitions written and unregisters those the run emptied.
    Returns the materialization metadata.
    """
    frames = obj if isinstance(obj, Mapping) else {None: obj}
    tables = _tables(meta)
    if set(frames) != set(tables):
        raise ValueError(f"{asset} returned tables {sorted(map(str, frames))}, "
                         f"declared {sorted(map(str, tables))}")
    total = 0
    per_partition: dict[str, int] = {}
    written: dict[str | None, dict[str | None, int]] = {}
    previews: dict[str, str] = {}
    fingerprints: dict[str, str | None] = {}
    for sub, df in frames.items():
        counts, preview, fingerprints[sub or ""] = _write(storage, meta, sub, df, keys, preview_rows)
        written[sub] = {k or None: n for k, n in counts.items()}
        total += sum(counts.values())
        for k, n in counts.items():
            label = "/".join(p for p in (sub, k) if p) or "rows"
            per_partition[label] = n
        if preview is not None:
            previews[sub or "rows"] = preview
    register_written(catalog, storage, meta, written)
    first = next(iter(frames.values()))
    first_table = next(iter(tables.values()))
    md: dict[str, Any] = {
        "dagster/row_count": total,
        "dagster/column_schema": _schema_metadata(first),
        "dagster/uri": MetadataValue.path(
            storage.uri(join(first_table.location, _partition_dir(first_table, keys[0])))
            if len(keys) == 1 else storage.uri(first_table.location)
        ),
        "rows_per_partition": MetadataValue.json(per_partition),
    }
    for sub, df in frames.items():
        if sub:
            md[f"rows_{sub}"] = sum(v for k, v in per_partition.items() if k.startswith(f"{sub}/"))
            md[f"column_schema_{sub}"] = _schema_metadata(df)
    for name, text in previews.items():
        md[f"preview_{name}" if name != "rows" else "preview"] = MetadataValue.md(text)
    if keys == [None] and all(fingerprints.values()):
        md[FINGERPRINT] = ";".join(f"{sub}={fp}" if sub else fp for sub, fp in sorted(fingerprints.items()))
    if meta.get("lake/metrics_dataset"):
        md.update(_record_metrics(storage, meta, keys, asset, run_id))
    return md


def _record_metrics(storage: LakeStorage, meta: Mapping[str, Any], keys: list[str | None],
                    asset: str, run_id: str) -> dict[str, Any]:
    """An IO-manager table's metrics: each partition's files (subtables prefixed) and its rejects."""
    rejects = _rejects_table(meta)
    rules = [r for r in (meta.get("lake/rules") or "").split("\n") if r]
    prefixes = {f"{sub}." if sub else "": sub for sub in _tables(meta)}
    per_partition: dict[str | None, list[metrics.Metric]] = {}
    for key in keys:
        found = metrics.files_metrics(storage, {p: partition_file(meta, key, sub) for p, sub in prefixes.items()})
        if rejects is not None:
            rows = sum(int(m.value) for m in found if m.name in {f"{p}rows" for p in prefixes})
            found += metrics.reject_metrics(storage, rows, partition_file(rejects, key), rules)
        per_partition[key] = found
    return metrics.record(storage, dataset=meta["lake/metrics_dataset"], asset=asset, run_id=run_id,
                          per_partition=per_partition)


def _write(lake: LakeStorage, meta: Mapping[str, Any], sub: str | None, df: DataFrame,
           keys: list[str | None], preview_rows: int) -> tuple[dict[str, int], str | None, str | None]:
    """Rows per key, a preview and, for a whole table, its fingerprint (:func:`fingerprinted`)."""
    if keys == [None]:
        return _write_whole(lake, meta, sub, df, preview_rows)
    date_col = meta["lake/date_column"]
    out = df.withColumn(_PART, F.date_format(F.col(date_col), "yyyy-MM-dd"))
    if date_col.startswith("_"):
        out = out.drop(date_col)
    return (*publish_partitions(lake, out, _PART, keys, lambda key: partition_file(meta, key, sub),
                                preview_rows=preview_rows), None)


def fingerprinted(df: DataFrame) -> tuple[DataFrame, Callable[[], str | None]]:
    """``df`` observed as it is written, and a function giving its fingerprint once the write ran:
    the row count and the sum of every row's 64-bit hash (order does not matter; a changed, added
    or removed row changes it), with a digest of the schema. None for a frame with a map column
    (Spark does not hash maps). Computed in the write's own pass: no extra Spark job."""
    import hashlib

    from pyspark.sql import Observation
    from pyspark.sql.types import ArrayType, MapType

    def has_map(t) -> bool:
        if isinstance(t, StructType):
            return any(has_map(f.dataType) for f in t.fields)
        return isinstance(t, MapType) or (isinstance(t, ArrayType) and has_map(t.elementType))

    if not df.columns or has_map(df.schema):
        return df, lambda: None
    seen = Observation()
    rows_hash = F.xxhash64(*[F.col(f"`{c}`") for c in df.columns]).cast("decimal(20,0)")
    observed = df.observe(seen, F.count(F.lit(1)).alias("n"), F.sum(rows_hash).alias("h"))
    schema = hashlib.sha1(df.schema.json().encode()).hexdigest()[:12]

    def value() -> str:
        got = seen.get
        return f"{got['n']}:{got['h'] or 0}:{schema}"

    return observed, value


def publish_partitions(lake: LakeStorage, df: DataFrame, column: str, keys: list[str],
                       dest: Callable[[str], str], *, when_empty: str = "write",
                       preview_rows: int = 0, sort_within: tuple[str, ...] = (),
                       any_key: bool = False, compression: str | None = None,
                       shuffle: bool = True) -> tuple[dict[str, int], str | None]:
    """Stage, split, publish: the one way a partitioned write reaches the lake.

    ``df`` is written once by Spark into a stage, one file per value of ``column`` (a
    partition folder ``<column>=<key>``; the column leaves the files); then each of
    ``keys`` is published to ``dest(key)`` with one atomic rename or PUT, so a reader
    sees the old partition or the new one, never half. Rows valued outside ``keys``
    fail the write before anything is published. A key without rows gets an empty file
    with the schema (``when_empty="write"``: re-running a partition that lost its rows
    clears it) or loses its file (``"delete"``: the partition is gone). ``sort_within`` orders
    the rows inside each file (e.g. by date: readers skip row groups by their min/max).
    ``any_key``: the data decides its partitions: every value staged is published too (``keys``
    then names the partitions to empty when no row holds them), instead of failing the write.
    ``compression`` overrides the session's Parquet codec (a contract that names one: Snappy).
    ``shuffle`` False: for a few keys of many rows each (one bronze file per raw file, an unpartitioned
    table), where the shuffle to one task per key would leave every core but one idle for the write:
    each task writes its own part of each key it holds, in parallel and without a shuffle, and a key's
    parts become its one file by :func:`merge_parts` (Arrow, row group by row group) before it is
    published as one.
    Returns rows per key (from the staged footers) and a markdown preview of the first rows written.
    """
    data_schema = df.drop(column).schema
    if column.startswith(("_", ".")):
        # Spark and Hadoop take a folder named ``_x=...`` for a hidden one (and so does the lake's
        # listing of the stage): the partition column gets a visible name for the write.
        df, column = df.withColumnRenamed(column, _PART), _PART
    stage = SparkStage.create(lake)
    try:
        out = df.repartition(column) if shuffle else df
        if sort_within:
            out = out.sortWithinPartitions(column, *sort_within)
        writer = out.write.mode("overwrite").partitionBy(column)
        if compression:
            writer = writer.option("compression", compression)
        writer.parquet(stage.spark_uri)
        staged: dict[str, list] = {}
        for f in stage.files():
            key = f.path.split(f"{column}=", 1)[1].split("/", 1)[0]
            staged.setdefault(key, []).append(f)
        stray = sorted(set(staged) - set(keys))
        if any_key:
            keys, stray = sorted(set(keys) | set(staged)), []
        if stray:
            raise ValueError(
                f"rows dated {stray[:5]} fall outside this run's partitions "
                f"{keys[0]}..{keys[-1]}; nothing was published")
        several = {k: len(v) for k, v in staged.items() if len(v) > 1}
        if several and shuffle:  # refused before any partition is replaced
            raise RuntimeError(f"Spark wrote several files for partitions {several}; expected one each")
        counts: dict[str, int] = {}
        preview: str | None = None
        for key in keys:
            files = staged.get(key, [])
            if files:
                staged_file = files[0] if len(files) == 1 else merge_parts(stage.storage, files, sort_within[:1])
                counts[key], found = _inspect(stage.storage, staged_file.path, preview_rows if preview is None else 0)
                preview = preview or found
                stage.publish(staged_file, dest(key))
            else:
                counts[key] = 0
                if when_empty == "write":
                    _write_empty(lake, dest(key), data_schema)
                elif lake.exists(dest(key)):
                    lake.delete(dest(key))
        return counts, preview
    finally:
        stage.cleanup()


def merge_parts(storage: LakeStorage, parts: list[LakeFile], order_by: tuple[str, ...] = ()) -> LakeFile:
    """Parquet files of one schema (the parts a Spark write left for one key) as one file beside them.

    Row groups are copied in order through Arrow, one at a time (memory: one row group), each kept
    whole; Spark's schema in the footer, the codec and integer-stored decimals are kept as Spark
    wrote them, so the file reads back as if Spark had written it alone. Parts are taken in the order
    of their first row's ``order_by`` column (footer statistics): a task reads a contiguous range of
    its input, so rows sorted within each part are then sorted across the file.
    """
    def first(part: LakeFile):
        if not order_by:
            return 0
        with storage.open_random(part.path) as fh:
            meta = pq.ParquetFile(fh).metadata
            group = meta.row_group(0) if meta.num_row_groups else None
            columns = [group.column(j) for j in range(group.num_columns)] if group else []
            stats = next((c.statistics for c in columns if c.path_in_schema == order_by[0]), None)
            return stats.min if stats is not None and stats.has_min_max else 0

    ordered = sorted(parts, key=lambda p: (first(p), p.path))
    merged = join(ordered[0].path.rsplit("/", 1)[0], f"merged-{uuid.uuid4().hex}.parquet")
    with storage.open_random(ordered[0].path) as fh:
        head = pq.ParquetFile(fh)
        schema = head.schema_arrow  # with Spark's schema in its metadata
        codec = head.metadata.row_group(0).column(0).compression if head.metadata.num_row_groups else "none"
    with storage.open_write(merged) as out, \
            pq.ParquetWriter(out, schema, compression=codec.lower(), store_decimal_as_integer=True) as writer:
        for part in ordered:
            with storage.open_random(part.path) as fh:
                pf = pq.ParquetFile(fh)
                for i in range(pf.num_row_groups):
                    group = pf.read_row_group(i)
                    writer.write_table(group, row_group_size=max(len(group), 1))
    return LakeFile(merged, 0, 0)


def _write_whole(lake: LakeStorage, meta: Mapping[str, Any], sub: str | None,
                 df: DataFrame, preview_rows: int) -> tuple[dict[str, int], str | None, str | None]:
    """An unpartitioned table: one file, replaced atomically (readers see old or new, whole), and its
    fingerprint."""
    dest = partition_file(meta, None, sub)
    stage = SparkStage.create(lake)
    try:
        observed, fingerprint = fingerprinted(df)
        observed.coalesce(1).write.mode("overwrite").parquet(stage.spark_uri)
        files = stage.files()
        if len(files) > 1:
            raise RuntimeError(f"Spark wrote {len(files)} files for {dest}; expected one")
        if not files:
            _write_empty(lake, dest, df.schema)
            return {"": 0}, None, fingerprint()
        rows, preview = _inspect(stage.storage, files[0].path, preview_rows)
        stage.publish(files[0], dest)
        return {"": rows}, preview, fingerprint()
    finally:
        stage.cleanup()


def _inspect(storage: LakeStorage, path: str, preview_rows: int) -> tuple[int, str | None]:
    """Row count from a staged file's footer, and a preview of its first ``preview_rows`` rows."""
    with storage.open_random(path) as fh:
        pf = pq.ParquetFile(fh)
        rows = pf.metadata.num_rows
        if not (preview_rows and rows):
            return rows, None
        batch = next(pf.iter_batches(batch_size=preview_rows))
        return rows, _preview_md(pa.Table.from_batches([batch]).slice(0, preview_rows))


def _write_empty(lake: LakeStorage, dest: str, schema) -> None:
    from pyspark.sql.pandas.types import to_arrow_schema

    table = pa.Table.from_batches([], schema=to_arrow_schema(schema, timezone="UTC"))
    with lake.open_write(dest) as f:
        pq.write_table(table, f)


class LakeParquetIOManager(ConfigurableIOManager):
    """Reads and writes daily-partitioned Spark DataFrames as Parquet on the lake."""

    lake: ResourceDependency[LakeResource]
    spark: ResourceDependency[LazyPySparkResource]
    catalog: ResourceDependency[CatalogResource]
    preview_rows: int = 5

    def handle_output(self, context: OutputContext, obj: DataFrame | Mapping[str, DataFrame]) -> None:
        keys: list[str | None] = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        context.add_output_metadata(write_table(
            self.lake.storage, context.definition_metadata, obj, keys,
            asset=context.asset_key.path[-1], run_id=context.run_id, preview_rows=self.preview_rows,
            catalog=self.catalog))

    # -- input -------------------------------------------------------------
    def load_input(self, context: InputContext) -> DataFrame | dict[str, DataFrame]:
        """The input's partitions; with input metadata ``{PRESENT_ONLY: True}``, those of them the lake
        holds (a window reaching before the first date or past the newest), empty with the table's
        declared schema when it holds none."""
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        meta = context.upstream_output.definition_metadata
        if (context.definition_metadata or {}).get(PRESENT_ONLY):
            storage = self.lake.storage
            keys = [k for k in keys if all(storage.is_file(partition_file(meta, k, sub)) for sub in _tables(meta))]
            if not keys:
                frames = {sub: self.spark.spark_session.createDataFrame([], t.schema) for sub, t in _tables(meta).items()}
                return frames[None] if None in frames else frames
        return read_table(self.spark.spark_session, self.lake.storage, meta, keys,
                          context.asset_key.to_user_string())


#: Input metadata (``AssetIn(..., metadata={PRESENT_ONLY: True})``): load only the mapped partitions
#: the lake holds, rather than refusing the missing ones.
PRESENT_ONLY = "lake/present_only"


def read_table(spark, lake: LakeStorage, meta: Mapping[str, Any], keys: list[str | None],
               asset: str = "asset") -> DataFrame | dict[str, DataFrame]:
    """The partitions ``keys`` of a table declared with :func:`lake_table` (a mapping for subtables).

    ``[None]`` reads an unpartitioned table.
    """
    frames: dict[str | None, DataFrame] = {}
    for sub in _tables(meta):
        files = [partition_file(meta, k, sub) for k in keys]
        missing = [f for f in files if not lake.is_file(f)]
        if missing:
            raise FileNotFoundError(
                f"{asset}: {len(missing)} partition(s) not materialized, e.g. {lake.uri(missing[0])}; "
                f"materialize {asset} for those partitions first")
        schema = stored_schema(lake, files[0])
        reader = spark.read if schema is None else spark.read.schema(schema)
        frames[sub] = reader.parquet(*spark_paths(lake, files))
    return frames[None] if None in frames else frames


#: Where Spark keeps the schema of the DataFrame it wrote, in each Parquet footer (JSON).
_SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"


def stored_schema(lake: LakeStorage, rel: str) -> StructType | None:
    """The schema Spark would infer reading ``rel`` first, from its footer; None if Spark did not write it.

    Spark infers a Parquet read's schema from the first file's footer, preferring the schema it
    stored there when it wrote the file, and runs a Spark job to do so: a job per read, the most
    frequent job of a small batch. Read here (one footer, no Spark), it is the same schema, the
    one as stored, so a check still sees a drifted file as it is. A file Spark did not write (an
    empty partition written by Arrow) is left to Spark's inference.
    """
    with lake.open_random(rel) as fh:
        stored = (pq.ParquetFile(fh).metadata.metadata or {}).get(_SPARK_SCHEMA_KEY)
    return StructType.fromJson(json.loads(stored)) if stored else None


def read_partitions_present(spark, lake: LakeStorage, meta: Mapping[str, Any], schema) -> DataFrame:
    """Every partition of a table that exists (for full refreshes), with ``schema``; empty if none."""
    files = [f.path for f in _tables(meta)[None].data_files(lake)]
    if not files:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(*spark_paths(lake, files))


def partition_row_counts(lake: LakeStorage, meta: Mapping[str, Any], key: str | None) -> dict[str | None, int]:
    """Row counts of one partition from Parquet footers: no Spark, no data read."""
    out = {}
    for sub in _tables(meta):
        rel = partition_file(meta, key, sub)
        with lake.open_random(rel) as fh:
            out[sub] = pq.ParquetFile(fh).metadata.num_rows
    return out
