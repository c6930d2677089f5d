"""SQL over the lake: the DuckDB connection on the embedded catalog, ``lake sql``, and a Dagster resource.

:func:`connect` opens the catalog file (read-only by default, so any number of
readers can share it) ready to read the lake its views point at: local paths as
they are, ``s3://`` through DuckDB's httpfs extension loaded from the
``duckdb-ext-httpfs`` wheel (nothing downloaded at run time), with a temporary
secret built from the standard AWS credential chain, region and
``AWS_ENDPOINT_URL`` (the settings :class:`~lake_assets.lake.LakeStorage` uses).

Why httpfs: ``benchmarks/sql_s3.py`` measured both ways of reading S3 on moto (its
server in its own process) over the same catalog view: 400 hive-partitioned files,
405 MB, 12 M rows, each query on a fresh connection as ``lake sql`` runs it, median
of 3, httpfs vs fsspec: count(*) 1.40 s vs 8.04 s (5.8x), a two-column aggregate
over every file 2.89 s vs 12.01 s (4.2x), an aggregate pruned to 3 of 40
partitions 0.22 s vs 1.43 s (6.5x), a point lookup in one partition 0.12 s vs
0.98 s (8.3x); pyarrow.dataset, the plain baseline, took 0.86, 2.71, 0.17 and
0.11 s. More DuckDB threads did not help (moto's single process is the ceiling).
DuckDB's fsspec bridge (``register_filesystem(ArrowFSWrapper(pyarrow
S3FileSystem))``) is kept only for the benchmark that measures the two.

``lake sql`` (:func:`add_sql_command`) and :class:`LakeSQLResource` run statements
through :func:`open_result`, which yields an Arrow ``RecordBatchReader``: results
stream batch by batch to csv / json lines / parquet, so a large result never sits in
memory. ``--engine athena`` sends the statement to Athena instead
(:func:`lake_assets.catalog.athena.athena_batches`) and writes through the same
writers.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import decimal
import importlib.util
import io
import json
import os
import re
import sys
from typing import IO, Callable, Iterator
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
from dagster import ConfigurableResource
from pydantic import Field

from lake_assets import settings
from lake_assets.catalog.duckdb import META, quote_str, with_lock_retry

FORMATS = ("table", "csv", "json", "parquet")
ENGINES = ("duckdb", "athena")
BATCH_ROWS = 65_536
#: Exit status of a statement DuckDB (or Athena) refused: syntax, unknown table, bad cast...
EXIT_QUERY_ERROR = 2


class CatalogMissing(RuntimeError):
    """No catalog file yet: nothing has registered a table."""


# -- connections --------------------------------------------------------------------------------
def extension_directory() -> str | None:
    """The ``duckdb-ext-*`` wheels' extension folder (``<site-packages>/duckdb_ext/extensions``)."""
    spec = importlib.util.find_spec("duckdb_ext")
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(base, "extensions")
        if os.path.isdir(path):
            return path
    return None


def _config() -> dict:
    """The same config for every connection: DuckDB refuses a second connection to a file
    open in this process with another one. Never download an extension."""
    config: dict = {"autoinstall_known_extensions": False}
    ext = extension_directory()
    if ext:
        config["extension_directory"] = ext
    return config


def open_database(path: str, *, read_only: bool = True, s3: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection on a DuckDB file (no retry here), in UTC, with S3 access when asked."""
    con = duckdb.connect(path, read_only=read_only, config=_config())
    try:
        con.execute("SET TimeZone = 'UTC'")
        if s3:
            enable_s3(con)
    except BaseException:
        con.close()
        raise
    return con


def s3_secret_sql(name: str = "lake_s3") -> str:
    """``CREATE SECRET`` for httpfs from the AWS credential chain, region and ``AWS_ENDPOINT_URL``.

    Temporary (in memory): credentials are never written into the catalog file.
    """
    import boto3

    session = boto3.Session()
    region = os.environ.get("AWS_REGION") or session.region_name or "us-east-1"
    parts = ["TYPE s3", f"REGION {quote_str(region)}"]
    creds = session.get_credentials()
    if creds is not None:
        frozen = creds.get_frozen_credentials()
        parts += [f"KEY_ID {quote_str(frozen.access_key)}", f"SECRET {quote_str(frozen.secret_key)}"]
        if frozen.token:
            parts.append(f"SESSION_TOKEN {quote_str(frozen.token)}")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        # MinIO, moto and LocalStack serve buckets by path, as LakeStorage addresses them.
        parts += [f"ENDPOINT {quote_str(parsed.netloc + parsed.path.rstrip('/'))}", "URL_STYLE 'path'",
                  f"USE_SSL {'true' if parsed.scheme == 'https' else 'false'}"]
    return f"CREATE OR REPLACE TEMPORARY SECRET {name} ({', '.join(parts)})"


def enable_s3(con: duckdb.DuckDBPyConnection, *, via: str = "httpfs") -> str:
    """Let ``con`` read ``s3://`` through ``httpfs`` (the wheel's extension; what every query uses),
    or ``fsspec`` (DuckDB's bridge over pyarrow's S3 filesystem: only for ``benchmarks/sql_s3.py``,
    which measures the two). Returns the way chosen."""
    if via == "httpfs":
        try:
            con.execute("LOAD httpfs")
        except duckdb.Error as exc:
            raise RuntimeError(f"DuckDB cannot load its httpfs extension ({str(exc).splitlines()[0]}); "
                               "install the pinned duckdb-ext-httpfs wheel (constraints.txt)") from exc
        con.execute(s3_secret_sql())
        return "httpfs"
    from fsspec.implementations.arrow import ArrowFSWrapper

    from lake_assets.lake.storage import _s3_filesystem

    con.register_filesystem(ArrowFSWrapper(_s3_filesystem(None, None)))
    return "fsspec"


def connect(path: str | None = None, *, storage_root: str | None = None, read_only: bool = True,
            schema: str | None = None, s3_via: str = "httpfs") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection on the catalog, ready to query the lake's views.

    S3 access is set up when the lake root (``storage_root``, default ``LAKE_ROOT``) or
    any registered table lives on S3. ``schema`` (a domain) makes unqualified names
    resolve there. A lock held by a writer is waited for (up to ~30 s).
    """
    root = storage_root or settings.lake_root()
    path = os.path.abspath(path or settings.catalog_path(root))
    if not os.path.exists(path):
        raise CatalogMissing(f"no catalog at {path}: run `lake run` or `lake catalog sync`")
    con = with_lock_retry(lambda: open_database(path, read_only=read_only))
    try:
        if root.startswith("s3://") or _catalog_on_s3(con):
            enable_s3(con, via=s3_via)
        if schema:
            con.execute(f"SET schema = {quote_str(schema)}")
    except BaseException:
        con.close()
        raise
    return con


def _catalog_on_s3(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        return con.execute(f"SELECT count(*) FROM {META}.tables WHERE location LIKE 's3://%'").fetchone()[0] > 0
    except duckdb.CatalogException:
        return False


def registered_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(qualified name, description) of every registered table."""
    try:
        return con.execute(f"SELECT qualified_name, description FROM {META}.tables ORDER BY 1").fetchall()
    except duckdb.CatalogException:
        return []


# -- running statements ---------------------------------------------------------------------------
def _returns_rows(stmt) -> bool:
    return bool(stmt.expected_result_type) and stmt.expected_result_type[0] == duckdb.ExpectedResultType.QUERY_RESULT


def _empty_reader() -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(pa.schema([]), iter(()))


@contextlib.contextmanager
def open_result(sql: str, *, engine: str = "duckdb", catalog_path: str | None = None,
                lake_root: str | None = None, schema: str | None = None,
                on_result: Callable[[pa.RecordBatchReader], None] | None = None,
                ) -> Iterator[pa.RecordBatchReader]:
    """Run ``sql`` (one or more statements) and yield the last one's rows as a streaming reader.

    Earlier statements' rows go to ``on_result`` (``lake sql`` prints each). The
    connection closes when the block exits. Errors are DuckDB's own exceptions.
    """
    if engine == "athena":
        from lake_assets.catalog.athena import athena_batches

        from lake_assets.catalog.ddl import database_name

        database = database_name(settings.glue_database_prefix(), schema) if schema else None
        arrow_schema, batches = athena_batches(sql, database=database)
        yield pa.RecordBatchReader.from_batches(arrow_schema, batches)
        return
    if engine != "duckdb":
        raise ValueError(f"unknown SQL engine {engine!r}; known: {', '.join(ENGINES)}")
    statements = duckdb.extract_statements(sql)  # a syntax error is raised before any connection
    con = connect(catalog_path, storage_root=lake_root, schema=schema)
    try:
        reader = _empty_reader()
        for i, stmt in enumerate(statements):
            result = con.execute(stmt.query)
            reader = result.fetch_record_batch(BATCH_ROWS) if _returns_rows(stmt) else _empty_reader()
            if i < len(statements) - 1 and on_result is not None and reader.schema.names:
                on_result(reader)
        yield reader
    finally:
        con.close()


class LakeSQLResource(ConfigurableResource):
    """SQL over the lake for assets and checks that read gold: the same engine as ``lake sql``."""

    engine: str = Field(default="duckdb", description="duckdb (the embedded catalog) or athena")
    catalog_path: str = Field(default="", description="the DuckDB catalog file; empty: LAKE_CATALOG_PATH")
    lake_root: str = Field(default="", description="the lake root; empty: LAKE_ROOT")

    @classmethod
    def from_env(cls, catalog_path: str | None = None, lake_root: str | None = None) -> "LakeSQLResource":
        root = lake_root or settings.lake_root()
        return cls(engine=settings.sql_engine(), catalog_path=catalog_path or settings.catalog_path(root),
                   lake_root=root)

    def _open(self, sql: str, schema: str | None):
        return open_result(sql, engine=self.engine, catalog_path=self.catalog_path or None,
                           lake_root=self.lake_root or None, schema=schema)

    def query(self, sql: str, *, schema: str | None = None) -> pa.Table:
        """The whole result as an Arrow table (for small answers: checks, marts)."""
        with self._open(sql, schema) as reader:
            return reader.read_all()

    def batches(self, sql: str, *, schema: str | None = None) -> Iterator[pa.RecordBatch]:
        """The result batch by batch; the connection closes when the iteration ends."""
        with self._open(sql, schema) as reader:
            yield from reader


# -- writers --------------------------------------------------------------------------------------
def _json_default(value):
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def _is_nested(t: pa.DataType) -> bool:
    return pa.types.is_nested(t) or pa.types.is_dictionary(t)


def write_csv(reader: pa.RecordBatchReader, out: IO[str]) -> int:
    """CSV with a header, batch by batch; nested values (lists, structs, maps) as JSON text."""
    import pyarrow.csv as pacsv

    rows, header = 0, True
    for batch in reader:
        cols = [pa.array([None if v is None else json.dumps(v, default=_json_default) for v in c.to_pylist()],
                         pa.string()) if _is_nested(c.type) else c for c in batch.columns]
        buf = io.BytesIO()
        pacsv.write_csv(pa.record_batch(cols, names=batch.schema.names), buf,
                        pacsv.WriteOptions(include_header=header))
        out.write(buf.getvalue().decode("utf-8"))
        header, rows = False, rows + batch.num_rows
    if header and reader.schema.names:  # no rows: still the header
        out.write(",".join(json.dumps(n) for n in reader.schema.names) + "\n")
    return rows


def write_json(reader: pa.RecordBatchReader, out: IO[str]) -> int:
    """One JSON object per line (dates and timestamps ISO 8601, decimals as numbers)."""
    rows = 0
    for batch in reader:
        for row in batch.to_pylist():
            out.write(json.dumps(row, default=_json_default, ensure_ascii=False) + "\n")
        rows += batch.num_rows
    return rows


def write_parquet(reader: pa.RecordBatchReader, sink) -> int:
    """One Parquet file, a row group per batch."""
    import pyarrow.parquet as pq

    rows = 0
    with pq.ParquetWriter(sink, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=_json_default, ensure_ascii=False)
    return str(value)


def write_table(reader: pa.RecordBatchReader, out: IO[str], *, max_rows: int = 1000, max_width: int = 60) -> int:
    """Aligned columns (psql style), numbers right-aligned; at most ``max_rows`` rows are kept."""
    names = reader.schema.names
    if names == ["explain_key", "explain_value"]:  # EXPLAIN: DuckDB's drawing, as it is
        for batch in reader:
            for value in batch.column(1).to_pylist():
                out.write(value.rstrip("\n") + "\n")
        return 0
    rows: list[list[str]] = []
    more = False
    for batch in reader:
        for row in zip(*(c.to_pylist() for c in batch.columns)) if batch.num_columns else ():
            if len(rows) == max_rows:
                more = True
                break
            rows.append([_cell(v).replace("\n", "\\n") for v in row])
        if more:
            break
    rows = [[c if len(c) <= max_width else c[:max_width - 1] + "…" for c in r] for r in rows]
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]
    right = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
             for t in reader.schema.types]
    out.write(" " + " | ".join(n.center(w) for n, w in zip(names, widths)) + "\n")
    out.write("-" + "-+-".join("-" * w for w in widths) + "\n")
    for r in rows:
        out.write(" " + " | ".join(c.rjust(w) if rj else c.ljust(w)
                                   for c, w, rj in zip(r, widths, right)).rstrip() + "\n")
    tail = f"first {max_rows} rows shown; --format csv --output FILE writes them all" if more else \
        f"{len(rows)} row{'s' if len(rows) != 1 else ''}"
    out.write(f"({tail})\n")
    return len(rows)


def write_result(reader: pa.RecordBatchReader, fmt: str, out: IO[str], *, output: str | None = None,
                 max_rows: int = 1000) -> int:
    """Write a result in ``fmt`` to ``output`` (a file) or ``out`` (a text stream)."""
    if not reader.schema.names:
        return 0
    if fmt == "parquet":
        if output:
            return write_parquet(reader, output)
        out.flush()
        return write_parquet(reader, pa.PythonFile(out.buffer, mode="w"))
    with (open(output, "w", encoding="utf-8", newline="") if output else contextlib.nullcontext(out)) as f:
        if fmt == "csv":
            return write_csv(reader, f)
        if fmt == "json":
            return write_json(reader, f)
        return write_table(reader, f, max_rows=max_rows)


# -- lake sql ---------------------------------------------------------------------------------------
def add_sql_command(subparsers) -> argparse.ArgumentParser:
    """Add ``lake sql`` to an argparse subparsers object (``args.func(args)`` runs it)."""
    p = subparsers.add_parser(
        "sql", help="query the lake with SQL (DuckDB over the catalog; Athena on AWS)",
        description="Run SQL over the lake's tables (domain.table). With no query and no -f, an "
                    "interactive prompt: statements end with ';', .tables lists tables, \\q quits.")
    p.add_argument("query", nargs="?", help="the SQL to run (one or more statements)")
    p.add_argument("-f", "--file", help="read the SQL from this file ('-' = stdin)")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default), csv, json (one object per line) or parquet")
    p.add_argument("-o", "--output", help="write the result to this file instead of stdout")
    p.add_argument("--schema", metavar="DOMAIN", help="resolve unqualified table names in this domain")
    p.add_argument("--engine", choices=ENGINES, default=settings.sql_engine(),
                   help="duckdb (the embedded catalog, default) or athena (AWS)")
    p.add_argument("--max-rows", type=int, default=1000, help="rows the table format prints (default 1000)")
    p.set_defaults(func=cmd_sql)
    return p


def cmd_sql(args: argparse.Namespace) -> int:
    """``lake sql``: one query (argument or -f) or the interactive prompt."""
    if args.query and args.file:
        print("lake sql: give a query or -f FILE, not both", file=sys.stderr)
        return EXIT_QUERY_ERROR
    if args.format == "parquet" and not args.output and sys.stdout.isatty():
        print("lake sql: --format parquet writes binary: give --output FILE or redirect stdout", file=sys.stderr)
        return EXIT_QUERY_ERROR
    if args.file:
        with (contextlib.nullcontext(sys.stdin) if args.file == "-" else open(args.file, encoding="utf-8")) as f:
            return _run_one(args, f.read())
    if args.query:
        return _run_one(args, args.query)
    if args.output or args.format == "parquet":
        print("lake sql: --output and --format parquet need a query or -f FILE", file=sys.stderr)
        return EXIT_QUERY_ERROR
    return _interactive(args, sys.stdin, sys.stdout)


def _run_one(args: argparse.Namespace, sql: str, *, schema: str | None = None, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    schema = schema if schema is not None else args.schema
    try:
        with open_result(sql, engine=args.engine, schema=schema,
                         on_result=lambda r: write_result(r, args.format, out, max_rows=args.max_rows)
                         if args.format == "table" else None) as reader:
            write_result(reader, args.format, out, output=args.output, max_rows=args.max_rows)
        return 0
    except CatalogMissing as exc:
        print(f"lake sql: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `lake sql ... | head`: the reader has what it wanted
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except duckdb.Error as exc:
        print(str(exc), file=sys.stderr)
        if isinstance(exc, duckdb.CatalogException):
            _print_tables(sys.stderr)
        return EXIT_QUERY_ERROR
    except Exception as exc:
        if args.engine != "athena":
            raise
        # Athena's own verdict (a failed or timed-out query, a refused request, a missing setting).
        print(f"lake sql (athena): {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_QUERY_ERROR


def _print_tables(out: IO[str]) -> None:
    try:
        con = connect()
    except (CatalogMissing, duckdb.Error) as exc:
        print(f"(no table list: {exc})", file=out)
        return
    try:
        tables = registered_tables(con)
    finally:
        con.close()
    print("Registered tables:" if tables else "No table is registered yet.", file=out)
    width = max((len(n) for n, _ in tables), default=0)
    for name, description in tables:
        print(f"  {name.ljust(width)}  {description or ''}", file=out)


_USE = re.compile(r"^\s*use\s+([A-Za-z_][\w]*|\"[^\"]+\")\s*;?\s*$", re.IGNORECASE)
_QUIT = {"\\q", ".quit", ".exit", "quit", "exit", "quit;", "exit;"}
_HELP = """Statements end with ';' (several lines are fine). Each runs on its own connection, so a
prompt left open never blocks `lake run` from updating the catalog; `USE domain;` is remembered.
  .tables        the registered tables
  .help          this text
  \\q or .quit    leave (Ctrl-D too)"""


def _interactive(args: argparse.Namespace, stdin: IO[str], stdout: IO[str]) -> int:
    """The prompt: multi-line statements ended by ';', readline history next to the catalog when
    stdin is a terminal; without one, it reads statements from stdin and prints no prompt."""

    tty = stdin.isatty() and stdin is sys.stdin
    history = os.path.join(os.path.dirname(settings.catalog_path()), "sql_history")
    if tty:
        try:
            import readline

            with contextlib.suppress(OSError):
                readline.read_history_file(history)
            readline.set_history_length(2000)
        except ImportError:
            readline = None  # type: ignore[assignment]
        print(f"lake sql ({args.engine}) on {settings.catalog_path()}; .help for help, \\q to quit", file=stdout)
    schema, buffer, failed = args.schema, [], False
    try:
        while True:
            try:
                line: str | None = input(f"lake{':' + schema if schema else ''}> " if not buffer else "  ..> ") if tty else (stdin.readline() or None)
            except EOFError:
                line = None
            except KeyboardInterrupt:
                print(file=stdout)
                buffer = []
                continue
            if line is None:
                break
            text = line.rstrip("\n")
            word = text.strip()
            if not buffer:
                if not word:
                    continue
                if word.lower() in _QUIT:
                    break
                if word in (".tables", "\\d", "\\dt"):
                    _print_tables(stdout)
                    continue
                if word in (".help", "\\?", "help"):
                    print(_HELP, file=stdout)
                    continue
            buffer.append(text)
            if word.endswith(";"):
                sql, buffer = "\n".join(buffer), []
                use = _USE.match(sql)
                if use:  # remembered for the next statements, once DuckDB knows the schema
                    ok = _run_one(args, "SELECT 1", schema=use.group(1).strip('"'), out=io.StringIO()) == 0
                    schema = use.group(1).strip('"') if ok else schema
                    failed |= not ok
                else:
                    failed |= _run_one(args, sql, schema=schema, out=stdout) != 0
                stdout.flush()
        if "".join(buffer).strip():  # a last statement without ';'
            failed |= _run_one(args, "\n".join(buffer), schema=schema, out=stdout) != 0
    finally:
        if tty and readline is not None:
            os.makedirs(os.path.dirname(history), exist_ok=True)
            with contextlib.suppress(OSError):
                readline.write_history_file(history)
    return EXIT_QUERY_ERROR if failed else 0
