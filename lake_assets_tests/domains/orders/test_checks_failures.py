"""orders_silver_unique_order_id on a silver holding duplicates: it fails, and records how many order
ids are duplicated (not the size of its sample, capped at 10)."""
from __future__ import annotations

import datetime as dt

from dagster import AssetCheckSeverity, AssetSelection, AssetSpec, materialize

from lake_assets.domains.orders import validate
from lake_assets.domains.orders.checks import orders_silver_unique_order_id
from lake_assets.quality import metrics
from lake_assets.resources import LakeResource
from lake_assets.spark import spark_resource_from_env


def test_unique_order_id_fails_and_records_the_real_number_of_duplicated_ids(lake_root, instance, spark,
                                                                             monkeypatch):
    ids = [f"O{i:03d}" for i in range(12) for _ in range(2)] + ["O999"]  # 12 ids twice, one once
    silver = spark.createDataFrame([(i, dt.datetime(2024, 3, 2)) for i in ids], "order_id string, updated_at timestamp")
    monkeypatch.setattr(validate, "read_silver", lambda session, storage, *a, **k: silver)

    result = materialize([AssetSpec("orders_silver"), orders_silver_unique_order_id],
                         selection=AssetSelection.checks(orders_silver_unique_order_id),
                         resources={"lake": LakeResource(root=lake_root), "spark": spark_resource_from_env()},
                         instance=instance, raise_on_error=False)
    [ev] = result.get_asset_check_evaluations()
    assert ev.check_name == "orders_silver_unique_order_id"
    assert not ev.passed and ev.severity == AssetCheckSeverity.ERROR and ev.blocking
    assert ev.metadata["duplicate_keys"].value == 12
    assert ev.metadata["duplicate_keys_sample"].value == [f"O{i:03d}" for i in range(10)]
    assert ev.metadata["key"].value == ["order_id"]
    path = metrics.metrics_path("orders", "orders_silver", None, result.run_id)
    row = metrics.read_metrics(LakeResource(root=lake_root).storage, path)["check.orders_silver_unique_order_id"]
    assert (row["outcome"], row["value"]) == ("failed", "12")
