"""The purchase-propensity model in MLflow: tracked runs, registered versions and the champion.

Where: ``tracking_uri(dagster_home)``: MLflow's standard ``MLFLOW_TRACKING_URI`` when
set, else a SQLite store at ``<DAGSTER_HOME>/mlflow/mlflow.db`` (next to the runs that
trained the models). The registry lives in the same store. Model artifacts go to the
experiment's artifact location, fixed when the experiment is first created (an MLflow
rule): a local folder for a local lake, an ``s3://`` prefix for a lake on S3.

A training run (``register``) logs its parameters, the model's and the baseline's
holdout metrics (``model_*``, ``baseline_*``, and ``champion_*`` when there is one),
row counts, the feature list (``features.json``), the coefficients
(``coefficients.json``) and the model itself (``mlflow.spark.log_model``: the Spark
``PipelineModel`` in the ``sparkml`` folder of the ``model`` artifact, with fixed pip
requirements so MLflow does not infer them), then registers it as a new version of
``purchase_propensity``.

Champion/challenger: the registered model's alias ``champion`` names the current
version (what batch predictions use). The new version takes it only if its holdout
``auc_roc`` is higher than both the recency baseline's and the current champion's, the
champion re-scored on the *same* holdout rows (its metrics from its own run were
measured on older dates and do not compare). "Higher" means by more than ``TIE`` (1e-6):
smaller differences are floating-point noise (the same model scored twice can differ in
the 16th digit with the summation order), and a tie keeps the incumbent: a change must
earn its keep. A champion that cannot score today's features (a changed
feature list, lost artifacts) is not a bar: it is replaced if the baseline is beaten,
and the reason says so. The decision is recorded on both the version and the run as
tags: ``decision`` (``promoted`` | ``rejected``), ``reason``, and ``compared`` (JSON of
the AUCs and versions compared). Two trainings racing each other both compare with the
champion they read; the later alias write wins.

MLflow's own chatter (its INFO logs, download progress bars, "Successfully
registered" lines) is kept out of our output: the work happens inside ``_mlflow``,
which quietens it and restores the process's MLflow settings afterwards.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlparse

import pyspark
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame

from lake_assets.analytics import model as ml

__all__ = [
    "CHAMPION_ALIAS", "EXPERIMENT_NAME", "MODEL_NAME", "Decision", "champion_info", "champion_version",
    "decisions", "load_champion", "register", "tracking_uri", "train_and_register",
]

MODEL_NAME = "purchase_propensity"
EXPERIMENT_NAME = "purchase_propensity"
CHAMPION_ALIAS = "champion"
_QUIET_LOGGERS = ("mlflow", "alembic")
#: AUC differences up to this are ties (numerical noise), and ties keep the incumbent.
TIE = 1e-6


@dataclass(frozen=True)
class Decision:
    """What ``register`` did: the new version, and whether it became the champion, and why."""

    version: int  # the new registered version
    run_id: str
    promoted: bool
    reason: str
    metrics: dict[str, float]  # the new model on the holdout
    baseline_metrics: dict[str, float]  # the recency rule on the same holdout
    previous_champion: int | None  # the champion before this decision
    champion_metrics: dict[str, float] | None  # that champion on the same holdout (None: none, or unusable)
    champion: int | None  # the champion after this decision
    model_uri: str  # models:/purchase_propensity/<version>

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tracking_uri(dagster_home: str) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<dagster_home>/mlflow/mlflow.db`` (absolute)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return "sqlite:///" + os.path.join(os.path.abspath(dagster_home), "mlflow", "mlflow.db")


def _sqlite_path(uri: str) -> str | None:
    return uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None


def _store_exists(uri: str) -> bool:
    """False for a SQLite store not created yet (a read must not create it)."""
    path = _sqlite_path(uri)
    return path is None or os.path.exists(path)


def _artifact_uri(location: str | None) -> str | None:
    """A local folder as an absolute ``file://`` URI; a URI with a scheme as it is."""
    if location is None or (urlparse(location).scheme and len(urlparse(location).scheme) > 1):
        return location
    os.makedirs(location, exist_ok=True)
    return "file://" + os.path.abspath(location)


@contextlib.contextmanager
def _mlflow(uri: str) -> Iterator[Any]:
    """MLflow pointed at ``uri`` (tracking and registry), quiet; the previous settings restored after.

    Yields an ``MlflowClient``. ``mlflow.set_tracking_uri`` also sets the environment variable
    (for subprocesses): both are put back, so the next ``tracking_uri()`` sees what the user set.
    """
    import mlflow
    from mlflow.tracking import _model_registry, _tracking_service
    from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM

    path = _sqlite_path(uri)
    if path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI",
                                          "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")}
    prev_tracking = getattr(_tracking_service.utils, "_tracking_uri", None)
    prev_registry = getattr(_model_registry.utils, "_registry_uri", None)
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    stream_enabled = MLFLOW_LOGGING_STREAM.enabled
    try:
        MLFLOW_LOGGING_STREAM.enabled = False  # MLflow's log handler and its stderr notices write here
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        with warnings.catch_warnings():
            # MLflow's warnings (deprecations, its own future) are not about our data; ours still show.
            warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
            yield mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    finally:
        MLFLOW_LOGGING_STREAM.enabled = stream_enabled
        mlflow.set_tracking_uri(prev_tracking)
        mlflow.set_registry_uri(prev_registry)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _champion(client, model_name: str) -> Any | None:
    """The ModelVersion holding the champion alias, or None (no registered model, no alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException:
        return None


def _load(version: int, model_name: str) -> PipelineModel:
    import mlflow.spark

    return mlflow.spark.load_model(f"models:/{model_name}/{version}")


def _experiment_id(client, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, artifact_location=_artifact_uri(artifact_location))
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def _prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": float(v) for k, v in metrics.items()}


def register(result: ml.TrainResult, *, tracking_uri: str, artifact_location: str | None = None,
             model_name: str = MODEL_NAME, experiment: str = EXPERIMENT_NAME) -> Decision:
    """Log ``result`` as a run, register it as a new version and decide champion/challenger (see the docstring)."""
    import mlflow
    import mlflow.spark

    auc = result.metrics["auc_roc"]
    base_auc = result.baseline_metrics["auc_roc"]
    with _mlflow(tracking_uri) as client:
        holder = _champion(client, model_name)
        previous = int(holder.version) if holder is not None else None
        champion_metrics, champion_error = None, None
        if previous is not None:
            try:
                champion_metrics = ml.evaluate(_load(previous, model_name), result.holdout)
            except Exception as exc:  # noqa: BLE001 - any failure to score today's holdout disqualifies it
                champion_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]

        beats_baseline = auc > base_auc + TIE
        champ_auc = champion_metrics["auc_roc"] if champion_metrics else None
        beats_champion = champ_auc is None or auc > champ_auc + TIE
        promoted = beats_baseline and beats_champion
        vs_base = f"auc_roc {auc:.4f} vs baseline {base_auc:.4f}"
        vs_champ = (f"champion v{previous} {champ_auc:.4f} on the same holdout" if champ_auc is not None
                    else f"champion v{previous} could not be evaluated ({champion_error})" if previous is not None
                    else "no champion yet")
        if promoted:
            reason = f"beats the baseline ({vs_base}) and {vs_champ}"
        elif not beats_baseline:
            tie = ", a tie keeps the incumbent" if abs(auc - base_auc) <= TIE else ""
            reason = f"does not beat the baseline ({vs_base}{tie})"
        else:
            reason = (f"does not beat the champion (auc_roc {auc:.4f} vs {vs_champ}"
                      f"{', a tie keeps the incumbent' if abs(auc - champ_auc) <= TIE else ''})")
        compared = json.dumps({"auc_roc": auc, "baseline_auc_roc": base_auc, "champion_version": previous,
                               "champion_auc_roc": champ_auc, "holdout_from": result.holdout_dates[0].isoformat(),
                               "holdout_to": result.holdout_dates[1].isoformat()})
        decision = "promoted" if promoted else "rejected"

        exp_id = _experiment_id(client, experiment, artifact_location)
        run_name = f"{model_name} holdout {result.holdout_dates[0]}..{result.holdout_dates[1]}"
        with mlflow.start_run(experiment_id=exp_id, run_name=run_name) as run:
            mlflow.log_params({k: str(v) for k, v in result.params.items()})
            mlflow.log_metrics({**_prefixed("model", result.metrics), **_prefixed("baseline", result.baseline_metrics),
                                **(_prefixed("champion", champion_metrics) if champion_metrics else {}),
                                **{k: float(v) for k, v in result.counts.items()}})
            mlflow.log_dict(result.features, "features.json")
            mlflow.log_dict(ml.coefficients(result.model), "coefficients.json")
            # Requirements given, not inferred (inference imports and inspects the environment: slow).
            info = mlflow.spark.log_model(result.model, "model",
                                          pip_requirements=[f"pyspark=={pyspark.__version__}"])
            run_id = run.info.run_id
            tags = {"decision": decision, "reason": reason, "compared": compared}
            mlflow.set_tags(tags)
        with contextlib.redirect_stderr(io.StringIO()):  # its "Successfully registered" notices
            version = mlflow.register_model(info.model_uri, model_name, tags=tags)
        if promoted:
            client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version.version)
        client.set_tag(run_id, "model_version", str(version.version))
    return Decision(version=int(version.version), run_id=run_id, promoted=promoted, reason=reason,
                    metrics=dict(result.metrics), baseline_metrics=dict(result.baseline_metrics),
                    previous_champion=previous, champion_metrics=champion_metrics,
                    champion=int(version.version) if promoted else previous,
                    model_uri=f"models:/{model_name}/{version.version}")


def train_and_register(features: DataFrame, *, tracking_uri: str, artifact_location: str | None = None,
                       holdout_days: int, gap_days: int = ml.LABEL_DAYS, seed: int = 7,
                       params: Mapping[str, Any] | None = None, min_rows: int = 50,
                       model_name: str = MODEL_NAME) -> Decision:
    """``model.train`` then ``register``: a new version, champion or not. Raises ``model.InsufficientData``."""
    result = ml.train(features, holdout_days=holdout_days, gap_days=gap_days, seed=seed, params=params,
                      min_rows=min_rows)
    return register(result, tracking_uri=tracking_uri, artifact_location=artifact_location, model_name=model_name)


@contextlib.contextmanager
def _with_champion(tracking_uri: str, model_name: str) -> Iterator[tuple[Any, Any]]:
    """(client, the champion's ModelVersion or None); None for both when no store exists yet
    (a read never creates one)."""
    if not _store_exists(tracking_uri):
        yield None, None
        return
    with _mlflow(tracking_uri) as client:
        yield client, _champion(client, model_name)


def champion_version(tracking_uri: str, model_name: str = MODEL_NAME) -> int | None:
    """The version holding the ``champion`` alias, or None (none yet, or no store yet)."""
    with _with_champion(tracking_uri, model_name) as (_, holder):
        return int(holder.version) if holder is not None else None


def load_champion(tracking_uri: str, model_name: str = MODEL_NAME) -> tuple[int, PipelineModel] | None:
    """(version, fitted pipeline) of the champion, or None. Needs the active Spark session."""
    with _with_champion(tracking_uri, model_name) as (_, holder):
        return (int(holder.version), _load(int(holder.version), model_name)) if holder is not None else None


def champion_info(tracking_uri: str, model_name: str = MODEL_NAME) -> dict[str, Any] | None:
    """The champion's record for reports: version, run id, its run's metrics, params, features and decision."""
    with _with_champion(tracking_uri, model_name) as (client, holder):
        if holder is None:
            return None
        import mlflow.artifacts

        run = client.get_run(holder.run_id)
        features = mlflow.artifacts.load_dict(f"runs:/{holder.run_id}/features.json")
        return {"version": int(holder.version), "run_id": holder.run_id,
                "registered_at_ms": int(holder.creation_timestamp), "metrics": dict(run.data.metrics),
                "params": dict(run.data.params), "features": features,
                "decision": {k: holder.tags.get(k) for k in ("decision", "reason", "compared")}}


def decisions(tracking_uri: str, model_name: str = MODEL_NAME) -> list[dict[str, Any]]:
    """Every registered version's champion/challenger decision, oldest first (the report's history):
    version, registered at (UTC), decision, reason and the holdout metrics of its run."""
    import datetime as dt

    from mlflow.exceptions import MlflowException

    if not _store_exists(tracking_uri):
        return []
    with _mlflow(tracking_uri) as client:
        try:
            versions = client.search_model_versions(f"name='{model_name}'")
        except MlflowException:
            return []
        out = []
        for v in sorted(versions, key=lambda v: int(v.version)):
            run = client.get_run(v.run_id) if v.run_id else None
            metrics = {k[len("model_"):]: val for k, val in (run.data.metrics if run else {}).items()
                       if k.startswith("model_")}
            out.append({"version": int(v.version), "run_id": v.run_id,
                        "decided_at": dt.datetime.fromtimestamp(int(v.creation_timestamp) / 1000, dt.timezone.utc),
                        "decision": (v.tags or {}).get("decision"), "reason": (v.tags or {}).get("reason"),
                        "metrics": metrics})
        return out
