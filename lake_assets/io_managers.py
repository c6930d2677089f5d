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

from collections.abc import Mapping
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

from lake_assets.lake import LakeStorage, partition_path
from lake_assets.lake.layout import join
from lake_assets.resources import LakeResource
from lake_assets.spark import SparkStage, spark_paths

_PART = "lake_partition"


def lake_table(prefix: str, *, partitioning: str = "ymd", date_column: str = "event_date",
               file_stem: str = "part-00000", subtables: tuple[str, ...] = (),
               subtable_key: str = "") -> dict[str, Any]:
    """Definition metadata telling the IO manager where an asset's partitions live.

    ``date_column`` picks each row's partition; a name starting with ``_`` is
    dropped from the files. ``subtables`` split one asset into folders
    ``<subtable_key>=<name>`` holding DataFrames of different schemas (the asset
    returns a mapping name -> DataFrame).
    """
    return {
        "lake/prefix": prefix,
        "lake/partitioning": partitioning,
        "lake/date_column": date_column,
        "lake/file_stem": file_stem,
        "lake/subtables": ",".join(subtables),
        "lake/subtable_key": subtable_key,
    }


def _table_prefixes(meta: Mapping[str, Any]) -> dict[str | None, str]:
    prefix = meta["lake/prefix"]
    subs = [s for s in (meta.get("lake/subtables") or "").split(",") if s]
    if not subs:
        return {None: prefix}
    return {s: join(prefix, f"{meta['lake/subtable_key']}={s}") for s in subs}


def partition_file(meta: Mapping[str, Any], key: str, subtable: str | None = None) -> str:
    """The lake path of one partition's file of a table declared with :func:`lake_table`."""
    return join(_table_prefixes(meta)[subtable], partition_path(meta["lake/partitioning"], key),
                f"{meta['lake/file_stem']}.parquet")


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


class LakeParquetIOManager(ConfigurableIOManager):
    """Reads and writes daily-partitioned Spark DataFrames as Parquet on the lake."""

    lake: ResourceDependency[LakeResource]
    spark: ResourceDependency[LazyPySparkResource]
    preview_rows: int = 5

    # -- output ------------------------------------------------------------
    def handle_output(self, context: OutputContext, obj: DataFrame | Mapping[str, DataFrame]) -> None:
        meta = context.definition_metadata
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else []
        if not keys:
            raise ValueError(f"{context.asset_key.to_user_string()} is not partitioned: "
                             "LakeParquetIOManager writes daily partitions only")
        frames = obj if isinstance(obj, Mapping) else {None: obj}
        prefixes = _table_prefixes(meta)
        if set(frames) != set(prefixes):
            raise ValueError(f"{context.asset_key.to_user_string()} returned tables {sorted(map(str, frames))}, "
                             f"declared {sorted(map(str, prefixes))}")
        total = 0
        per_partition: dict[str, int] = {}
        previews: dict[str, str] = {}
        for sub, df in frames.items():
            counts, preview = self._write(meta, sub, df, keys)
            total += sum(counts.values())
            for k, n in counts.items():
                per_partition[f"{sub}/{k}" if sub else k] = n
            if preview is not None:
                previews[sub or "rows"] = preview
        storage = self.lake.storage
        first = next(iter(frames.values()))
        md: dict[str, Any] = {
            "dagster/row_count": total,
            "dagster/column_schema": _schema_metadata(first),
            "dagster/uri": MetadataValue.path(
                storage.uri(join(prefixes[next(iter(prefixes))], partition_path(meta["lake/partitioning"], keys[0])))
                if len(keys) == 1 else storage.uri(meta["lake/prefix"])
            ),
            "rows_per_partition": MetadataValue.json(per_partition),
        }
        for sub, df in frames.items():
            if sub:
                md[f"rows_{sub}"] = sum(v for k, v in per_partition.items() if k.startswith(f"{sub}/"))
                md[f"column_schema_{sub}"] = _schema_metadata(df)
        for name, text in previews.items():
            md[f"preview_{name}" if name != "rows" else "preview"] = MetadataValue.md(text)
        context.add_output_metadata(md)

    def _write(self, meta: Mapping[str, Any], sub: str | None, df: DataFrame,
               keys: list[str]) -> tuple[dict[str, int], str | None]:
        lake = self.lake.storage
        date_col = meta["lake/date_column"]
        out = df.withColumn(_PART, F.date_format(F.col(date_col), "yyyy-MM-dd"))
        if date_col.startswith("_"):
            out = out.drop(date_col)
        data_schema = out.drop(_PART).schema
        stage = SparkStage.create(lake)
        try:
            out.repartition(_PART).write.mode("overwrite").partitionBy(_PART).parquet(stage.spark_uri)
            staged: dict[str, list] = {}
            for f in stage.files():
                key = f.path.split(f"{_PART}=", 1)[1].split("/", 1)[0]
                staged.setdefault(key, []).append(f)
            stray = sorted(set(staged) - set(keys))
            if stray:
                raise ValueError(
                    f"rows dated {stray[:5]} fall outside this run's partitions "
                    f"{keys[0]}..{keys[-1]}; nothing was published")
            counts: dict[str, int] = {}
            preview: str | None = None
            for key in keys:
                dest = partition_file(meta, key, sub)
                files = staged.get(key, [])
                if len(files) > 1:
                    raise RuntimeError(f"Spark wrote {len(files)} files for partition {key}; expected one")
                if files:
                    with stage.storage.open_random(files[0].path) as fh:
                        pf = pq.ParquetFile(fh)
                        counts[key] = pf.metadata.num_rows
                        if preview is None and counts[key] and self.preview_rows:
                            batch = next(pf.iter_batches(batch_size=self.preview_rows))
                            preview = _preview_md(pa.Table.from_batches([batch]).slice(0, self.preview_rows))
                    stage.publish(files[0], dest)
                else:
                    counts[key] = 0
                    self._write_empty(lake, dest, data_schema)
            return counts, preview
        finally:
            stage.cleanup()

    @staticmethod
    def _write_empty(lake: LakeStorage, dest: str, schema) -> None:
        from pyspark.sql.pandas.types import to_arrow_schema

        table = pa.Table.from_batches([], schema=to_arrow_schema(schema, timezone="UTC"))
        with lake.open_write(dest) as f:
            pq.write_table(table, f)

    # -- input -------------------------------------------------------------
    def load_input(self, context: InputContext) -> DataFrame | dict[str, DataFrame]:
        return read_table(self.spark.spark_session, self.lake.storage,
                          context.upstream_output.definition_metadata,
                          list(context.asset_partition_keys), context.asset_key.to_user_string())


def read_table(spark, lake: LakeStorage, meta: Mapping[str, Any], keys: list[str],
               asset: str = "asset") -> DataFrame | dict[str, DataFrame]:
    """The partitions ``keys`` of a table declared with :func:`lake_table` (a mapping for subtables)."""
    frames: dict[str | None, DataFrame] = {}
    for sub in _table_prefixes(meta):
        files = [partition_file(meta, k, sub) for k in keys]
        missing = [f for f in files if not lake.is_file(f)]
        if missing:
            raise FileNotFoundError(
                f"{asset}: {len(missing)} partition(s) not materialized, e.g. {lake.uri(missing[0])}; "
                f"materialize {asset} for those partitions first")
        frames[sub] = spark.read.parquet(*spark_paths(lake, files))
    return frames[None] if None in frames else frames


def partition_row_counts(lake: LakeStorage, meta: Mapping[str, Any], key: str) -> dict[str | None, int]:
    """Row counts of one partition from Parquet footers: no Spark, no data read."""
    out = {}
    for sub in _table_prefixes(meta):
        rel = partition_file(meta, key, sub)
        with lake.open_random(rel) as fh:
            out[sub] = pq.ParquetFile(fh).metadata.num_rows
    return out
