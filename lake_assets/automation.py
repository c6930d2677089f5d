"""Automation conditions shared by every domain's assets."""
from __future__ import annotations

from typing import Sequence

from dagster import AssetKey, AssetSelection, AutomationCondition


def _rebuild_on_upstream_change(*, wait_for_missing: bool, label: str,
                                only: Sequence[AssetKey] = ()) -> AutomationCondition:
    updated = AutomationCondition.any_deps_updated()
    if only:
        updated = updated.allow(AssetSelection.assets(*only))
    condition = updated.since_last_handled()
    if wait_for_missing:
        condition = condition & ~AutomationCondition.any_deps_missing()
    return (condition & ~AutomationCondition.any_deps_in_progress()
            & ~AutomationCondition.in_progress()).with_label(label)


#: Rebuild any partition whose upstream changed (not only the latest), once the
#: upstream is present and idle: a late file for an already-built day rebuilds
#: that day without a person acting (``AutomationCondition.eager()`` alone
#: watches the latest partition only).
REBUILD_ON_UPSTREAM_CHANGE = _rebuild_on_upstream_change(wait_for_missing=True, label="rebuild_on_upstream_change")

#: The same for an asset reading a window of upstream dates (commerce silver and its dedup
#: window): dates of the window without upstream data are normal, so a missing one does not block.
REBUILD_ON_WINDOW_CHANGE = _rebuild_on_upstream_change(wait_for_missing=False, label="rebuild_on_window_change")


def rebuild_on_changes_from(keys: Sequence[AssetKey]) -> AutomationCondition:
    """Rebuild the partitions that ``keys`` (the inputs named in the asset's
    :data:`~lake_assets.staleness.CHANGES_FROM`) report changed: the asset's other inputs are read
    whole, and what their changes touch arrives as those reports (``lake status`` and ``lake run``
    apply the same rule)."""
    return _rebuild_on_upstream_change(wait_for_missing=False, label="rebuild_on_reported_changes", only=keys)
