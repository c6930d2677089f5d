"""Environment-driven settings, read in one place so every entry point agrees.

Reading them touches no storage and starts nothing, so loading definitions stays cheap.
"""
from __future__ import annotations

import datetime as dt
import os

#: The project-local lake and Dagster home used when the environment names none,
#: shared by the CLI and the README's UI command so the UI shows the demo's runs.
DEFAULT_LAKE_ROOT = ".lake"
DEFAULT_DAGSTER_HOME = ".dagster_home"
DEFAULT_START_DATE = "2024-01-01"


def lake_root() -> str:
    root = os.environ.get("LAKE_ROOT") or DEFAULT_LAKE_ROOT
    return root if "://" in root else os.path.abspath(root)


def start_date() -> dt.date:
    raw = os.environ.get("LAKE_START_DATE") or DEFAULT_START_DATE
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"LAKE_START_DATE={raw!r} is not a YYYY-MM-DD date") from exc


def dagster_home(create: bool = True) -> str:
    """DAGSTER_HOME, or the project-local one; created when asked (the CLI), never on a mere read."""
    home = os.environ.get("DAGSTER_HOME") or os.path.abspath(DEFAULT_DAGSTER_HOME)
    if create:
        os.makedirs(home, exist_ok=True)
    return home


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a number") from exc


def catalog_path(root: str | None = None) -> str:
    """LAKE_CATALOG_PATH: the embedded DuckDB catalog of the lake at ``root`` (default LAKE_ROOT).

    By default it lives in the Dagster home: ``catalog.duckdb`` for the project-local lake,
    ``catalog-<root spelled as a name>.duckdb`` for any other, so switching LAKE_ROOT never
    mixes two lakes in one catalog.
    """
    if os.environ.get("LAKE_CATALOG_PATH"):
        return os.path.abspath(os.environ["LAKE_CATALOG_PATH"])
    home = dagster_home(create=False)
    root = root or lake_root()
    if root == os.path.abspath(DEFAULT_LAKE_ROOT):
        return os.path.abspath(os.path.join(home, "catalog.duckdb"))
    import hashlib
    import re

    name = re.sub(r"[^A-Za-z0-9]+", "_", root).strip("_")[-48:]
    return os.path.abspath(os.path.join(home, f"catalog-{name}-{hashlib.sha1(root.encode()).hexdigest()[:8]}.duckdb"))


#: Glue/Athena databases are ``<prefix><domain>`` (``lake_logs``): one default, read in one place.
DEFAULT_GLUE_DATABASE_PREFIX = "lake_"


def glue_database_prefix() -> str:
    """LAKE_GLUE_DATABASE_PREFIX (may be empty: databases named as the domains)."""
    return os.environ.get("LAKE_GLUE_DATABASE_PREFIX", DEFAULT_GLUE_DATABASE_PREFIX)


def sql_engine() -> str:
    """LAKE_SQL_ENGINE: what runs ``lake sql`` and the ``sql`` resource: duckdb (default) or athena."""
    return (os.environ.get("LAKE_SQL_ENGINE") or "duckdb").lower()
