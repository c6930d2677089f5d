"""Partitions shared by every domain, defined once: dates known ahead, and keys the data brings."""
from __future__ import annotations

import datetime as dt
import functools
from typing import Iterable

from dagster import DailyPartitionsDefinition, DynamicPartitionsDefinition


@functools.lru_cache
def daily_partitions(start: dt.date) -> DailyPartitionsDefinition:
    """Daily UTC partitions from ``start`` (LakeSettings.start_date) through tomorrow: the contracts
    accept events up to one day after ingestion, so tomorrow's partition must exist today."""
    return DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=2)


@functools.lru_cache
def data_partitions(name: str) -> DynamicPartitionsDefinition:
    """Partitions whose keys come from the rows (a sale's month: only its date, looked up in a
    dimension, says which), added by the asset that finds them (:func:`add_keys`) before anything
    is built for them."""
    return DynamicPartitionsDefinition(name=name)


def add_keys(instance, partitions: DynamicPartitionsDefinition, keys: Iterable[str]) -> list[str]:
    """Add the ``keys`` ``partitions`` lacks, in sorted order (a dynamic definition orders its keys
    by insertion, and a run covers a range of that order: months added in order make a range of
    months); returns those added."""
    new = sorted({k for k in keys if not instance.has_dynamic_partition(partitions.name, k)})
    if new:
        instance.add_dynamic_partitions(partitions.name, new)
    return new


def ordered_keys(partitions, instance) -> list[str]:
    """Every key of ``partitions`` in its own order (dates by date, a dynamic definition's keys as added)."""
    return list(partitions.get_partition_keys(dynamic_partitions_store=instance))
