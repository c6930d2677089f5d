"""Asset checks of the orders lake; each records its outcome in the metrics zone.

* ``orders_landing_watermark_monotonic``: the committed marks never go back, and
  ``etl_watermarks`` holds the last one (state store, no Spark);
* ``orders_silver_unique_order_id``: silver is a current state, one row per order;
* ``orders_silver_rows_accounted``: every archived (extracted) row is in silver or
  discarded, or was superseded there by a newer version of its order;
* ``orders_silver_freshness``: the newest change in the source has reached the lake
  (silver, or discarded with reasons) within ``ORDERS_FRESHNESS_MAX_LAG_SECONDS``.
"""

import datetime as dt
import os

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from lake_assets.domains.orders.assets import DATASET
from lake_assets.quality.checks import recorded_check, unique_key_check

DEFAULT_FRESHNESS_LAG_SECONDS = 7200


def _instant(micros: int | None) -> dt.datetime | None:
    return None if micros is None else dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
        microseconds=micros)


def _silver(session, storage, keys):
    from lake_assets.domains.orders.validate import read_silver

    return read_silver(session, storage)


@recorded_check(asset="orders_landing", name="orders_landing_watermark_monotonic", dataset=DATASET,
                resources=("orders_source",),
                description="The watermark never moves back: every committed mark is at "
                "least the one before, and etl_watermarks holds the last.")
def orders_landing_watermark_monotonic(context, keys):
    from lake_assets.domains.orders.extract import history, read_state

    orders_source = context.resources.orders_source
    entries = history(orders_source)
    marks = [e["high_water_mark"] for e in entries]
    backwards = [{"run_id": b["run_id"], "mark": str(b["high_water_mark"]), "after": str(a["high_water_mark"])}
                 for a, b in zip(entries, entries[1:])
                 if a["high_water_mark"] is not None and (b["high_water_mark"] is None
                                                          or b["high_water_mark"] < a["high_water_mark"])]
    current = read_state(orders_source).mark
    stale = bool(marks) and current != marks[-1]
    result = AssetCheckResult(passed=not backwards and not stale, metadata={
        "commits": len(entries), "current_mark": str(current or ""), "last_committed": str(marks[-1] if marks else ""),
        "moved_back": MetadataValue.json(backwards)})
    return result, len(backwards) + int(stale)


orders_silver_unique_order_id = unique_key_check(
    "orders_silver", _silver, ["order_id"], dataset=DATASET, blocking=True,
    description="order_id is unique in silver (a current state).")


@recorded_check(asset="orders_silver", name="orders_silver_rows_accounted", dataset=DATASET, blocking=True,
                resources=("spark",),
                description="Every extracted row (archive/orders) is in silver or discarded, or superseded "
                            "there by a newer version of the same order.")
def orders_silver_rows_accounted(context, keys):
    from pyspark.sql import functions as F

    from lake_assets.domains.orders.validate import read_archive, read_discarded, read_silver

    session, storage = context.resources.spark.spark_session, context.resources.lake.storage
    known = (read_silver(session, storage).select("order_id", "updated_at")
             .unionByName(read_discarded(session, storage).select("order_id", "updated_at"))
             .groupBy("order_id").agg(F.max("updated_at").alias("_newest")))
    archive = read_archive(session, storage)
    joined = archive.join(known, archive["order_id"].eqNullSafe(known["order_id"]), "left")
    missing = joined.where(known["_newest"].isNull() | (known["_newest"] < archive["updated_at"]))
    counts = archive.agg(F.count(F.lit(1)).alias("n")).first()["n"], missing.count()
    sample = [f"{r['order_id']}@{r['updated_at']}" for r in
              missing.select(archive["order_id"], archive["updated_at"]).limit(10).collect()] if counts[1] else []
    result = AssetCheckResult(passed=counts[1] == 0, metadata={
        "extracted_rows": counts[0], "unaccounted_rows": counts[1], "unaccounted_sample": MetadataValue.json(sample)})
    return result, counts[1]


@recorded_check(asset="orders_silver", name="orders_silver_freshness", dataset=DATASET,
                resources=("spark", "orders_source"),
                description="The source's newest updated_at has reached the lake (silver, or "
                "discarded with reasons) within ORDERS_FRESHNESS_MAX_LAG_SECONDS (default 7200); WARN otherwise.")
def orders_silver_freshness(context, keys):
    from pyspark.sql import functions as F

    from lake_assets.domains.orders.validate import read_discarded, read_silver

    limit = float(os.environ.get("ORDERS_FRESHNESS_MAX_LAG_SECONDS") or DEFAULT_FRESHNESS_LAG_SECONDS)
    session, storage = context.resources.spark.spark_session, context.resources.lake.storage
    newest = F.unix_micros(F.max("updated_at"))  # an instant, whatever the driver's local zone
    silver_newest = _instant(read_silver(session, storage).agg(newest).first()[0])
    lake_newest = _instant(read_silver(session, storage).select("updated_at")
                           .unionByName(read_discarded(session, storage).select("updated_at"))
                           .agg(newest).first()[0])
    source_newest = context.resources.orders_source.source_newest()
    if source_newest is None:
        lag = 0.0
    elif lake_newest is None:
        lag = float("inf")
    else:
        lag = max((source_newest - lake_newest).total_seconds(), 0.0)
    result = AssetCheckResult(passed=lag <= limit, severity=AssetCheckSeverity.WARN, metadata={
        "source_newest_updated_at": str(source_newest or ""), "lake_newest_updated_at": str(lake_newest or ""),
        "silver_newest_updated_at": str(silver_newest or ""),
        "lag_seconds": lag if lag != float("inf") else -1.0, "max_lag_seconds": limit})
    return result, lag if lag != float("inf") else -1.0


ORDERS_CHECKS = [orders_landing_watermark_monotonic, orders_silver_unique_order_id, orders_silver_rows_accounted,
                 orders_silver_freshness]
