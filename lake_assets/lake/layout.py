"""Zone prefixes and partition paths, written once for every domain."""
from __future__ import annotations

import datetime as dt
from enum import Enum


class PartitionStyle(str, Enum):
    """How a daily partition is spelled in a path."""

    YMD = "ymd"  # year=YYYY/month=MM/day=DD (Hive style, as Glue/Athena lakes lay it out)
    DATE = "date"  # date=YYYY-MM-DD
    EVENT_DATE = "event_date"  # event_date=YYYY-MM-DD


def partition_path(style: PartitionStyle | str, day: dt.date | str) -> str:
    """The relative folder of one daily partition, e.g. ``year=2024/month=03/day=05``."""
    if isinstance(day, str):
        day = dt.date.fromisoformat(day)
    style = PartitionStyle(style)
    if style is PartitionStyle.YMD:
        return f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"
    return f"{style.value}={day.isoformat()}"


def join(*parts: str) -> str:
    """Join relative lake paths with single slashes."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
