"""Reading what ingestion left in ``validated/``: the files of a set of dates and their lineage.

Each validated file is named by its source's content hash, so its manifest
(source name, ingest run, ingest time, record counts per date) is one direct
read away: nothing lists or reads more of the lake than the dates asked for.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import types as T

from lake_assets.ingest.formats import RawFormat
from lake_assets.ingest.router import Zones, manifest_path, read_manifest
from lake_assets.lake import LakeStorage, partition_path
from lake_assets.lake.layout import join


#: One validated record a row, with its lineage: what the processed stages read.
TEXT_INPUT_SCHEMA = T.StructType([
    T.StructField("record", T.StringType(), False),
    T.StructField("routed_date", T.DateType(), False),
    T.StructField("source_format", T.StringType(), False),
    T.StructField("source_file", T.StringType(), False),
    T.StructField("ingest_run_id", T.StringType(), False),
    T.StructField("ingest_ts", T.TimestampType(), False),
])
#: The same, for numbered validated files: each record's position in its source file too.
NUMBERED_INPUT_SCHEMA = T.StructType(TEXT_INPUT_SCHEMA.fields + [T.StructField("position", T.LongType(), False)])


@dataclass(frozen=True)
class ValidatedFile:
    path: str
    day: dt.date
    format: str
    source_file: str
    ingest_run_id: str
    ingest_ts: dt.datetime
    records: int
    #: Of ``records``, those with no date the lake can hold (only ever on the ingest date).
    undated: int = 0


def validated_files(storage: LakeStorage, days: list[dt.date], formats: tuple[RawFormat, ...],
                    zones: Zones = Zones()) -> list[ValidatedFile]:
    """The validated files of these dates and formats, each with its manifest's lineage."""
    out = []
    for fmt in formats:
        for day in days:
            for f in storage.list_files(join(zones.validated_dir(fmt.name), partition_path("ymd", day))):
                if not f.name.endswith(fmt.extension):
                    continue
                sha = f.name[: -len(fmt.extension)]
                manifest = read_manifest(storage, manifest_path(zones, fmt, sha))
                if manifest is None:
                    raise FileNotFoundError(
                        f"{storage.uri(f.path)} has no ingestion manifest "
                        f"({storage.uri(manifest_path(zones, fmt, sha))}); re-ingest its source")
                out.append(ValidatedFile(
                    path=f.path, day=day, format=fmt.name, source_file=manifest["source_path"],
                    ingest_run_id=manifest["ingest_run_id"],
                    ingest_ts=dt.datetime.fromisoformat(manifest["ingest_ts"]),
                    records=int(manifest.get("records_by_date", {}).get(day.isoformat(), 0)),
                    undated=int(manifest.get("undated_by_date", {}).get(day.isoformat(), 0)),
                ))
    return out


def read_validated_text(spark, storage: LakeStorage, files: list[ValidatedFile], *,
                        skip_lines: tuple[str, ...] = (), numbered: bool = False, with_file: bool = False):
    """One row per validated record: ``record`` text plus its lineage (TEXT_INPUT columns).

    ``numbered`` files (``<position>\t<record>`` lines) also give each record's
    ``position`` in its source file, as do ``.parquet`` validated files (a converted
    format's: columns ``record`` and ``position``, :mod:`lake_assets.ingest.lines`);
    without ``numbered``, their ``position`` is dropped. ``with_file`` keeps each row's
    validated file as ``validated_file`` (``<format>/year=/month=/day=/<hash><ext>``: which
    delivery a row came from).

    Spark reads text files as text (gzip by extension) and Parquet files as Parquet,
    one scan per kind; lineage joins in from the manifests on each file's
    ``<format>/year=/month=/day=/<hash><ext>`` tail, so it survives the Arrow
    crossing's local copies.
    """
    from pyspark.sql import functions as F

    from lake_assets.spark import spark_paths

    lineage_schema = T.StructType([T.StructField("_file_key", T.StringType(), False)] + TEXT_INPUT_SCHEMA.fields[1:])
    if not files:
        return spark.createDataFrame([], NUMBERED_INPUT_SCHEMA if numbered else TEXT_INPUT_SCHEMA)
    # The path's last five parts (what _file_key takes): a string cut, not a regular expression,
    # since it is evaluated on every row (a pattern cost 2 s per 2.9 M TPC-DS lines).
    file_key = F.substring_index(F.col("_metadata.file_path"), "/", -5).alias("_file_key")
    text = None
    for group in _by_compression([f for f in files if not f.path.endswith(".parquet")]):
        scan = spark.read.text(spark_paths(storage, [f.path for f in group])).select(
            F.col("value").alias("record"), file_key)
        text = scan if text is None else text.unionByName(scan)
    if numbered and text is not None:
        parts = F.split(F.col("record"), "\t", 2)
        text = text.select(parts[1].alias("record"), F.col("_file_key"),
                           parts[0].try_cast("bigint").alias("position"))
    parquet = [f for f in files if f.path.endswith(".parquet")]
    if parquet:
        # The schema given, so no footer is read to infer it; files named one by one, so their
        # year=/month=/day= folders add no partition columns.
        scan = spark.read.schema(_lines_schema()).parquet(*spark_paths(storage, [f.path for f in parquet])).select(
            F.col("record"), file_key, *([F.col("position")] if numbered else []))
        text = scan if text is None else text.unionByName(scan)
    if skip_lines:
        text = text.where(~F.col("record").isin(*skip_lines))
    if len(files) <= LITERAL_LINEAGE_FILES:
        out = text.select("*", *_literal_lineage(files))
    else:
        # From Arrow, so it is a local relation: no Python worker on the executors, any cluster.
        import pyarrow as pa

        lineage = spark.createDataFrame(pa.table({
            "_file_key": pa.array([_file_key(f.path) for f in files], pa.string()),
            "routed_date": pa.array([f.day for f in files], pa.date32()),
            "source_format": pa.array([f.format for f in files], pa.string()),
            "source_file": pa.array([f.source_file for f in files], pa.string()),
            "ingest_run_id": pa.array([f.ingest_run_id for f in files], pa.string()),
            "ingest_ts": pa.array([f.ingest_ts for f in files], pa.timestamp("us", tz="UTC")),
        }), schema=lineage_schema)
        out = text.join(F.broadcast(lineage), "_file_key")
    return out.withColumnRenamed("_file_key", "validated_file") if with_file else out.drop("_file_key")


#: Up to this many files, lineage is written into the plan as literals (a constant, or a lookup in a
#: literal map): joining it in costs a broadcast, a Spark job of its own, on every read of a few files
#: (a daily batch: most reads). Beyond it the broadcast join (a hash lookup) is the cheaper per row.
LITERAL_LINEAGE_FILES = 32


def _literal_lineage(files: list[ValidatedFile]) -> list:
    """The lineage columns (TEXT_INPUT's after ``record``) of each row, from its ``_file_key``, as literals."""
    from pyspark.sql import functions as F

    keys = [_file_key(f.path) for f in files]

    def column(name: str, values: list):
        if len(set(values)) == 1:
            return F.lit(values[0]).alias(name)
        pairs = [x for k, v in zip(keys, values) for x in (F.lit(k), F.lit(v))]
        return F.create_map(*pairs)[F.col("_file_key")].alias(name)

    return [column("routed_date", [f.day for f in files]), column("source_format", [f.format for f in files]),
            column("source_file", [f.source_file for f in files]),
            column("ingest_run_id", [f.ingest_run_id for f in files]),
            column("ingest_ts", [f.ingest_ts for f in files])]


def _by_compression(files: list[ValidatedFile]) -> list[list[ValidatedFile]]:
    """Plain and gzip files apart: one scan each.

    Spark packs a scan's files into tasks by their size on disk; a gzip file
    holds several times the records its size says, so in a mixed scan the task
    packed with gzip files ran for half the stage while the other cores idled.
    Each scan sizes its own splits, so tasks carry comparable work; gzip's
    (the heaviest per task) go first, so lighter tasks fill in behind them.
    """
    groups: dict[bool, list[ValidatedFile]] = {}
    for f in files:
        groups.setdefault(f.path.endswith(".gz"), []).append(f)
    return [g for _, g in sorted(groups.items(), reverse=True)]


def _lines_schema() -> T.StructType:
    """A converted format's validated Parquet as Spark reads it: :data:`lake_assets.ingest.lines.LINES_SCHEMA`,
    declared once (in Arrow, what ingestion writes it with)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from lake_assets.ingest.lines import LINES_SCHEMA

    return from_arrow_schema(LINES_SCHEMA)


def _file_key(path: str) -> str:
    # <format>/year=/month=/day=/<hash><ext>: the same bytes landed as two formats stay apart.
    parts = path.split("/")
    return "/".join(parts[-5:])


# -- Spark: one strict parse of a record's JSON text ----------------------------
_SENTINEL = "lake:end-of-record:5b1e0c"
#: JSON's insignificant whitespace (RFC 8259), the only text allowed before the object.
_OBJECT_START = r"^[ \t\n\r]*\{"


def json_record(record):
    """The record parsed once, strictly, as a variant; null unless it is exactly one JSON object.

    ``from_json``, ``parse_json`` and ``json_object_keys`` accept trailing text
    and a second object; ingestion (Python's ``json.loads``) calls those
    malformed, so Spark must too. The record is parsed wrapped in an array with
    a sentinel after it: anything after the object breaks the parse or adds
    elements. A text starting with ``{`` that parses whole is an object.
    Duplicate keys keep the last value, as in Python (the session allows them).
    Read fields from the result with :func:`json_get` (the object is element 0).
    """
    from pyspark.sql import functions as F

    wrapped = F.try_parse_json(F.concat(F.lit("["), record, F.lit(f',"{_SENTINEL}"]')))
    # Exactly two elements, the second the sentinel appended: the record was one value.
    ok = ((F.try_variant_get(wrapped, "$[1]", "string") == F.lit(_SENTINEL))
          & F.try_variant_get(wrapped, "$[2]", "variant").isNull() & record.rlike(_OBJECT_START))
    return F.when(ok, wrapped)


def json_get(parsed, path: str, type_name: str):
    """``try_variant_get`` of a JSONPath (``$``, ``$.name``, ``$['name']``) inside :func:`json_record`'s result.

    Reading the object in place (``$[0]...``) rather than extracting it first
    halves the parse stage's cost: no copy of every record's variant.
    """
    from pyspark.sql import functions as F

    if not path.startswith("$"):
        raise ValueError(f"a JSONPath starts with $: {path!r}")
    return F.try_variant_get(parsed, "$[0]" + path[1:], type_name)
