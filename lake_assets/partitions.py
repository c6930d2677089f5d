"""Partitions shared by every domain, defined once."""
from __future__ import annotations

import datetime as dt
import functools

from dagster import DailyPartitionsDefinition


@functools.lru_cache
def daily_partitions(start: dt.date) -> DailyPartitionsDefinition:
    """Daily UTC partitions from ``start`` (LakeSettings.start_date) through tomorrow: the contracts
    accept events up to one day after ingestion, so tomorrow's partition must exist today."""
    return DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=2)
