"""Purchase-propensity features: one row per (user, as-of date) from commerce gold, point in time.

A row describes a user as they looked at the *end* of its as-of date ``event_date``
(UTC days, like every date in the lake), using nothing dated after it, and carries
the label "completed a purchase in the 7 days after it" once those days are known.
That is what makes the table safe to train on: a model fitted on these rows sees
exactly what a prediction made that evening could have seen.

Inputs (Spark DataFrames the caller loads; only these columns are read, so this
module imports no domain, by the house rule):

* ``activity``: ``fact_user_activity`` (``ACTIVITY_COLUMNS``): events, sessions and
  completed transactions per user and day;
* ``transactions``: ``fact_transactions`` (``TRANSACTION_COLUMNS``): completed amounts;
* ``events``: ``fact_events`` (``EVENT_COLUMNS``): counts by event type;
* ``users``: ``dim_users`` (``USER_COLUMNS``), every SCD2 version (the unknown member,
  ``user_id`` NULL, is ignored).

Facts must cover ``input_window(start, end, known_until)``: 27 days before the first
as-of date (the 28-day window) to 7 days after the last one (its label), capped at
``known_until``; ``dim_users`` is read whole.

Choices:

* Who gets a row: every user with at least one event in the 28 days ending on the
  as-of date (inclusive) *and* a record in ``dim_users`` (any version). Facts naming a
  user the lake has never seen (gold's unknown member) have no features: there is no
  user to score, and predictions promise users that exist in ``dim_users``.
* Windows: ``_7d`` is the as-of date and the 6 days before it, ``_28d`` the date and the
  27 before. Sessions are summed per day (a session crossing midnight counts twice).
* Purchases: completed transactions (``fact_user_activity.purchases``); refunds are
  their own transactions and are not subtracted. The label uses the same definition
  over the days ``(d, d + 7]``; it is NULL while ``d + 7`` is after ``known_until``.
* Money: ``monetary_*`` is the sum of completed amounts converted to USD at the fixed
  reference rates of ``REFERENCE_USD_RATES``. Fixed, not daily, rates: a feature needs
  one consistent scale, and a rebuilt partition must not change because a rate did.
  Amounts in a currency missing from the table are left out of ``monetary_*`` (they
  still count as purchases). Not for accounting: revenue stays per currency in gold.
* Recency: days from the last day with an event (within the 28 days) to the as-of date.
* Tenure: days from the earlier of the user's first version (``valid_from``, only if on
  or before the as-of date) and their first event within the 28-day window. The
  window bound keeps a partition's values independent of how far back the caller
  loaded facts (the same rows whatever range is rebuilt), at the cost of capping the
  tenure of users who were active before their first user version at 27 days.
* Country: of the ``dim_users`` version valid at the end of the as-of date
  (``valid_from < d + 1 <= valid_to``); NULL when the user's first version is later
  (the model buckets it like an unseen country).

One pass: daily rows are fanned out to the as-of dates they matter to (``explode`` of
a 35-day sequence: 28 days of window, 7 of label) and aggregated once per (user, as-of
date); no per-date loop, no join against a date spine.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

__all__ = [
    "ACTIVITY_COLUMNS", "CATEGORICAL_FEATURES", "EVENT_COLUMNS", "EVENT_TYPES", "FEATURES_SCHEMA",
    "LABEL", "LABEL_DAYS", "NUMERIC_FEATURES", "REFERENCE_USD_RATES", "TRANSACTION_COLUMNS",
    "USER_COLUMNS", "WINDOW_DAYS", "input_window", "user_features",
]

EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "checkout", "purchase", "login", "logout")
WINDOW_DAYS = 28  # the long window (and who gets a row: an event in it)
SHORT_DAYS = 7
LABEL_DAYS = 7  # the label looks at (d, d + LABEL_DAYS]

ACTIVITY_COLUMNS = ("user_id", "date", "events", "sessions", "purchases")
TRANSACTION_COLUMNS = ("user_id", "amount", "currency", "status", "created_at")
EVENT_COLUMNS = ("user_id", "event_type", "ts")
USER_COLUMNS = ("user_id", "country", "valid_from", "valid_to")

#: USD per unit of each currency: fixed reference rates (approximate, early 2024), so that
#: monetary features share one scale and never change when a partition is rebuilt.
REFERENCE_USD_RATES: Mapping[str, float] = {
    "USD": 1.0, "EUR": 1.08, "GBP": 1.27, "JPY": 0.0067, "BRL": 0.20, "INR": 0.012, "CAD": 0.74,
    "CHF": 1.13, "AUD": 0.66, "CNY": 0.14, "MXN": 0.058, "SEK": 0.095, "NOK": 0.094, "DKK": 0.145,
    "PLN": 0.25, "KRW": 0.00075, "SGD": 0.74, "HKD": 0.128, "NZD": 0.61, "ZAR": 0.053,
}

_TYPE_COLUMNS = tuple(f"events_{t}_28d" for t in EVENT_TYPES)
#: The model's numeric inputs, in the order it assembles them.
NUMERIC_FEATURES = (
    "recency_days", "events_7d", "events_28d", "sessions_7d", "sessions_28d", "purchases_7d", "purchases_28d",
    "monetary_7d", "monetary_28d", *_TYPE_COLUMNS, "tenure_days",
)
#: The model's categorical inputs.
CATEGORICAL_FEATURES = ("country",)
LABEL = "label"

_L, _I, _D = T.LongType(), T.IntegerType(), T.DoubleType()
FEATURES_SCHEMA = T.StructType([
    T.StructField("user_id", T.StringType(), False),
    T.StructField("event_date", T.DateType(), False),  # the as-of date (the partition)
    T.StructField("recency_days", _I, False),
    T.StructField("events_7d", _L, False),
    T.StructField("events_28d", _L, False),
    T.StructField("sessions_7d", _L, False),
    T.StructField("sessions_28d", _L, False),
    T.StructField("purchases_7d", _L, False),
    T.StructField("purchases_28d", _L, False),
    T.StructField("monetary_7d", _D, False),
    T.StructField("monetary_28d", _D, False),
    *[T.StructField(c, _L, False) for c in _TYPE_COLUMNS],
    T.StructField("tenure_days", _I, False),
    T.StructField("country", T.StringType(), True),
    T.StructField(LABEL, _I, True),
])


def input_window(start: dt.date, end: dt.date, known_until: dt.date) -> tuple[dt.date, dt.date]:
    """The fact dates ``user_features`` reads for as-of dates ``start .. end``: load these partitions."""
    return start - dt.timedelta(days=WINDOW_DAYS - 1), min(end + dt.timedelta(days=LABEL_DAYS), known_until)


def _require(df: DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)} (has: {', '.join(df.columns)})")


def _usd(rates: Mapping[str, float]) -> Column:
    """The completed amount in USD at the reference rate (NULL for a currency without one)."""
    table = F.create_map(*[x for code, rate in sorted(rates.items()) for x in (F.lit(code), F.lit(float(rate)))])
    return F.col("amount").cast("double") * table[F.col("currency")]


def user_features(activity: DataFrame, transactions: DataFrame, events: DataFrame, users: DataFrame, *,
                  start: dt.date, end: dt.date, known_until: dt.date,
                  rates: Mapping[str, float] | None = None) -> DataFrame:
    """Feature rows (``FEATURES_SCHEMA``) for every as-of date ``start .. end`` (inclusive).

    ``known_until``: the last day whose facts are complete. As-of dates must not be after
    it (a day's features need the whole day); labels need ``d + 7 <= known_until``.
    """
    if start > end:
        raise ValueError(f"start {start} is after end {end}")
    if end > known_until:
        raise ValueError(f"as-of date {end} is after known_until {known_until}: its day is not complete")
    for df, cols, name in ((activity, ACTIVITY_COLUMNS, "activity"), (events, EVENT_COLUMNS, "events"),
                           (transactions, TRANSACTION_COLUMNS, "transactions"), (users, USER_COLUMNS, "users")):
        _require(df, cols, name)
    lo, hi = input_window(start, end, known_until)
    lo_c, hi_c, end_c = F.lit(lo), F.lit(hi), F.lit(end)
    zero_l, zero_d = F.lit(0).cast("bigint"), F.lit(0.0)

    # Daily rows per user, one shape for all three facts: unioned, then summed per day.
    act = activity.where(F.col("date").between(lo_c, hi_c)).select(
        "user_id", F.col("date").cast("date").alias("date"), F.col("events").cast("bigint").alias("events"),
        F.col("sessions").cast("bigint").alias("sessions"), F.col("purchases").cast("bigint").alias("purchases"),
        zero_d.alias("monetary"), *[zero_l.alias(c) for c in _TYPE_COLUMNS])
    day = F.to_date("created_at")
    money = transactions.where((F.col("status") == "completed") & day.between(lo_c, end_c)).select(
        "user_id", day.alias("date"), zero_l.alias("events"), zero_l.alias("sessions"), zero_l.alias("purchases"),
        F.coalesce(_usd(rates or REFERENCE_USD_RATES), zero_d).alias("monetary"),
        *[zero_l.alias(c) for c in _TYPE_COLUMNS])
    day = F.to_date("ts")
    typed = events.where(day.between(lo_c, end_c)).select(
        "user_id", day.alias("date"), zero_l.alias("events"), zero_l.alias("sessions"), zero_l.alias("purchases"),
        zero_d.alias("monetary"),
        *[(F.col("event_type") == t).cast("bigint").alias(c) for t, c in zip(EVENT_TYPES, _TYPE_COLUMNS)])
    sums = ["events", "sessions", "purchases", "monetary", *_TYPE_COLUMNS]
    daily = act.unionByName(money).unionByName(typed).groupBy("user_id", "date").agg(
        *[F.sum(c).alias(c) for c in sums])

    # Each day counts for the as-of dates 27 days after it (features) and 7 before it (label).
    fanned = daily.select(
        "*", F.explode(F.sequence(F.date_sub("date", LABEL_DAYS), F.date_add("date", WINDOW_DAYS - 1)))
        .alias("event_date")).where(F.col("event_date").between(F.lit(start), end_c))
    age = F.datediff("event_date", "date")  # 0: the as-of date itself; < 0: after it
    window, short, ahead = age >= 0, age.between(0, SHORT_DAYS - 1), age < 0

    def total(c: str, when: Column, zero: Column = zero_l) -> Column:
        return F.coalesce(F.sum(F.when(when, F.col(c))), zero)

    active = window & (F.col("events") > 0)
    agg = fanned.groupBy("user_id", "event_date").agg(
        total("events", short).alias("events_7d"), total("events", window).alias("events_28d"),
        total("sessions", short).alias("sessions_7d"), total("sessions", window).alias("sessions_28d"),
        total("purchases", short).alias("purchases_7d"), total("purchases", window).alias("purchases_28d"),
        F.round(total("monetary", short, zero_d), 2).alias("monetary_7d"),
        F.round(total("monetary", window, zero_d), 2).alias("monetary_28d"),
        *[total(c, window).alias(c) for c in _TYPE_COLUMNS],
        F.max(F.when(active, F.col("date"))).alias("_last_event"),
        F.min(F.when(active, F.col("date"))).alias("_first_event"),
        total("purchases", ahead).alias("_purchases_ahead"),
    ).where(F.col("events_28d") > 0)

    # Users: known ones only; their first version and the version valid at the end of each date.
    versions = users.where(F.col("user_id").isNotNull())
    firsts = versions.groupBy("user_id").agg(F.min("valid_from").alias("_first_version"))
    rows = agg.join(firsts, "user_id")
    cutoff = F.date_add("event_date", 1).cast("timestamp")  # the end of the as-of date (session time zone: UTC)
    valid = versions.select(F.col("user_id").alias("_uid"), F.col("country").alias("_country"),
                            F.col("valid_from").alias("_from"), F.col("valid_to").alias("_to"))
    rows = rows.join(valid, (F.col("user_id") == F.col("_uid")) & (F.col("_from") < cutoff)
                     & (F.col("_to").isNull() | (F.col("_to") >= cutoff)), "left")

    first_version = F.to_date("_first_version")
    since = F.least(F.col("_first_event"), F.when(first_version <= F.col("event_date"), first_version))
    label = F.when(F.date_add("event_date", LABEL_DAYS) <= F.lit(known_until),
                   (F.col("_purchases_ahead") > 0).cast("int"))
    out = rows.select(
        "user_id", "event_date",
        F.datediff("event_date", "_last_event").alias("recency_days"),
        "events_7d", "events_28d", "sessions_7d", "sessions_28d", "purchases_7d", "purchases_28d",
        "monetary_7d", "monetary_28d", *_TYPE_COLUMNS,
        F.datediff("event_date", since).alias("tenure_days"),
        F.col("_country").alias("country"),
        label.alias(LABEL),
    )
    return out.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in FEATURES_SCHEMA.fields])
