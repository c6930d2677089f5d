"""``lake generate tpcds``: dsdgen-format files in ``raw/tpcds/<table>/``, from DuckDB's ``tpcds`` extension.

DuckDB's extension is dsdgen itself (the TPC's generator, compiled in), so the
rows are the benchmark's: ``CALL dsdgen(sf=...)`` fills the 24 tables, and each
is written as dsdgen writes its ``.dat`` files (contract §1): ``|`` between
fields and after the last one, no header, no quoting, an empty field for NULL.
The extension comes from the ``duckdb-ext-tpcds`` wheel (duckdb 1.4.4 only):
DuckDB is pointed at the wheel's folder and never downloads anything.

Optional extras make the demo show every path of the contract without changing
what silver holds: ``bad_share`` appends broken lines to each table's last file
(each one quarantined by bronze or silver, or an exact re-delivery of a line
that deduplication folds back into one), and ``bad_files`` adds files that
cannot be read to their end (a truncated gzip, a file that is not UTF-8), which
are quarantined whole. With neither, silver equals DuckDB's own tables, which is
what the 99 queries are checked against.
"""
from __future__ import annotations

import gzip as gz
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field

from lake_assets.domains.tpcds import BELOW_MIN_SCALE, MIN_SCALE
from lake_assets.domains.tpcds.spec import TABLES, TableSpec
from lake_assets.lake.layout import join

RAW = "raw/tpcds"
#: What an appended bad line is made to break (each kind is one contract reason, or a re-delivery).
BAD_KINDS_FACT = ("wrong_field_count", "invalid_type", "missing_primary_key", "negative_value", "unknown_date",
                  "unknown_item", "duplicate")
BAD_KINDS_DIMENSION = ("wrong_field_count", "invalid_type", "missing_primary_key", "duplicate")
#: A surrogate key no TPC-DS table holds (date_dim's keys stop at 2488070, item's far lower).
UNKNOWN_KEY = "99999999"


@dataclass
class Generated:
    """What one generation wrote."""

    files: list[str] = field(default_factory=list)  # lake paths
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows dsdgen generated
    bad_lines: dict[str, int] = field(default_factory=dict)  # kind -> lines appended
    bad_files: list[str] = field(default_factory=list)  # lake paths of unreadable files


def connect_tpcds():
    """An in-memory DuckDB with the ``tpcds`` extension loaded from the wheel (nothing downloaded)."""
    import duckdb

    from lake_assets.catalog.sql import extension_directory

    folder = extension_directory()
    if folder is None:
        raise RuntimeError("the duckdb-ext-tpcds wheel is not installed (pip install duckdb-ext-tpcds, "
                           "for duckdb 1.4.4): it holds DuckDB's tpcds extension")
    con = duckdb.connect(config={"extension_directory": folder, "autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    try:
        con.execute("LOAD tpcds")
    except Exception as exc:
        con.close()
        raise RuntimeError(f"DuckDB cannot load the tpcds extension from {folder} (is duckdb-ext-tpcds "
                           f"installed for this duckdb version?): {exc}") from exc
    return con


def chunk_name(table: str, k: int, chunks: int, gzip: bool) -> str:
    """dsdgen's names: ``<table>.dat``, or ``<table>_<k>_<n>.dat`` for ``-PARALLEL n -CHILD k`` (1-based)."""
    stem = table if chunks == 1 else f"{table}_{k}_{chunks}"
    return f"{stem}.dat.gz" if gzip else f"{stem}.dat"


def _copy_sql(table: str, target: str, lo: int, hi: int, gzip: bool) -> str:
    options = "DELIMITER '|', HEADER false, QUOTE '', ESCAPE ''" + (", COMPRESSION gzip" if gzip else "")
    path = target.replace("'", "''")
    # ``NULL AS __eol``: one more, always empty, field gives the trailing '|' dsdgen writes.
    return (f"COPY (SELECT *, NULL AS __eol FROM {table} WHERE rowid >= {lo} AND rowid < {hi}) "
            f"TO '{path}' ({options})")


def _first_lines(path: str, n: int, gzip: bool) -> list[str]:
    out: list[str] = []
    with (gz.open(path, "rt", encoding="utf-8") if gzip else open(path, encoding="utf-8")) as f:
        for line in f:
            if len(out) >= n:
                break
            out.append(line.rstrip("\n"))
    return out


def _set(fields: list[str], spec: TableSpec, column: str, value: str) -> None:
    fields[spec.column_names.index(column)] = value


def break_line(line: str, spec: TableSpec, kind: str, rng: random.Random) -> str:
    """``line`` (a valid dsdgen line of ``spec``) changed to break ``kind`` (or repeated, for duplicate)."""
    fields = line.split("|")[:-1]  # the fields, without the empty one after the trailing '|'
    if kind == "duplicate":
        return line
    if kind == "wrong_field_count":
        return "|".join(fields[:-1]) + "|"
    if kind == "invalid_type":
        typed = [c for c in spec.columns if c.type != "string"]
        col = rng.choice(typed)
        bad = {"date": "2001-02-30", "identifier": "12x", "integer": "2147483648"}.get(col.type, "1.005")
        _set(fields, spec, col.name, bad)
    elif kind == "missing_primary_key":
        _set(fields, spec, rng.choice(spec.primary_key), "")
    elif kind == "negative_value":
        col = spec.by_name[rng.choice(spec.measures)]
        _set(fields, spec, col.name, "-1" if col.type == "integer" else "-1.00")
    elif kind == "unknown_date":
        _set(fields, spec, spec.dating.key, UNKNOWN_KEY)
    elif kind == "unknown_item":
        _set(fields, spec, spec.item_key, UNKNOWN_KEY)
    else:
        raise ValueError(kind)
    return "|".join(fields) + "|"


def _append(path: str, lines: list[str], gzip: bool) -> None:
    """Append lines to a chunk (a gzip file gets a second gzip member: still one valid gzip stream)."""
    data = "".join(f"{line}\n" for line in lines).encode("utf-8")
    with (gz.open(path, "ab") if gzip else open(path, "ab")) as f:
        f.write(data)


def _unreadable(i: int, sample: list[str], work: str) -> tuple[str, str]:
    """The i-th unreadable file: a truncated gzip or a file that is not UTF-8."""
    text = "".join(f"{line}\n" for line in sample).encode("utf-8")
    if i % 2 == 0:
        packed = gz.compress(text * 50, mtime=0)
        name, data = f"store_sales_corrupt_{i + 1}.dat.gz", packed[: max(len(packed) // 2, 20)]
    else:
        name, data = f"store_sales_not_utf8_{i + 1}.dat", text + b"\xff\xfe broken|\n"
    local = os.path.join(work, name)
    with open(local, "wb") as f:
        f.write(data)
    return name, local


def generate_tpcds(storage, *, scale: float, chunks: int = 1, gzip: bool = False, bad_share: float = 0.0,
                   bad_files: int = 0, seed: int = 7, tables: tuple[str, ...] | None = None,
                   work_dir: str | None = None) -> Generated:
    """Write the TPC-DS tables at scale factor ``scale`` into ``raw/tpcds/<table>/`` on ``storage``.

    ``chunks`` splits each table into that many files (dsdgen's ``-PARALLEL``
    names), ``gzip`` compresses them; ``tables`` limits which are written. Files
    are written locally by DuckDB, then each is published with one atomic put.
    """
    if chunks < 1:
        raise ValueError("chunks must be 1 or more")
    if not scale >= MIN_SCALE:  # dsdgen would never return
        raise ValueError(f"scale {scale} is below {MIN_SCALE}{BELOW_MIN_SCALE}")
    names = tuple(tables or TABLES)
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        raise ValueError(f"not TPC-DS tables: {unknown}")
    rng = random.Random(seed)
    out = Generated()
    work = tempfile.mkdtemp(prefix="lake-tpcds-", dir=work_dir)
    con = connect_tpcds()
    try:
        con.execute(f"CALL dsdgen(sf={float(scale)!r})")
        for table in names:
            spec = TABLES[table]
            n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            out.rows[table] = n
            locals_: list[tuple[str, str]] = []
            for k in range(1, chunks + 1):
                name = chunk_name(table, k, chunks, gzip)
                local = os.path.join(work, name)
                con.execute(_copy_sql(table, local, (k - 1) * n // chunks, k * n // chunks, gzip))
                locals_.append((name, local))
            n_bad = int(n * bad_share)
            if n_bad:
                kinds = BAD_KINDS_FACT if spec.is_fact else BAD_KINDS_DIMENSION
                sample = _first_lines(locals_[0][1], n_bad, gzip)
                bad = []
                for i, line in enumerate(sample):
                    kind = kinds[i % len(kinds)]
                    bad.append(break_line(line, spec, kind, rng))
                    out.bad_lines[kind] = out.bad_lines.get(kind, 0) + 1
                _append(locals_[-1][1], bad, gzip)
            for name, local in locals_:
                rel = join(RAW, table, name)
                storage.put_file(local, rel, move=True)
                out.files.append(rel)
        if bad_files:
            sample = _first_lines_sql(con, "store_sales", 20)
            for i in range(bad_files):
                name, local = _unreadable(i, sample, work)
                rel = join(RAW, "store_sales", name)
                storage.put_file(local, rel, move=True)
                out.bad_files.append(rel)
        return out
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


def _first_lines_sql(con, table: str, n: int) -> list[str]:
    """A few lines of ``table`` in dsdgen's format (for the unreadable files' content)."""
    cols = ", ".join(f"coalesce(CAST({c} AS VARCHAR), '')" for c in TABLES[table].column_names)
    rows = con.execute(f"SELECT concat_ws('|', {cols}) || '|' FROM {table} LIMIT {int(n)}").fetchall()
    return [r[0] for r in rows]
