"""Automation conditions shared by every domain's assets."""
from dagster import AutomationCondition

#: Rebuild any partition whose upstream changed (not only the latest), once the
#: upstream is present and idle: a late file for an already-built day rebuilds
#: that day without a person acting (``AutomationCondition.eager()`` alone
#: watches the latest partition only).
REBUILD_ON_UPSTREAM_CHANGE = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("rebuild_on_upstream_change")
