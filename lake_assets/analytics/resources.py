"""The model registry as a Dagster resource: where MLflow tracks runs and keeps models.

``MLFLOW_TRACKING_URI`` (MLflow's own variable) when set, else a SQLite store in
the Dagster home, read when the definitions are built. Models are stored in the
lake, under ``ml/models/mlflow`` (MLflow's artifact store: a folder for a local
lake, ``s3://.../ml/models/mlflow`` for a lake on S3, where MLflow's S3 client
takes the lake's endpoint: ``MLFLOW_S3_ENDPOINT_URL``, defaulting to
``AWS_ENDPOINT_URL``).
"""
from __future__ import annotations

import datetime as dt
import os

from dagster import ConfigurableResource
from pydantic import Field

from lake_assets.analytics.tables import MODELS_ZONE


#: The holdout metrics the report compares (rates on one scale; row counts are in the decision history).
RATES = ("auc_roc", "auc_pr", "log_loss", "base_rate")


class ModelRegistryResource(ConfigurableResource):
    """Trains, registers and serves the purchase-propensity champion (:mod:`lake_assets.analytics.registry`)."""

    tracking_uri: str = Field(description="MLFLOW_TRACKING_URI, else sqlite:///<DAGSTER_HOME>/mlflow/mlflow.db")

    @classmethod
    def from_env(cls) -> "ModelRegistryResource":
        """A tracking server's URI may carry credentials (``postgresql://user:password@...``): when
        ``MLFLOW_TRACKING_URI`` is set it reaches the resource as an ``EnvVar``, never shown in the UI."""
        from dagster import EnvVar

        from lake_assets.analytics.registry import tracking_uri
        from lake_assets.settings import dagster_home

        if os.environ.get("MLFLOW_TRACKING_URI"):
            return cls(tracking_uri=EnvVar("MLFLOW_TRACKING_URI"))
        return cls(tracking_uri=tracking_uri(dagster_home(create=False)))

    def registry(self, storage) -> "BoundRegistry":
        return BoundRegistry(self.tracking_uri, storage)

    def has_store(self) -> bool:
        """Whether any model was ever tracked here (a read never creates the store)."""
        return not self.tracking_uri.startswith("sqlite:///") or os.path.exists(self.tracking_uri[len("sqlite:///"):])


class BoundRegistry:
    """The registry with the lake its models are stored in."""

    def __init__(self, tracking_uri: str, storage) -> None:
        self.tracking_uri = tracking_uri
        self.storage = storage

    @property
    def artifact_location(self) -> str:
        uri = self.storage.uri(f"{MODELS_ZONE}/mlflow")
        if uri.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
            # MLflow's S3 artifact client reads its own variable for a non-AWS endpoint.
            os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", os.environ["AWS_ENDPOINT_URL"])
        return uri

    def train_and_register(self, features, *, holdout_days: int, gap_days: int):
        from lake_assets.analytics import registry

        return registry.train_and_register(features, tracking_uri=self.tracking_uri,
                                           artifact_location=self.artifact_location,
                                           holdout_days=holdout_days, gap_days=gap_days)

    def champion_version(self) -> int | None:
        from lake_assets.analytics import registry

        return registry.champion_version(self.tracking_uri)

    def load_champion(self):
        from lake_assets.analytics import registry

        return registry.load_champion(self.tracking_uri)

    def summary(self):
        """What the lake report shows of the model (:class:`~lake_assets.analytics.report.ModelSummary`)."""
        from lake_assets.analytics import registry
        from lake_assets.analytics.report import ModelDecision, ModelSummary

        info = registry.champion_info(self.tracking_uri)
        decisions = [ModelDecision(str(d["version"]), d["decided_at"], d["decision"] == "promoted", d["reason"] or "",
                                   d["metrics"]) for d in registry.decisions(self.tracking_uri)]
        if info is None:
            return ModelSummary(registry.MODEL_NAME, None, decisions=decisions)
        m = info["metrics"]
        return ModelSummary(
            registry.MODEL_NAME, str(info["version"]),
            metrics={k: m[f"model_{k}"] for k in RATES if f"model_{k}" in m},
            baseline={k: m[f"baseline_{k}"] for k in RATES if f"baseline_{k}" in m},
            decisions=decisions, run_id=info["run_id"],
            trained_at=dt.datetime.fromtimestamp(info["registered_at_ms"] / 1000, dt.timezone.utc))
