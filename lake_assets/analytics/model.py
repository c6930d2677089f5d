"""The purchase-propensity model: a Spark MLlib pipeline, its time-based evaluation and its baseline.

The estimator is a regularised logistic regression, because what the lake publishes
is a *propensity*: a probability that a user completes a purchase in the next 7 days,
to be read as such (sorted, thresholded, summed into an expected count). Logistic
regression is fitted by maximum likelihood, so its scores are calibrated on data like
its training data, with no post-hoc calibration step; it is robust on small data (a
few thousand user-days), deterministic (L-BFGS, no sampling: the same rows give the
same model), quick to fit on a laptop's Spark, and interpretable: one coefficient per
standardised feature. Tree ensembles would rank a little better on large data, but
their probabilities need calibrating and their gain is lost at this size.

The pipeline (``build_pipeline``), fitted and saved as one ``PipelineModel``:

1. ``SQLTransformer``: ``log1p`` of every numeric feature. Counts and amounts are
   heavy-tailed (a few power users make most events): on the log scale a unit means
   "about e times as many", which is how propensity moves, and outliers do not
   dominate the fit.
2. ``VectorAssembler`` + ``StandardScaler`` of those, so the L2 penalty treats the
   features alike and coefficients compare as "per standard deviation".
3. ``StringIndexer`` (``handleInvalid="keep"``: NULL and unseen countries share one
   extra bucket) + ``OneHotEncoder`` for the country.
4. ``LogisticRegression`` (binomial, L2 ``regParam=0.01``).

Evaluation is time-based (``train``): the model is fitted on earlier as-of dates and
measured on the last ``holdout_days`` labelled dates, as it will be used (on dates it
never saw). A label looks 7 days ahead, so training dates stop ``gap_days`` (7) before
the first holdout date: the last training label covers ``(t, t + 7]`` with
``t + 7 <= first holdout date``, and no training label is made of purchases that the
holdout's labels count (otherwise the two sets share outcomes and the holdout score
is optimistic). Only labelled rows take part.

The baseline is the rule a model has to beat to be worth running: recency alone,
``score = 1 / (1 + recency_days)`` (the more recent the last event, the likelier a
purchase), measured with the same evaluator on the same holdout. Its AUCs are
meaningful; its log loss is shown for reference only (the rule is a rank, not a
probability).

Metrics (``metrics``): ``auc_roc`` (areaUnderROC; ties between equal scores count
half), ``auc_pr`` (areaUnderPR), ``log_loss`` (natural log, probabilities clipped to
``[1e-15, 1 - 1e-15]``), ``base_rate`` (share of positives), ``rows``, ``positives``.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import (OneHotEncoder, SQLTransformer, StandardScaler, StringIndexer, StringIndexerModel,
                                VectorAssembler)
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.analytics.features import CATEGORICAL_FEATURES, LABEL, LABEL_DAYS, NUMERIC_FEATURES

__all__ = [
    "DEFAULT_PARAMS", "SCORES_SCHEMA", "InsufficientData", "TrainResult", "baseline_metrics", "build_pipeline",
    "coefficients", "evaluate", "metrics", "score", "split_dates", "train",
]

#: The estimator's settings (logged with every run).
#: tol 1e-4: the solver stops after ~20 iterations instead of ~40 (a Spark job each) for the same AUC to 4 digits.
DEFAULT_PARAMS: Mapping[str, Any] = {"regParam": 0.01, "elasticNetParam": 0.0, "maxIter": 100, "tol": 1e-4}
SCORES_SCHEMA = T.StructType([
    T.StructField("user_id", T.StringType(), False),
    T.StructField("event_date", T.DateType(), False),
    T.StructField("score", T.DoubleType(), False),
])
_EPS = 1e-15


class InsufficientData(ValueError):
    """Too few labelled dates or rows, or a single class, to train or evaluate honestly."""


@dataclass(frozen=True)
class TrainResult:
    """A fitted pipeline and how it (and the baseline) did on the holdout it never saw."""

    model: PipelineModel
    metrics: dict[str, float]  # the model on the holdout
    baseline_metrics: dict[str, float]  # the recency rule on the same holdout
    params: dict[str, Any]  # estimator settings and split settings (logged as run parameters)
    features: dict[str, list[str]]  # {"numeric": [...], "categorical": [...]}
    train_dates: tuple[dt.date, dt.date]  # first and last training as-of date
    holdout_dates: tuple[dt.date, dt.date]  # first and last holdout as-of date
    counts: dict[str, int]  # train_rows, train_positives, holdout_rows, holdout_positives
    #: The labelled holdout rows (lazy): evaluate the current champion on exactly these.
    holdout: DataFrame = field(repr=False, compare=False, default=None)


def build_pipeline(params: Mapping[str, Any] | None = None, *, seed: int | None = None) -> Pipeline:
    """The unfitted pipeline (see the module docstring). ``seed``: unused by logistic regression
    (deterministic); kept so a seeded estimator can take its place without changing callers."""
    p = {**DEFAULT_PARAMS, **(params or {})}
    logs = ", ".join(f"log1p(CAST({c} AS DOUBLE)) AS _log_{c}" for c in NUMERIC_FEATURES)
    (country,) = CATEGORICAL_FEATURES
    return Pipeline(stages=[
        SQLTransformer(statement=f"SELECT *, {logs} FROM __THIS__"),
        VectorAssembler(inputCols=[f"_log_{c}" for c in NUMERIC_FEATURES], outputCol="_numeric", handleInvalid="error"),
        StandardScaler(inputCol="_numeric", outputCol="_numeric_scaled", withMean=True, withStd=True),
        StringIndexer(inputCol=country, outputCol="_country_index", handleInvalid="keep",
                      stringOrderType="alphabetAsc"),
        OneHotEncoder(inputCols=["_country_index"], outputCols=["_country_onehot"], handleInvalid="keep"),
        VectorAssembler(inputCols=["_numeric_scaled", "_country_onehot"], outputCol="_features"),
        LogisticRegression(featuresCol="_features", labelCol=LABEL, family="binomial", standardization=False,
                           regParam=float(p["regParam"]), elasticNetParam=float(p["elasticNetParam"]),
                           maxIter=int(p["maxIter"]), tol=float(p["tol"])),
    ])


def _probability(model: PipelineModel, df: DataFrame) -> DataFrame:
    """``df`` with ``score``: the model's probability of class 1 (no UDF: ``vector_to_array``)."""
    out = model.transform(df)
    return out.withColumn("score", vector_to_array("probability").getItem(1))


def _labelled(df: DataFrame) -> DataFrame:
    return df.where(F.col(LABEL).isNotNull()).withColumn(LABEL, F.col(LABEL).cast("double"))


def metrics(scored: DataFrame, score_col: str = "score") -> dict[str, float]:
    """AUCs, log loss, base rate and counts of labelled rows with a score in [0, 1] (see the docstring)."""
    # Three passes over the same scores (counts and log loss, two curves): score once.
    rows = scored.select(F.col(LABEL).cast("double").alias(LABEL),
                         F.col(score_col).cast("double").alias("score")).cache()
    try:
        p = F.least(F.greatest(F.col("score"), F.lit(_EPS)), F.lit(1 - _EPS))
        loss = -(F.col(LABEL) * F.log(p) + (1 - F.col(LABEL)) * F.log(1 - p))
        agg = rows.agg(F.count(F.lit(1)).alias("n"), F.sum(LABEL).alias("pos"), F.avg(loss).alias("loss")).first()
        n, pos = int(agg["n"]), int(agg["pos"] or 0)
        if n == 0 or pos in (0, n):
            raise InsufficientData(f"cannot evaluate on {n} labelled row(s) with {pos} positive(s): "
                                   "need both classes")
        evaluator = BinaryClassificationEvaluator(rawPredictionCol="score", labelCol=LABEL)
        return {
            "auc_roc": float(evaluator.evaluate(rows, {evaluator.metricName: "areaUnderROC"})),
            "auc_pr": float(evaluator.evaluate(rows, {evaluator.metricName: "areaUnderPR"})),
            "log_loss": float(agg["loss"]),
            "base_rate": pos / n,
            "rows": n,
            "positives": pos,
        }
    finally:
        rows.unpersist()


def evaluate(model: PipelineModel, df: DataFrame) -> dict[str, float]:
    """The model's metrics on the labelled rows of ``df`` (a features frame), e.g. the champion on a new holdout."""
    return metrics(_probability(model, _labelled(df)))


def baseline_metrics(df: DataFrame) -> dict[str, float]:
    """The recency rule's metrics on the labelled rows of ``df``, with the model's evaluator."""
    rows = _labelled(df).withColumn("score", 1.0 / (1.0 + F.col("recency_days").cast("double")))
    return metrics(rows)


def score(model: PipelineModel, features: DataFrame) -> DataFrame:
    """``SCORES_SCHEMA`` (user_id, event_date, score): the probability of a purchase in the next 7 days."""
    out = _probability(model, features)
    return out.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in SCORES_SCHEMA.fields])


def split_dates(dates: Sequence[dt.date], *, holdout_days: int,
                gap_days: int = LABEL_DAYS) -> tuple[list[dt.date], list[dt.date]]:
    """(training dates, holdout dates) from the labelled as-of dates (see the module docstring)."""
    if holdout_days < 1 or gap_days < 0:
        raise ValueError("holdout_days must be >= 1 and gap_days >= 0")
    dates = sorted(set(dates))
    if len(dates) <= holdout_days:
        raise InsufficientData(
            f"{len(dates)} labelled as-of date(s): need more than holdout_days={holdout_days}, plus a gap of "
            f"{gap_days} day(s) and at least one training date before it")
    holdout = dates[-holdout_days:]
    train = [d for d in dates if d <= holdout[0] - dt.timedelta(days=gap_days)]
    if not train:
        raise InsufficientData(
            f"no labelled as-of date to train on: the holdout is {holdout[0]}..{holdout[-1]} and, with a gap of "
            f"{gap_days} day(s), training dates must be on or before {holdout[0] - dt.timedelta(days=gap_days)}; "
            f"labelled dates run {dates[0]}..{dates[-1]} ({len(dates)} date(s); contiguous dates need at least "
            f"{holdout_days + gap_days + 1})")
    return train, holdout


def train(features: DataFrame, *, holdout_days: int, gap_days: int = LABEL_DAYS, seed: int = 7,
          params: Mapping[str, Any] | None = None, min_rows: int = 50) -> TrainResult:
    """Fit the pipeline on earlier labelled as-of dates; measure it and the baseline on the last ones.

    Raises ``InsufficientData`` when the split leaves no training date, fewer than
    ``min_rows`` rows on either side, or a single class on either side.
    """
    labelled = _labelled(features)
    dates = [r[0] for r in labelled.select("event_date").distinct().collect()]  # one row per date
    train_dates, holdout_dates = split_dates(dates, holdout_days=holdout_days, gap_days=gap_days)
    t_lo, t_hi, h_lo, h_hi = train_dates[0], train_dates[-1], holdout_dates[0], holdout_dates[-1]
    side = (F.when(F.col("event_date").between(F.lit(t_lo), F.lit(t_hi)), "train")
            .when(F.col("event_date").between(F.lit(h_lo), F.lit(h_hi)), "holdout"))
    counts = {"train_rows": 0, "train_positives": 0, "holdout_rows": 0, "holdout_positives": 0}
    for r in labelled.groupBy(side.alias("side")).agg(F.count(F.lit(1)).alias("n"), F.sum(LABEL).alias("pos")) \
            .where(F.col("side").isNotNull()).collect():
        counts[f"{r['side']}_rows"], counts[f"{r['side']}_positives"] = int(r["n"]), int(r["pos"] or 0)
    for s in ("train", "holdout"):
        n, pos = counts[f"{s}_rows"], counts[f"{s}_positives"]
        if n < min_rows or pos in (0, n):
            raise InsufficientData(f"{s} set ({(t_lo, t_hi) if s == 'train' else (h_lo, h_hi)}) has {n} row(s), "
                                   f"{pos} positive(s): need at least {min_rows} rows and both classes")
    train_df = labelled.where(F.col("event_date").between(F.lit(t_lo), F.lit(t_hi)))
    holdout = labelled.where(F.col("event_date").between(F.lit(h_lo), F.lit(h_hi)))
    p = {**DEFAULT_PARAMS, **(params or {})}
    # Fitting passes over the rows once per stage and once per solver iteration: read them once.
    train_df = train_df.cache()
    try:
        model = build_pipeline(p, seed=seed).fit(train_df)
    finally:
        train_df.unpersist()
    return TrainResult(
        model=model, metrics=evaluate(model, holdout), baseline_metrics=baseline_metrics(holdout),
        params={**p, "estimator": "LogisticRegression", "holdout_days": holdout_days, "gap_days": gap_days,
                "seed": seed, "train_from": t_lo.isoformat(), "train_to": t_hi.isoformat(),
                "holdout_from": h_lo.isoformat(), "holdout_to": h_hi.isoformat()},
        features={"numeric": list(NUMERIC_FEATURES), "categorical": list(CATEGORICAL_FEATURES)},
        train_dates=(t_lo, t_hi), holdout_dates=(h_lo, h_hi), counts=counts, holdout=holdout)


def coefficients(model: PipelineModel) -> dict[str, float]:
    """The fitted logistic regression's coefficients by input, plus ``intercept``.

    Numeric inputs: per standard deviation of ``log1p(feature)``. ``country=XX``: one-hot
    against the reference (the encoder drops its own invalid bucket, so every country seen
    in training and ``country=(other)``, NULL or unseen, has a coefficient).
    """
    indexer = next(s for s in model.stages if isinstance(s, StringIndexerModel))
    lr = model.stages[-1]
    values = lr.coefficients.toArray().tolist()
    names = [*NUMERIC_FEATURES, *[f"country={c}" for c in indexer.labels], "country=(other)"]
    if len(names) != len(values):  # never silently mislabel: fall back to positions
        names = [f"x{i}" for i in range(len(values))]
    return {**dict(zip(names, values)), "intercept": float(lr.intercept)}
