"""Partitions shared by every domain, defined once."""
from __future__ import annotations

from dagster import DailyPartitionsDefinition

from lake_assets import settings

#: Daily UTC partitions from LAKE_START_DATE through tomorrow: the contracts accept
#: events up to one day after ingestion, so tomorrow's partition must exist today.
daily_partitions = DailyPartitionsDefinition(
    start_date=settings.start_date().isoformat(), timezone="UTC", end_offset=2
)
