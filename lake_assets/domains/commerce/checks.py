"""Asset checks of the commerce lake, declared from the shared check factories.

Checks on silver, dims and facts guard the marts: blocking. Each check's outcome
is also merged into the metrics zone (the metrics CSV of the partition it
checked), next to the table's row counts and null rates.
"""

import functools

import pandera.pyspark as pa
from dagster import AssetCheckResult, AssetChecksDefinition
from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.domains.commerce import gold, silver
from lake_assets.domains.commerce.assets import FORMATS, GOLD_TABLES, QUARANTINE_TABLES, SILVER_TABLES, ZONES
from lake_assets.domains.commerce.spec import DATASETS, DatasetSpec
from lake_assets.partitions import daily_partitions
from lake_assets.quality.checks import (
    Accounting,
    Reference,
    accounting_check,
    measure,
    pandera_schema,
    rate_check,
    read_source,
    recorded_check,
    schema_check,
    table_checks,
)
from lake_assets.quality.rules import REJECT_SCHEMA
from lake_assets.settings import LakeSettings, module_built_from_env

_REJECT_STRUCT = T.StructType([f for f in REJECT_SCHEMA.fields if not f.name.startswith("_")])


# -- silver ---------------------------------------------------------------------------------
def _silver_pandera(spec: DatasetSpec) -> pa.DataFrameSchema:
    checks: dict[str, list] = {}
    for c in spec.columns:
        if c.allowed:
            checks[c.name] = [pa.Check.isin(list(c.allowed))]
        elif c.non_negative:
            checks[c.name] = [pa.Check.ge(0)]
    return pandera_schema(silver.silver_schema(spec), checks)


def accounting(spec: DatasetSpec) -> Accounting:
    """Per date: records ingestion routed there (and how many for want of a usable date, all
    quarantined), and rows silver and quarantine hold: manifests and Parquet footers only."""
    return Accounting(formats=(FORMATS[spec.name],), valid={"silver": (SILVER_TABLES[spec.name], None)},
                      rejected=("quarantined", QUARANTINE_TABLES[spec.name]), undated="undated_quarantined",
                      zones=ZONES)


def silver_checks(spec: DatasetSpec, settings: LakeSettings) -> list[AssetChecksDefinition]:
    name, asset = spec.name, f"silver_{spec.name}"
    daily = {"dataset": name, "partitions_def": daily_partitions(settings.start_date)}
    return [
        table_checks(asset, SILVER_TABLES[name], _silver_pandera(spec), list(spec.primary_key), **daily,
                     keys_description=f"({', '.join(spec.primary_key)}) is unique in the partitions checked."),
        accounting_check(asset, accounting(spec), name=f"{asset}_every_row_accounted", **daily,
                         description="Every bronze record routed to the partition is in silver or "
                                     "quarantine, once (from the ingestion manifests and Parquet footers)."),
        rate_check(asset, accounting(spec), settings.quarantine_rate,
                   name=f"{asset}_quarantine_rate", **daily,
                   description="Share of the partition's dated rows quarantined: WARN above "
                   "LAKE_QUARANTINE_RATE_WARN (default 0.10), ERROR (blocks gold) above LAKE_QUARANTINE_RATE_ERROR "
                   "(default 0.30). Rows without a usable date land on their ingest date and are reported "
                   "apart (undated_quarantined), not counted against it."),
        schema_check(f"quarantine_{name}", QUARANTINE_TABLES[name], pandera_schema(_REJECT_STRUCT),
                     blocking=False, **daily),
    ]


# -- gold --------------------------------------------------------------------------------------
@recorded_check(asset="dim_users", name="dim_users_scd2", dataset="gold", blocking=True, resources=("spark",),
                description="SCD type 2 sanity: no overlapping or empty validity windows, exactly one current "
                            "row per user, one unknown member (key -1).")
def dim_users_scd2(context, keys):
    dim = read_source(context, GOLD_TABLES["dim_users"], keys, "dim_users")
    return scd2_result(dim)


def scd2_result(dim) -> tuple[AssetCheckResult, int]:
    """The SCD2 verdict on a ``dim_users`` table, and how many things are wrong with it.

    One pass (:func:`measure`): one window by user puts each version beside the next one and
    its user's count of current rows, and the three counts are folded as the window runs.
    """
    by_user = Window.partitionBy("user_id").orderBy("valid_from")
    whole_user = by_user.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    versions = dim.select(
        "user_id", "user_key", "valid_from", "valid_to", F.lead("valid_from").over(by_user).alias("_next"),
        F.sum(F.col("is_current").cast("int")).over(whole_user).alias("_current"),
        F.row_number().over(by_user).alias("_version"))
    known = F.col("user_id").isNotNull()
    bad_window = (F.col("valid_to").isNotNull() & (F.col("valid_to") <= F.col("valid_from"))) | (
        F.col("_next").isNotNull() & (F.col("valid_to").isNull() | (F.col("_next") < F.col("valid_to"))))
    [found] = measure((versions, {
        "overlapping_or_empty_windows": F.count(F.when(known & bad_window, 1)),
        # Each user counted once, on its first version (its count of current rows is on every version).
        "users_without_exactly_one_current_row": F.count(
            F.when(known & (F.col("_version") == 1) & (F.col("_current") != 1), 1)),
        "unknown_member_rows": F.count(F.when(F.col("user_key") == gold.UNKNOWN_USER_KEY, 1)),
    }))
    wrong = found["overlapping_or_empty_windows"] + found["users_without_exactly_one_current_row"] \
        + abs(found["unknown_member_rows"] - 1)
    return AssetCheckResult(passed=wrong == 0, metadata=found), wrong


def gold_checks(settings: LakeSettings) -> list[AssetChecksDefinition]:
    t = GOLD_TABLES
    status, country, users = t["dim_status"], t["dim_country"], t["dim_users"]
    specs = [
        # asset, struct, partitioned, unique key, references
        ("dim_users", gold.DIM_USERS, False, ["user_key"],
         [Reference("country", country, "dim_country", "country"), Reference("status", status, "dim_status", "status")]),
        ("dim_country", gold.DIM_COUNTRY, False, ["country"], []),
        ("dim_status", gold.DIM_STATUS, False, ["domain", "status"], []),
        ("dim_date", gold.DIM_DATE, False, ["date"], []),
        ("fact_events", gold.FACT_EVENTS, True, ["event_id"],
         [Reference("user_key", users, "dim_users", "user_key"), Reference("event_type", status, "dim_status", "status")]),
        ("fact_transactions", gold.FACT_TRANSACTIONS, True, ["transaction_id"],
         [Reference("user_key", users, "dim_users", "user_key"), Reference("status", status, "dim_status", "status")]),
        ("fact_user_activity", gold.FACT_USER_ACTIVITY, True, ["user_id", "date"], []),
        ("daily_revenue", gold.DAILY_REVENUE, True, ["date", "country", "currency"],
         [Reference("country", country, "dim_country", "country")]),
        ("daily_active_users", gold.DAILY_ACTIVE_USERS, True, ["date", "country"],
         [Reference("country", country, "dim_country", "country")]),
        ("user_ltv", gold.USER_LTV, False, ["user_id", "currency"], []),
    ]
    non_negative = {"events", "sessions", "purchases", "revenue", "orders", "refunded_amount", "active_users"}
    out: list[AssetChecksDefinition] = [dim_users_scd2]
    for asset, struct, partitioned, unique, refs in specs:
        checks = {f.name: [pa.Check.ge(0)] for f in struct.fields if f.name in non_negative}
        kw = {"dataset": "gold", "partitions_def": daily_partitions(settings.start_date) if partitioned else None}
        out.append(table_checks(asset, t[asset], pandera_schema(struct, checks), unique, refs=refs, **kw))
    return out


@functools.lru_cache
def build(settings: LakeSettings) -> dict[str, list]:
    """The commerce checks for ``settings``: its partitions and its quarantine-rate thresholds."""
    return {"COMMERCE_CHECKS": [c for spec in DATASETS.values() for c in silver_checks(spec, settings)]
            + gold_checks(settings)}


__getattr__ = module_built_from_env(build)
