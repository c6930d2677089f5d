"""The purchase-propensity model on generated commerce data: it learns the generator's signal, it
learns nothing from shuffled labels, and champion/challenger in a real MLflow store decides right.

The data is the commerce generator's own (its engagement walk and purchase propensity), taken
from its truth (what silver holds) through the commerce gold transformations, then
``user_features``: the path the assets take, minus the files.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os

import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.analytics import model as ml
from lake_assets.analytics import registry
from lake_assets.analytics.features import FEATURES_SCHEMA, user_features

START = dt.date(2024, 1, 1)
DAYS = 49
END = START + dt.timedelta(days=DAYS - 1)
HOLDOUT_DAYS = 7

S, TS = T.StringType(), T.TimestampType()
SILVER = {
    "events": T.StructType([T.StructField(c, t) for c, t in (
        ("event_id", S), ("user_id", S), ("event_type", S), ("ts", TS), ("session_id", S), ("product_id", S))]),
    "users": T.StructType([T.StructField(c, t) for c, t in (
        ("user_id", S), ("email", S), ("country", S), ("status", S), ("created_at", TS), ("updated_at", TS))]),
    "transactions": T.StructType([T.StructField(c, t) for c, t in (
        ("transaction_id", S), ("user_id", S), ("amount", T.DecimalType(18, 2)), ("currency", S), ("status", S),
        ("created_at", TS))]),
}


@pytest.fixture(scope="module")
def features(spark):
    """Seven weeks of 100 generated users (clean rows: the model, not the quarantine, is under test)."""
    from lake_assets.domains.commerce import gold
    from lake_assets.domains.commerce.generator import generate_commerce

    gen = generate_commerce(lambda path, data: None, start=START, days=DAYS, users=100, events_per_day=300,
                            transactions_per_day=30, bad_share=0.0, bad_files=False, seed=7, keep_truth=True)
    silver = {name: spark.createDataFrame([tuple(r[f.name] for f in schema.fields) for r in gen.truth[name]], schema)
              for name, schema in SILVER.items()}
    dim = gold.dim_users(silver["users"])
    events = gold.fact_events(silver["events"], dim)
    transactions = gold.fact_transactions(silver["transactions"], dim)
    activity = gold.fact_user_activity(silver["events"], silver["transactions"])
    df = user_features(activity, transactions, events, dim, start=START + dt.timedelta(days=7), end=END,
                       known_until=END).cache()
    df.count()
    yield df
    df.unpersist()


@pytest.fixture(scope="module")
def trained(features):
    return ml.train(features, holdout_days=HOLDOUT_DAYS, seed=7)


@pytest.fixture(scope="module")
def shuffled(features):
    """The same pipeline on labels permuted within each as-of date (training and holdout alike)."""
    df = shuffle_labels(features, seed=5)
    try:
        yield ml.train(df, holdout_days=HOLDOUT_DAYS, seed=7)
    finally:
        df.unpersist()


def shuffle_labels(df: DataFrame, seed: int, until: dt.date | None = None) -> DataFrame:
    """Labels permuted among the labelled rows of each as-of date (up to ``until``): the same base
    rate per date, no relation to the features. Deterministic (a hash, not ``rand``), so every
    pass over the frame sees the same permutation."""
    take = F.col("label").isNotNull() & (F.lit(True) if until is None else F.col("event_date") <= F.lit(until))
    rows = df.where(take)
    by_user = Window.partitionBy("event_date").orderBy("user_id")
    by_hash = Window.partitionBy("event_date").orderBy(F.xxhash64("user_id", F.lit(seed)), "user_id")
    keyed = rows.drop("label").withColumn("_k", F.row_number().over(by_user))
    labels = rows.select("event_date", "label", F.row_number().over(by_hash).alias("_k"))
    shuffled = keyed.join(labels, ["event_date", "_k"]).select(*df.columns)
    return shuffled.unionByName(df.where(~take)).cache()


def test_features_of_generated_data(features):
    assert [(f.name, f.dataType) for f in features.schema] == [(f.name, f.dataType) for f in FEATURES_SCHEMA]
    stats = features.agg(F.count(F.lit(1)).alias("n"), F.avg("label").alias("rate"),
                         F.sum(F.col("label").isNull().cast("int")).alias("unlabelled"),
                         F.countDistinct("event_date").alias("dates")).first()
    assert stats["dates"] == DAYS - 7
    assert 0.2 < stats["rate"] < 0.8  # a label worth predicting
    assert stats["unlabelled"] == features.where(F.col("event_date") > END - dt.timedelta(days=7)).count() > 0


def test_model_beats_the_recency_baseline(trained):
    r = trained
    # The split: the last 7 labelled dates held out, training dates end 7 days before them.
    assert r.holdout_dates == (END - dt.timedelta(days=13), END - dt.timedelta(days=7))
    assert r.train_dates == (START + dt.timedelta(days=7), r.holdout_dates[0] - dt.timedelta(days=7))
    assert r.counts["holdout_rows"] == r.metrics["rows"] == r.baseline_metrics["rows"] > 300
    assert r.metrics["base_rate"] == r.baseline_metrics["base_rate"]
    assert r.baseline_metrics["auc_roc"] > 0.6  # recency alone knows something...
    assert r.metrics["auc_roc"] > r.baseline_metrics["auc_roc"] + 0.03  # ...the model knows more
    assert r.metrics["auc_pr"] > r.baseline_metrics["auc_pr"]
    # A calibrated probability: better than always predicting the base rate.
    p = r.metrics["base_rate"]
    assert r.metrics["log_loss"] < -(p * math.log(p) + (1 - p) * math.log(1 - p))
    coef = ml.coefficients(r.model)
    assert coef["events_7d"] > 0 or coef["events_28d"] > 0  # more recent activity, more purchases


def test_shuffled_labels_do_not_beat_the_baseline(trained, shuffled):
    """No leakage: with labels permuted within each date (same base rate, no relation to the
    features), the same pipeline is at chance on its holdout. Were the features to carry the label
    (data from after the as-of date) or the split to let holdout rows into training, it would not be."""
    r = shuffled
    assert r.holdout_dates == trained.holdout_dates and r.counts == trained.counts
    assert abs(r.metrics["auc_roc"] - 0.5) < 0.06
    assert not r.metrics["auc_roc"] > r.baseline_metrics["auc_roc"] + 0.03  # no better than recency either
    assert r.metrics["auc_roc"] < trained.baseline_metrics["auc_roc"] - 0.1


def test_scores_are_probabilities_for_every_row(features, trained):
    scores = ml.score(trained.model, features)
    assert [(f.name, f.dataType) for f in scores.schema] == [(f.name, f.dataType) for f in ml.SCORES_SCHEMA.fields]
    s = scores.agg(F.count(F.lit(1)).alias("n"), F.min("score").alias("lo"), F.max("score").alias("hi"),
                   F.count("score").alias("scored")).first()
    assert s["n"] == s["scored"] == features.count()
    assert 0.0 <= s["lo"] < s["hi"] <= 1.0


def test_split_and_refusals(features):
    d = [START + dt.timedelta(days=i) for i in range(20)]
    train, holdout = ml.split_dates(d, holdout_days=3, gap_days=7)
    assert holdout == d[-3:] and train == d[:11] and (holdout[0] - train[-1]).days == 7
    with pytest.raises(ml.InsufficientData, match="gap"):
        ml.split_dates(d[:9], holdout_days=3, gap_days=7)
    with pytest.raises(ml.InsufficientData, match="holdout_days"):
        ml.split_dates(d[:3], holdout_days=3)
    with pytest.raises(ml.InsufficientData, match="both classes"):
        ml.train(features.withColumn("label", F.when(F.col("label").isNotNull(), F.lit(1))), holdout_days=7)
    with pytest.raises(ml.InsufficientData):  # only unlabelled dates
        ml.train(features.where(F.col("label").isNull()), holdout_days=1)


def test_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert registry.tracking_uri(str(tmp_path)) == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert registry.tracking_uri(str(tmp_path)) == "http://mlflow.example:5000"


def test_champion_challenger(trained, shuffled, tmp_path, monkeypatch, spark):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = registry.tracking_uri(str(tmp_path / "dagster_home"))
    artifacts = str(tmp_path / "lake" / "ml" / "mlflow")
    assert registry.champion_version(uri) is None and registry.load_champion(uri) is None
    assert not (tmp_path / "dagster_home").exists()  # a read creates no store

    first = registry.register(trained, tracking_uri=uri, artifact_location=artifacts)
    assert (first.version, first.promoted, first.champion, first.previous_champion) == (1, True, 1, None)
    assert "no champion yet" in first.reason
    assert "MLFLOW_TRACKING_URI" not in os.environ  # MLflow's global settings put back

    # A worse challenger: the model trained on shuffled labels, measured on the real holdout.
    challenger = dataclasses.replace(shuffled, holdout=trained.holdout, holdout_dates=trained.holdout_dates,
                                     metrics=ml.evaluate(shuffled.model, trained.holdout),
                                     baseline_metrics=trained.baseline_metrics)
    second = registry.register(challenger, tracking_uri=uri, artifact_location=artifacts)
    assert (second.version, second.promoted, second.champion, second.previous_champion) == (2, False, 1, 1)
    assert "does not beat the baseline" in second.reason
    # The champion was re-scored on the challenger's holdout: the same rows it was measured on.
    assert second.champion_metrics["auc_roc"] == pytest.approx(trained.metrics["auc_roc"], abs=1e-9)
    # The champion's twin beats the baseline but only ties the champion: the incumbent stays.
    third = registry.register(trained, tracking_uri=uri, artifact_location=artifacts)
    assert (third.version, third.promoted, third.champion) == (3, False, 1)
    assert "does not beat the champion" in third.reason and "tie keeps the incumbent" in third.reason

    assert registry.champion_version(uri) == 1
    version, model = registry.load_champion(uri)
    assert version == 1 and isinstance(model, PipelineModel)
    assert ml.coefficients(model) == ml.coefficients(trained.model)

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    v1, v2 = (client.get_model_version(registry.MODEL_NAME, str(v)) for v in (1, 2))
    assert (v1.tags["decision"], v2.tags["decision"]) == ("promoted", "rejected")
    compared = json.loads(v2.tags["compared"])
    assert compared["champion_version"] == 1 and compared["auc_roc"] < compared["baseline_auc_roc"]
    run = client.get_run(second.run_id)
    assert run.data.tags["decision"] == "rejected" and run.data.tags["model_version"] == "2"
    assert run.data.metrics["champion_auc_roc"] == pytest.approx(second.champion_metrics["auc_roc"])
    assert {"model_auc_roc", "baseline_auc_roc", "model_log_loss", "train_rows"} <= set(run.data.metrics)
    assert run.data.params["holdout_days"] == "7"
    info = registry.champion_info(uri)
    assert info["version"] == 1 and info["features"] == trained.features
    assert info["decision"]["decision"] == "promoted"
    assert (tmp_path / "lake" / "ml" / "mlflow").is_dir()  # artifacts where they were sent


def test_models_of_a_lake_on_s3_are_stored_in_its_bucket_and_load_back(trained, tmp_path, monkeypatch, spark,
                                                                      s3_lake_root, moto_server, s3_keys):
    """The registry bound to an S3 lake keeps the model under ``<lake>/ml/models/mlflow`` in the bucket
    (MLflow's S3 client pointed at the lake's endpoint) and serves the champion back from there."""
    from lake_assets.analytics.resources import ModelRegistryResource
    from lake_assets.lake import LakeStorage

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "unset-below")
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL")  # the registry takes AWS_ENDPOINT_URL's (moto's)
    bound = ModelRegistryResource(tracking_uri=registry.tracking_uri(str(tmp_path / "home"))).registry(
        LakeStorage(s3_lake_root, endpoint_url=moto_server))
    assert bound.artifact_location == f"{s3_lake_root}/ml/models/mlflow"
    decision = registry.register(trained, tracking_uri=bound.tracking_uri, artifact_location=bound.artifact_location)
    assert decision.promoted and decision.version == 1
    keys = s3_keys(s3_lake_root)
    assert any(k.startswith("ml/models/mlflow/") and k.endswith("MLmodel") for k in keys), keys
    assert not list((tmp_path / "home").rglob("MLmodel"))  # nothing of the model kept locally
    version, model = bound.load_champion()
    assert version == 1
    again = ml.evaluate(model, trained.holdout)
    assert again["auc_roc"] == pytest.approx(trained.metrics["auc_roc"], abs=1e-9)
