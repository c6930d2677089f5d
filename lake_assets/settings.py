"""Environment-driven settings, read in one place so every entry point agrees.

Reading them touches no storage and starts nothing, so loading definitions stays cheap.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

#: The project-local lake and Dagster home used when the environment names none,
#: shared by the CLI and the README's UI command so the UI shows the demo's runs.
DEFAULT_LAKE_ROOT = ".lake"
DEFAULT_DAGSTER_HOME = ".dagster_home"
DEFAULT_START_DATE = "2024-01-01"


class SettingError(ValueError):
    """A setting (environment variable) the lake cannot use; the message names it and what it takes."""


def lake_root() -> str:
    root = os.environ.get("LAKE_ROOT") or DEFAULT_LAKE_ROOT
    return root if "://" in root else os.path.abspath(root)


def start_date() -> dt.date:
    raw = os.environ.get("LAKE_START_DATE") or DEFAULT_START_DATE
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise SettingError(f"LAKE_START_DATE={raw!r} is not a date: set it as YYYY-MM-DD, e.g. 2024-01-01") from exc


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
        raise SettingError(f"{name}={raw!r} is not a number: set it like 0.05, or unset it for the default") from exc


def _hour(name: str, default: int) -> int:
    hour = env_int(name, default)
    if hour > 23:
        raise SettingError(f"{name}={hour} is not an hour of the day: set it from 0 to 23")
    return hour


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    try:
        value = int(raw) if raw else default
    except ValueError as exc:
        raise SettingError(f"{name}={raw!r} is not a whole number: set it like {default}, or unset it") from exc
    if value < minimum:
        raise SettingError(f"{name}={raw!r} is below {minimum}: set it to {minimum} or more")
    return value


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


@dataclass(frozen=True)
class RateThresholds:
    """Share of rejected records above which a check warns, and above which it fails."""

    warn: float
    error: float

    @classmethod
    def from_env(cls, prefix: str = "LAKE_REJECT_RATE", warn: float = 0.05, error: float = 0.25) -> "RateThresholds":
        return cls(env_float(f"{prefix}_WARN", warn), env_float(f"{prefix}_ERROR", error))


@dataclass(frozen=True)
class LakeSettings:
    """What the code location's definitions are built with: read once, when they are built.

    ``build_defs(settings=...)`` takes one (tests build definitions with their own);
    :meth:`from_env` reads the environment's. Frozen and hashable, so a domain's build for
    given settings is made once and shared.
    """

    start_date: dt.date = dt.date.fromisoformat(DEFAULT_START_DATE)  # LAKE_START_DATE: the first partition
    dedup_window_days: int = 1  # LAKE_DEDUP_WINDOW_DAYS: commerce duplicates searched this many days apart
    orders_extract_cron: str = "0 * * * *"  # ORDERS_EXTRACT_CRON (UTC)
    orders_schedule_running: bool = True  # ORDERS_SCHEDULE_STATUS=stopped starts the schedule off
    reject_rate: RateThresholds = field(default_factory=lambda: RateThresholds(0.05, 0.25))  # LAKE_REJECT_RATE_*
    quarantine_rate: RateThresholds = field(default_factory=lambda: RateThresholds(0.10, 0.30))  # LAKE_QUARANTINE_RATE_*
    fresh_by_hour_utc: int = 6  # LAKE_FRESH_BY_HOUR_UTC: gold holds the previous day by this hour
    retry_delay_seconds: float = 1.0  # LAKE_RETRY_DELAY_SECONDS: first wait of a retried step (then 3x, 7x)

    @classmethod
    def from_env(cls) -> "LakeSettings":
        return cls(
            start_date=start_date(),
            dedup_window_days=env_int("LAKE_DEDUP_WINDOW_DAYS", 1),
            orders_extract_cron=os.environ.get("ORDERS_EXTRACT_CRON") or "0 * * * *",
            orders_schedule_running=(os.environ.get("ORDERS_SCHEDULE_STATUS") or "running").lower() != "stopped",
            reject_rate=RateThresholds.from_env("LAKE_REJECT_RATE", 0.05, 0.25),
            quarantine_rate=RateThresholds.from_env("LAKE_QUARANTINE_RATE", 0.10, 0.30),
            fresh_by_hour_utc=_hour("LAKE_FRESH_BY_HOUR_UTC", 6),
            retry_delay_seconds=env_float("LAKE_RETRY_DELAY_SECONDS", 1.0),
        )


def module_built_from_env(build: Callable[[LakeSettings], Mapping[str, Any]]) -> Callable[[str], Any]:
    """A module's ``__getattr__`` serving the names of ``build(LakeSettings.from_env())``.

    A domain module builds its definitions from settings (``build(settings)``); importing it
    reads nothing. Its module-level names (``from ...assets import processed_logs``) are the
    build with the environment's settings, made on first use, the same objects
    ``build_defs()`` uses (builds are cached per settings).
    """

    @functools.lru_cache(maxsize=1)
    def default() -> Mapping[str, Any]:
        return build(LakeSettings.from_env())

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return default()[name]
        except KeyError:
            raise AttributeError(name) from None

    return __getattr__
