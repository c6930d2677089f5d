"""Checks of the analytics room, from the shared factories, per partition.

The predictions check is blocking: a score outside [0, 1], a user the users
dimension does not know, a version other than the champion's or a user scored
twice makes the run fail, so nothing downstream reads the partition (and
``lake run`` rebuilds it). Outcomes are merged into the metrics zone (dataset
``analytics``).
"""
import functools

from dagster import AssetCheckResult, MetadataValue

from lake_assets.analytics import tables
from lake_assets.analytics.assets import FEATURES, PREDICTIONS, USERS
from lake_assets.partitions import daily_partitions
from lake_assets.quality.checks import (
    key_violations,
    measure,
    pandera_schema,
    read_source,
    recorded_check,
    schema_check,
)
from lake_assets.settings import LakeSettings

DATASET = "analytics"


def read_registered(qualified_name: str):
    """A check's reader for another domain's table, found by name in the registry (no domain imported)."""

    def read(spark, storage, _keys):
        from lake_assets.definitions import registry
        from lake_assets.io_managers import lake_table, read_partitions_present

        table = registry().get(qualified_name)
        return read_partitions_present(spark, storage, lake_table(table), table.schema)

    return read


def features_pandera():
    import pandera.pyspark as pa

    from lake_assets.analytics.features import FEATURES_SCHEMA

    non_negative = {f.name: [pa.Check.ge(0)] for f in FEATURES_SCHEMA.fields
                    if f.name.endswith(("_7d", "_28d", "_days")) and f.dataType.typeName() in ("long", "integer", "double")}
    return pandera_schema(FEATURES_SCHEMA, {**non_negative, "label": [pa.Check.isin([0, 1])]})


@functools.lru_cache
def build(settings: LakeSettings) -> list:
    daily = {"dataset": DATASET, "partitions_def": daily_partitions(settings.start_date)}

    @recorded_check(asset="purchase_propensity", name="purchase_propensity_valid", blocking=True,
                    additional_deps=[USERS], resources=("spark", "model_registry"), **daily,
                    description="Every score in [0, 1]; every scored user in dim_users; every row scored by the "
                                "champion model version; one score per user and as-of date. Blocking.")
    def predictions_valid(context, keys):
        from pyspark.sql import functions as F

        scored = read_source(context, PREDICTIONS, keys, "purchase_propensity")
        users = read_source(context, read_registered(f"commerce.{USERS}"), [None])
        champion = context.resources.model_registry.registry(context.resources.lake.storage).champion_version()
        (dups, dup_sample), (orphans, orphan_sample) = key_violations(
            scored, ["user_id", "event_date"], [("user_id", users, "user_id")])
        [found] = measure((scored, {
            "rows": F.count(F.lit(1)),
            "out_of_range": F.count(F.when(~F.col("score").between(0.0, 1.0) | F.col("score").isNull(), 1)),
            "not_champion": F.count(F.when(F.col("model_version") != F.lit(-1 if champion is None else champion), 1)),
        }))
        bad = dups + orphans + found["out_of_range"] + found["not_champion"]
        return AssetCheckResult(passed=bad == 0, metadata={
            "rows": found["rows"], "champion_version": -1 if champion is None else champion,
            "scores_out_of_range": found["out_of_range"], "rows_not_by_champion": found["not_champion"],
            "users_not_in_dim_users": orphans, "users_not_in_dim_users_sample": MetadataValue.json(orphan_sample),
            "duplicate_keys": dups, "duplicate_keys_sample": MetadataValue.json(dup_sample)}), bad

    return [
        predictions_valid,
        schema_check("user_features", FEATURES, {"user_features": features_pandera()}, **daily,
                     description="pandera (PySpark) schema of the features: types, nullability, counts and "
                                 "days never negative, label 0 or 1 (NULL while its 7 days are not in)."),
        schema_check("purchase_propensity", PREDICTIONS,
                     {"purchase_propensity": pandera_schema(tables.PREDICTIONS_SCHEMA)}, blocking=False, **daily,
                     name="purchase_propensity_schema",
                     description="pandera (PySpark) schema of the predictions as stored."),
    ]
