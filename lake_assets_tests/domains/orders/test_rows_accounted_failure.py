"""orders_silver_rows_accounted failing on the real validation: orders extracted from an embedded SQLite
source by the real extraction, validated by the real ``validate_orders`` multi-asset, with one valid
order lost on its way into silver (``validate._publish_silver`` wrapped). The check, reading the archive,
silver and discarded as stored, fails naming the lost row; what reads silver is not built in the same
run, and the metrics zone records the failure."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow.parquet as pq
import sqlalchemy as sa
from dagster import MaterializeResult, asset, materialize
from pyspark.sql import functions as F

from lake_assets.catalog.resource import CatalogResource
from lake_assets.domains.orders import validate, zones
from lake_assets.domains.orders.assets import validate_orders
from lake_assets.domains.orders.checks import orders_silver_rows_accounted, orders_silver_unique_order_id
from lake_assets.domains.orders.extract import extract_orders
from lake_assets.domains.orders.generator import create_source_tables
from lake_assets.domains.orders.source import UTC, OrdersSourceResource, create_db_engine, orders_table
from lake_assets.lake import LakeStorage
from lake_assets.quality import metrics
from lake_assets.resources import LakeResource
from lake_assets.spark import spark_resource_from_env

#: Five orders of 2024-03-01; order 5's status is unknown (discarded), the others are valid.
UPDATED = {i: dt.datetime(2024, 3, 1, 10, i, tzinfo=UTC) for i in range(1, 6)}
ORDERS = [{"order_id": i, "customer_id": f"C{i}", "status": "UNKNOWN" if i == 5 else "PAID",
           "amount": Decimal(f"{i}0.50"), "currency": "EUR", "order_ts": UPDATED[i], "updated_at": UPDATED[i]}
          for i in range(1, 6)]


def order_ids(storage: LakeStorage, prefix: str) -> list[int]:
    """The order ids of every Parquet file under ``prefix``, read with pyarrow."""
    ids = []
    for f in storage.list_files(prefix):
        if f.path.endswith(".parquet"):
            with storage.open_random(f.path) as fh:
                ids += pq.read_table(fh, columns=["order_id"]).column("order_id").to_pylist()
    return sorted(ids)


def test_rows_accounted_fails_when_a_valid_order_never_reaches_silver(lake_root, instance, spark, tmp_path,
                                                                      monkeypatch):
    url = f"sqlite:///{tmp_path}/orders_source.db"
    create_source_tables(url)
    engine = create_db_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(orders_table), ORDERS)
    engine.dispose()
    storage = LakeStorage(lake_root)
    source = OrdersSourceResource(url=url, state_url=f"sqlite:///{tmp_path}/orders_state.db")
    assert extract_orders(source, storage, run_id="extract").rows == 5

    real = validate._publish_silver
    monkeypatch.setattr(validate, "_publish_silver", lambda storage, merged, days, out: real(
        storage, merged.where(F.col("order_id") != 3), days, out))  # order 3 lost on its way to silver

    built: list = []

    @asset(deps=["orders_silver"])
    def reads_orders_silver() -> MaterializeResult:
        built.append("reads_orders_silver")
        return MaterializeResult()

    result = materialize(
        [validate_orders, reads_orders_silver, orders_silver_rows_accounted, orders_silver_unique_order_id],
        resources={"lake": LakeResource(root=lake_root), "spark": spark_resource_from_env(),
                   "catalog": CatalogResource(kind="none")},
        instance=instance, raise_on_error=False)
    # The lake as the run left it: the set archived, order 5 discarded, order 3 nowhere but the archive.
    assert (order_ids(storage, zones.ARCHIVE), order_ids(storage, zones.SILVER),
            order_ids(storage, zones.DISCARDED)) == ([1, 2, 3, 4, 5], [1, 2, 4], [5])

    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {n: e.passed for n, e in evals.items()} == {
        "orders_silver_rows_accounted": False, "orders_silver_unique_order_id": True}
    ev = evals["orders_silver_rows_accounted"]
    assert ev.blocking and ev.severity.value == "ERROR"
    # PySpark hands timestamps back in the driver's local zone, naive.
    lost_at = UPDATED[3].astimezone().replace(tzinfo=None)
    assert {k: getattr(v, "value", v) for k, v in ev.metadata.items()} == {
        "extracted_rows": 5, "unaccounted_rows": 1, "unaccounted_sample": [f"3@{lost_at}"]}
    # Blocking: silver was written, what reads it was not built.
    assert {m.asset_key.path[-1] for m in result.get_asset_materialization_events()} == {
        "orders_silver", "orders_discarded", "orders_archive"}
    assert built == [] and not result.success
    path = metrics.metrics_path("orders", "orders_silver", None, result.run_id)
    found = metrics.read_metrics(storage, path)
    assert (found["check.orders_silver_rows_accounted"]["outcome"],
            found["check.orders_silver_rows_accounted"]["value"]) == ("failed", "1")
    assert (found["check.orders_silver_unique_order_id"]["outcome"],
            found["check.orders_silver_unique_order_id"]["value"]) == ("passed", "0")
