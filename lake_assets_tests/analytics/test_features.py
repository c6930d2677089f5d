"""Purchase-propensity features on a tiny hand-made lake: exact values, point in time.

Every number below is worked out by hand from the rows in ``lake`` (dates are 2024,
as-of dates in March): a change in a window bound, in the SCD2 lookup or in the label
horizon changes one of them.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pyspark.sql import types as T

from lake_assets.analytics.features import (
    CATEGORICAL_FEATURES, EVENT_TYPES, FEATURES_SCHEMA, NUMERIC_FEATURES, input_window, user_features)

UTC = dt.timezone.utc
D = dt.date
KNOWN_UNTIL = D(2024, 3, 20)

ACTIVITY = T.StructType([T.StructField("user_id", T.StringType()), T.StructField("date", T.DateType()),
                         T.StructField("events", T.LongType()), T.StructField("sessions", T.LongType()),
                         T.StructField("purchases", T.LongType())])
TRANSACTIONS = T.StructType([T.StructField("transaction_id", T.StringType()), T.StructField("user_id", T.StringType()),
                             T.StructField("amount", T.DecimalType(18, 2)), T.StructField("currency", T.StringType()),
                             T.StructField("status", T.StringType()), T.StructField("created_at", T.TimestampType())])
EVENTS = T.StructType([T.StructField("event_id", T.StringType()), T.StructField("user_id", T.StringType()),
                       T.StructField("event_type", T.StringType()), T.StructField("ts", T.TimestampType())])
USERS = T.StructType([T.StructField("user_key", T.LongType()), T.StructField("user_id", T.StringType()),
                      T.StructField("country", T.StringType()), T.StructField("valid_from", T.TimestampType()),
                      T.StructField("valid_to", T.TimestampType())])


def ts(month: int, day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2024, month, day, hour, tzinfo=UTC)


def base_rows() -> dict[str, list]:
    """u1: two versions (DE until 11 March noon, then FR), active 1, 8, 10 March, buys on 8 and 13 March.
    u2: first version on 12 March (US), events on 9 and 12 March. u3: last seen in February (too long
    ago). u4: events but never in dim_users. The unknown member (key -1) is there as in gold."""
    activity = [
        ("u1", D(2024, 3, 1), 2, 1, 0), ("u1", D(2024, 3, 8), 3, 2, 1), ("u1", D(2024, 3, 10), 1, 1, 0),
        ("u1", D(2024, 3, 13), 0, 0, 1),  # a purchase without events that day
        ("u2", D(2024, 3, 9), 4, 1, 0), ("u2", D(2024, 3, 12), 1, 1, 0),
        ("u3", D(2024, 2, 5), 1, 1, 0),
        ("u4", D(2024, 3, 10), 5, 1, 0),
    ]
    transactions = [
        ("t1", "u1", Decimal("10.00"), "EUR", "completed", ts(3, 8)),  # 10.80 USD
        ("t2", "u1", Decimal("99.00"), "USD", "pending", ts(3, 8)),  # not a purchase
        ("t3", "u1", Decimal("20.00"), "USD", "completed", ts(3, 13)),
        ("t4", "u1", Decimal("5.00"), "USD", "refunded", ts(3, 9)),  # a refund is not a purchase
    ]
    events = [
        *[(f"e1a{i}", "u1", "page_view", ts(3, 1)) for i in range(2)],
        ("e1b", "u1", "product_view", ts(3, 8)), ("e1c", "u1", "add_to_cart", ts(3, 8)),
        ("e1d", "u1", "checkout", ts(3, 8)), ("e1e", "u1", "login", ts(3, 10, 23)),
        *[(f"e2a{i}", "u2", "page_view", ts(3, 9)) for i in range(4)], ("e2b", "u2", "purchase", ts(3, 12)),
        ("e3", "u3", "page_view", ts(2, 5)),
        *[(f"e4{i}", "u4", "page_view", ts(3, 10)) for i in range(5)],
    ]
    users = [
        (11, "u1", "DE", ts(2, 1, 10), ts(3, 11, 12)), (12, "u1", "FR", ts(3, 11, 12), None),
        (21, "u2", "US", ts(3, 12, 8), None),
        (31, "u3", "GB", ts(1, 15), None),
        (-1, None, None, None, None),
    ]
    return {"activity": activity, "transactions": transactions, "events": events, "users": users}


def features(spark, rows, start, end, known_until=KNOWN_UNTIL) -> dict[tuple[str, dt.date], dict]:
    frames = [spark.createDataFrame(rows[k], s) for k, s in
              (("activity", ACTIVITY), ("transactions", TRANSACTIONS), ("events", EVENTS), ("users", USERS))]
    df = user_features(*frames, start=start, end=end, known_until=known_until)
    assert df.schema == FEATURES_SCHEMA or [(f.name, f.dataType) for f in df.schema] == \
        [(f.name, f.dataType) for f in FEATURES_SCHEMA]
    return {(r["user_id"], r["event_date"]): r.asDict() for r in df.collect()}


def zero_types(**counts) -> dict:
    return {f"events_{t}_28d": counts.get(t, 0) for t in EVENT_TYPES}


@pytest.fixture(scope="module")
def march(spark):
    return features(spark, base_rows(), D(2024, 3, 10), D(2024, 3, 14))


def test_exact_values_on_the_as_of_date(march):
    # Inactive for 28 days (u3) and never in dim_users (u4): no rows.
    assert {u for u, _ in march} == {"u1", "u2"}
    assert march[("u1", D(2024, 3, 10))] == {
        "user_id": "u1", "event_date": D(2024, 3, 10), "recency_days": 0,
        "events_7d": 4, "events_28d": 6, "sessions_7d": 3, "sessions_28d": 4,
        "purchases_7d": 1, "purchases_28d": 1, "monetary_7d": 10.8, "monetary_28d": 10.8,
        **zero_types(page_view=2, product_view=1, add_to_cart=1, checkout=1, login=1),
        "tenure_days": 38,  # since the first version, 1 February (a leap year)
        "country": "DE",  # the version valid at the end of 10 March
        "label": 1,  # a completed purchase on 13 March, within (10, 17]
    }
    assert march[("u2", D(2024, 3, 10))] == {
        "user_id": "u2", "event_date": D(2024, 3, 10), "recency_days": 1,
        "events_7d": 4, "events_28d": 4, "sessions_7d": 1, "sessions_28d": 1,
        "purchases_7d": 0, "purchases_28d": 0, "monetary_7d": 0.0, "monetary_28d": 0.0,
        **zero_types(page_view=4),
        "tenure_days": 1,  # first version on 12 March is not known yet: since the first event
        "country": None,  # no version valid yet
        "label": 0,
    }


def test_later_dates_see_new_versions_and_the_label_horizon(march):
    u1 = march[("u1", D(2024, 3, 12))]
    assert (u1["recency_days"], u1["events_7d"], u1["country"], u1["tenure_days"], u1["label"]) == (2, 4, "FR", 40, 1)
    u2 = march[("u2", D(2024, 3, 12))]
    assert (u2["events_28d"], u2["recency_days"], u2["events_purchase_28d"], u2["tenure_days"], u2["country"]) == \
        (5, 0, 1, 3, "US")
    u1 = march[("u1", D(2024, 3, 13))]  # the purchase of the as-of date counts as a feature, not in the label
    assert (u1["purchases_7d"], u1["monetary_7d"], u1["recency_days"], u1["label"]) == (2, 30.8, 3, 0)
    # 13 March + 7 = 20 March is known; 14 March + 7 is not: NULL, not 0.
    assert march[("u2", D(2024, 3, 13))]["label"] == 0
    assert march[("u1", D(2024, 3, 14))]["label"] is None and march[("u2", D(2024, 3, 14))]["label"] is None
    assert len(march) == 10  # u1 and u2 on each of the five dates


def test_rows_after_the_as_of_date_change_nothing_but_the_label(spark):
    day = D(2024, 3, 10)
    before = features(spark, base_rows(), day, day)
    rows = base_rows()
    # After 10 March: u2 is busy, buys, u1 moves to GB (the SCD2 row it closes ends after the date).
    rows["activity"] += [("u2", D(2024, 3, 11), 9, 3, 1), ("u2", D(2024, 3, 15), 2, 1, 1)]
    rows["transactions"] += [("t5", "u2", Decimal("1000.00"), "USD", "completed", ts(3, 11, 0)),
                             ("t6", "u2", Decimal("7.00"), "USD", "completed", ts(3, 15))]
    rows["events"] += [(f"e5{i}", "u2", "checkout", ts(3, 11, 0)) for i in range(9)]
    rows["users"] = [(11, "u1", "DE", ts(2, 1, 10), ts(3, 11, 5)), (13, "u1", "GB", ts(3, 11, 5), ts(3, 11, 12)),
                     (12, "u1", "FR", ts(3, 11, 12), None), *rows["users"][2:]]
    after = features(spark, rows, day, day)
    assert after.keys() == before.keys()
    for key in before:
        assert {k: v for k, v in after[key].items() if k != "label"} == \
            {k: v for k, v in before[key].items() if k != "label"}, key
    assert before[("u2", day)]["label"] == 0 and after[("u2", day)]["label"] == 1


def test_known_until_bounds(spark):
    with pytest.raises(ValueError, match="after known_until"):
        features(spark, base_rows(), D(2024, 3, 10), D(2024, 3, 21))
    assert input_window(D(2024, 3, 10), D(2024, 3, 14), KNOWN_UNTIL) == (D(2024, 2, 12), D(2024, 3, 20))
    assert input_window(D(2024, 3, 10), D(2024, 3, 10), KNOWN_UNTIL) == (D(2024, 2, 12), D(2024, 3, 17))


def test_feature_lists_cover_the_schema():
    names = [f.name for f in FEATURES_SCHEMA.fields]
    assert set(NUMERIC_FEATURES) | set(CATEGORICAL_FEATURES) | {"user_id", "event_date", "label"} == set(names)
    assert len(NUMERIC_FEATURES) == len(set(NUMERIC_FEATURES)) == 10 + len(EVENT_TYPES)
