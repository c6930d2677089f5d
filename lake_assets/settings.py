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


def dagster_home() -> str:
    home = os.environ.get("DAGSTER_HOME") or os.path.abspath(DEFAULT_DAGSTER_HOME)
    os.makedirs(home, exist_ok=True)
    return home


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a number") from exc


def catalog_path() -> str:
    """LAKE_CATALOG_PATH: the embedded DuckDB catalog (default: in the project-local Dagster home)."""
    home = os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME
    return os.path.abspath(os.environ.get("LAKE_CATALOG_PATH") or os.path.join(home, "catalog.duckdb"))
