"""The one small interface every domain exposes, so the CLI, the summary and the catalog
iterate over domains instead of branching per domain.

A domain package (``lake_assets/domains/<name>/``) declares a module-level
``DOMAIN = Domain(...)``: its definitions, its tables, its generator (with the
options it adds to ``lake generate``) and how ``lake run`` drives it.
``definitions.py`` lists the domains; nothing here imports one.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from lake_assets.catalog.tables import Table


def at_least(minimum, number: type = int, why: str = ""):
    """An ``argparse`` type: ``number`` (``int`` or ``float``) of ``minimum`` or more, refused otherwise
    (argparse's usage and exit 2) with ``why`` the bound is there, or "give <minimum> or more"."""
    import argparse

    kind = "a whole number" if number is int else "a number"

    def parse(text: str):
        try:
            value = number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not value >= minimum:  # NaN too
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}{why or f': give {minimum} or more'}")
        return value

    return parse


@dataclass(frozen=True)
class Option:
    """A ``lake generate``/``lake demo`` option a domain adds (``--users``, ``--orders-per-day``)."""

    flag: str
    type: type  # ``bool``: a bare flag (``--gzip``), off unless given
    default: Any
    help: str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def add_to(self, parser) -> None:
        """Declare this option on an ``argparse`` parser (``lake generate`` and ``lake demo``)."""
        if self.type is bool:
            parser.add_argument(self.flag, action="store_true", help=self.help)
        else:
            parser.add_argument(self.flag, type=self.type, default=self.default, help=self.help)


@dataclass(frozen=True)
class GenerateRequest:
    """What ``lake generate`` asks of a domain's generator: the common knobs plus the domain's options."""

    start: dt.date
    days: int
    records_per_day: int
    bad_share: float
    bad_files: int
    seed: int
    now: dt.datetime
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)


class RunReport(Protocol):
    """What a domain's ``lake run`` returns: its Dagster runs and a one-line summary."""

    domain: str
    runs: list

    @property
    def success(self) -> bool: ...

    @property
    def summary(self) -> str: ...


@dataclass(frozen=True)
class Example:
    """A question a user can paste into ``lake sql`` (README, demo summary)."""

    question: str
    sql: str


@dataclass(frozen=True)
class Chart:
    """A chart a domain puts in the lake report: a query through the SQL resource and how to draw it.

    The report (``lake_assets/analytics/report.py``) draws every domain's charts under the
    domain's heading; a chart whose ``requires`` tables are not in the catalog (a domain with
    no data yet) is left out with a note rather than drawn empty.
    """

    title: str
    sql: str
    kind: str  # "line" | "bar" | "table"
    x: str = ""
    y: tuple[str, ...] = ()
    #: A column whose values each get their own trace (a service, a country, a category).
    color: str | None = None
    #: Qualified tables (``logs.daily_activity``) the query reads.
    requires: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Domain:
    name: str
    description: str
    #: (settings) -> the domain's Definitions (assets, checks, jobs, sensors, schedules, own resources),
    #: built with those LakeSettings (start date, dedup window, cron, thresholds).
    definitions: Callable[[Any], Any]
    #: () -> every table the domain writes (imported lazily: tables pull in pyspark's type module).
    tables: Callable[[], Sequence[Table]]
    #: (storage, request) -> a line saying what was generated; None for a consumer of the others'
    #: tables (the analytics room), which has nothing of its own to generate.
    generate: Callable[[Any, GenerateRequest], str] | None
    #: (defs, instance, storage, progress, settings) -> RunReport: ingest what waits, build it to gold.
    run: Callable[[Any, Any, Any, Callable[[str], None], Any], RunReport]
    #: () -> the domain's LandingSpec when files land for it in raw/ (its folders are claimed).
    landing: Callable[[], Any] | None = None
    generate_options: tuple[Option, ...] = ()
    examples: tuple[Example, ...] = ()
    #: The domain's charts in the lake report.
    report: tuple[Chart, ...] = ()
    #: (days, records per day) ``lake demo`` generates unless told otherwise (default: a week at
    #: the common default): commerce generates five weeks, the history a propensity model needs.
    demo_span: tuple[int, int] | None = None
    #: Asset keys (user strings) whose materializations bring new data in from outside (what
    #: staleness is measured from); default: the landing zone's validated assets.
    sources: tuple[str, ...] = ()
    #: The job that builds what the sources feed (what ``lake run`` runs for stale partitions); several,
    #: in build order, when the domain's assets are partitioned more than one way (a Dagster job has
    #: one partitions definition).
    build_job: str | tuple[str, ...] = ""

    @property
    def build_job_name(self) -> str | tuple[str, ...]:
        return self.build_job or f"{self.name}_pipeline_job"

    def source_keys(self) -> list:
        from dagster import AssetKey

        if self.sources:
            return [AssetKey.from_user_string(s) for s in self.sources]
        return sorted(self.landing().validated_assets) if self.landing else []
