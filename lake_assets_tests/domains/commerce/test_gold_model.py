"""Commerce gold (``gold.py``) held to shared/contracts/commerce.md section 4: SCD2 users, the
point-in-time join of facts to user versions, the marts and the reference dimensions.

Small literal silver tables; every expected row is written out by hand. Each output is
collected once per module (timestamps rendered as UTC text, independent of the Python zone).
"""
from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest

UTC = dt.timezone.utc
UNKNOWN = -1


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def D(text: str) -> Decimal:
    return Decimal(text)


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


# -- silver users: every version (user_id, email, country, status, created_at, updated_at) --
U1 = [
    ("u1", "a1@x.com", "DE", "active", ts("2024-12-01 00:00:00"), ts("2025-01-01 00:00:00")),
    ("u1", "a1@x.com", "FR", "active", ts("2024-12-01 00:00:00"), ts("2025-02-01 00:00:00")),
    ("u1", "a1@y.com", "DE", "suspended", ts("2024-12-01 00:00:00"), ts("2025-03-01 00:00:00")),
]
U2 = [("u2", "b@x.com", "US", "active", ts("2025-01-10 00:00:00"), ts("2025-01-15 00:00:00"))]
# u3 moves from DE to FR at noon on 2025-03-04.
U3 = [
    ("u3", "c@x.com", "DE", "active", ts("2025-03-01 00:00:00"), ts("2025-03-04 00:00:00")),
    ("u3", "c@x.com", "FR", "active", ts("2025-03-01 00:00:00"), ts("2025-03-04 12:00:00")),
]
USERS = U1 + U2 + U3
# A version of u1 delivered late, between its first two.
U1_LATE = ("u1", "a1@z.com", "AT", "closed", ts("2024-12-01 00:00:00"), ts("2025-01-20 00:00:00"))

# (user_id, email, country, status, valid_from, valid_to, is_current), timestamps as UTC text.
EXPECTED_DIM = {
    ("u1", "a1@x.com", "DE", "active", "2025-01-01 00:00:00", "2025-02-01 00:00:00", False),
    ("u1", "a1@x.com", "FR", "active", "2025-02-01 00:00:00", "2025-03-01 00:00:00", False),
    ("u1", "a1@y.com", "DE", "suspended", "2025-03-01 00:00:00", None, True),
    ("u2", "b@x.com", "US", "active", "2025-01-15 00:00:00", None, True),
    ("u3", "c@x.com", "DE", "active", "2025-03-04 00:00:00", "2025-03-04 12:00:00", False),
    ("u3", "c@x.com", "FR", "active", "2025-03-04 12:00:00", None, True),
    (None, None, None, None, None, None, None),  # the unknown member
}
EXPECTED_DIM_LATE = (EXPECTED_DIM - {
    ("u1", "a1@x.com", "DE", "active", "2025-01-01 00:00:00", "2025-02-01 00:00:00", False),
}) | {
    ("u1", "a1@x.com", "DE", "active", "2025-01-01 00:00:00", "2025-01-20 00:00:00", False),
    ("u1", "a1@z.com", "AT", "closed", "2025-01-20 00:00:00", "2025-02-01 00:00:00", False),
}

# -- facts ------------------------------------------------------------------------------
# Events at the validity boundaries: (event_id, user_id, event_type, ts, session_id, product_id)
PIT_EVENTS = [
    ("b-at-v2-start", "u1", "page_view", ts("2025-02-01 00:00:00"), "s", None),
    ("b-just-before-v2", "u1", "page_view", ts("2025-01-31 23:59:59.999999"), "s", None),
    ("b-before-first", "u1", "login", ts("2024-12-01 00:00:00"), None, None),
    ("b-current", "u1", "logout", ts("2025-03-10 00:00:00"), None, None),
    ("b-u2-at-start", "u2", "page_view", ts("2025-01-15 00:00:00"), None, "p1"),
    ("b-unknown-user", "u9", "page_view", ts("2025-02-01 00:00:00"), None, None),
]
# event_id -> the version it takes, as (user_id, valid_from) (None: the unknown member)
PIT_EXPECTED = {
    "b-at-v2-start": ("u1", "2025-02-01 00:00:00"),
    "b-just-before-v2": ("u1", "2025-01-01 00:00:00"),
    "b-before-first": ("u1", "2025-01-01 00:00:00"),
    "b-current": ("u1", "2025-03-01 00:00:00"),
    "b-u2-at-start": ("u2", "2025-01-15 00:00:00"),
    "b-unknown-user": None,
}
PIT_COUNTRY = {"b-at-v2-start": "FR", "b-just-before-v2": "DE", "b-before-first": "DE", "b-current": "DE",
               "b-u2-at-start": "US", "b-unknown-user": None}

MART_EVENTS = [
    ("m1", "u3", "page_view", ts("2025-03-04 08:00:00"), "s1", None),  # DE
    ("m2", "u3", "product_view", ts("2025-03-04 15:00:00"), "s1", "p1"),  # FR
    ("m3", "u3", "add_to_cart", ts("2025-03-04 16:00:00"), "s2", "p1"),  # FR
    ("m4", "u3", "logout", ts("2025-03-04 17:00:00"), None, None),  # FR
    ("m5", "u3", "login", ts("2025-03-05 10:00:00"), "s3", None),  # FR
    ("m6", "u2", "page_view", ts("2025-03-04 09:00:00"), None, None),  # US
    ("m7", "u9", "page_view", ts("2025-03-04 10:00:00"), "s9", None),  # unknown
    ("m8", "u1", "page_view", ts("2025-03-04 11:00:00"), "s5", None),  # DE (u1's current version)
    ("m9", "u1", "page_view", ts("2025-03-04 12:00:00"), "s5", None),  # DE
]

# (transaction_id, user_id, amount, currency, status, created_at)
TRANSACTIONS = [
    ("t1", "u3", D("10.00"), "EUR", "completed", ts("2025-03-04 09:00:00")),  # DE
    ("t2", "u3", D("20.00"), "EUR", "completed", ts("2025-03-04 13:00:00")),  # FR
    ("t3", "u3", D("13.33"), "EUR", "completed", ts("2025-03-04 18:00:00")),  # FR
    ("t4", "u3", D("5.00"), "EUR", "refunded", ts("2025-03-04 14:00:00")),  # FR
    ("t5", "u3", D("99.00"), "EUR", "pending", ts("2025-03-04 10:00:00")),
    ("t6", "u3", D("50.00"), "EUR", "failed", ts("2025-03-04 11:00:00")),
    ("t7", "u3", D("1.00"), "EUR", "completed", ts("2025-02-10 12:00:00")),  # before u3's first version: DE
    ("t8", "u2", D("7.50"), "USD", "completed", ts("2025-03-04 09:30:00")),
    ("t9", "u2", D("2.50"), "USD", "completed", ts("2025-03-04 19:00:00")),
    ("t10", "u2", D("3.00"), "USD", "refunded", ts("2025-03-05 08:00:00")),
    ("t11", "u9", D("4.00"), "EUR", "completed", ts("2025-03-04 10:00:00")),  # unknown user
    ("t12", "u4", D("1.00"), "GBP", "refunded", ts("2025-03-05 09:00:00")),  # unknown user, refund only
    ("t13", "u1", D("8.00"), "EUR", "pending", ts("2025-02-01 00:00:00")),  # at v2's start
    ("t14", "u1", D("9.00"), "EUR", "failed", ts("2025-01-31 23:59:59.999999")),  # just before v2
]
TX_EXPECTED = {
    "t1": ("u3", "2025-03-04 00:00:00"), "t2": ("u3", "2025-03-04 12:00:00"), "t3": ("u3", "2025-03-04 12:00:00"),
    "t4": ("u3", "2025-03-04 12:00:00"), "t5": ("u3", "2025-03-04 00:00:00"), "t6": ("u3", "2025-03-04 00:00:00"),
    "t7": ("u3", "2025-03-04 00:00:00"), "t8": ("u2", "2025-01-15 00:00:00"), "t9": ("u2", "2025-01-15 00:00:00"),
    "t10": ("u2", "2025-01-15 00:00:00"), "t11": None, "t12": None,
    "t13": ("u1", "2025-02-01 00:00:00"), "t14": ("u1", "2025-01-01 00:00:00"),
}


# -- Spark -----------------------------------------------------------------------------------
def _users_df(spark, rows):
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField(n, T.StringType()) for n in ("user_id", "email", "country", "status")]
                          + [T.StructField("created_at", T.TimestampType()), T.StructField("updated_at",
                                                                                          T.TimestampType())])
    return spark.createDataFrame(rows, schema)


def _events_df(spark, rows):
    from pyspark.sql import types as T

    S = T.StringType()
    schema = T.StructType([T.StructField("event_id", S), T.StructField("user_id", S), T.StructField("event_type", S),
                           T.StructField("ts", T.TimestampType()), T.StructField("session_id", S),
                           T.StructField("product_id", S)])
    return spark.createDataFrame(rows, schema)


def _tx_df(spark, rows):
    from pyspark.sql import types as T

    S = T.StringType()
    schema = T.StructType([T.StructField("transaction_id", S), T.StructField("user_id", S),
                           T.StructField("amount", T.DecimalType(18, 2)), T.StructField("currency", S),
                           T.StructField("status", S), T.StructField("created_at", T.TimestampType())])
    return spark.createDataFrame(rows, schema)


def _collect(df) -> list[dict]:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    cols = [F.col(f.name).cast("string").alias(f.name) if isinstance(f.dataType, T.TimestampType) else F.col(f.name)
            for f in df.schema.fields]
    return [r.asDict() for r in df.select(*cols).collect()]


def _dim_tuples(rows):
    return {(r["user_id"], r["email"], r["country"], r["status"], r["valid_from"], r["valid_to"], r["is_current"])
            for r in rows}


@pytest.fixture(scope="module")
def dims(spark):
    """dim_users from shuffled input, from reversed and repartitioned input, and with a late version."""
    from lake_assets.domains.commerce import gold

    shuffled = USERS[:]
    random.Random(7).shuffle(shuffled)
    dim = gold.dim_users(_users_df(spark, shuffled)).cache()
    out = {
        "dim": dim,
        "a": _collect(dim),
        "b": _collect(gold.dim_users(_users_df(spark, USERS[::-1]).repartition(3))),
        "late": _collect(gold.dim_users(_users_df(spark, [U1_LATE] + USERS[::-1]))),
        "schema": dim.schema,
    }
    yield out
    dim.unpersist()


@pytest.fixture(scope="module")
def keys(dims):
    """(user_id, valid_from) -> user_key, as dim_users gave them."""
    return {(r["user_id"], r["valid_from"]): r["user_key"] for r in dims["a"] if r["user_id"] is not None}


@pytest.fixture(scope="module")
def facts(spark, dims):
    from lake_assets.domains.commerce import gold

    dim = dims["dim"]
    pit = gold.point_in_time(_events_df(spark, PIT_EVENTS), "ts", dim)
    ev = gold.fact_events(_events_df(spark, PIT_EVENTS), dim)
    mart_ev = gold.fact_events(_events_df(spark, MART_EVENTS), dim).cache()
    tx = gold.fact_transactions(_tx_df(spark, TRANSACTIONS), dim).cache()
    out = {
        "pit": _collect(pit),
        "events": _collect(ev),
        "events_schema": ev.schema,
        "transactions": _collect(tx),
        "transactions_schema": tx.schema,
        "daily_revenue": _collect(gold.daily_revenue(tx, dim)),
        "daily_active_users": _collect(gold.daily_active_users(mart_ev, dim)),
        "fact_user_activity": _collect(gold.fact_user_activity(mart_ev, tx)),
        "user_ltv": _collect(gold.user_ltv(tx)),
    }
    yield out
    mart_ev.unpersist()
    tx.unpersist()


# -- dim_users -------------------------------------------------------------------------------
def test_dim_users_is_scd2_with_an_unknown_member(dims):
    assert _dim_tuples(dims["a"]) == EXPECTED_DIM
    assert len(dims["a"]) == len(EXPECTED_DIM)
    unknown = [r for r in dims["a"] if r["user_key"] == UNKNOWN]
    assert unknown == [{"user_key": -1, "user_id": None, "email": None, "country": None, "status": None,
                        "valid_from": None, "valid_to": None, "is_current": None}]


def test_one_current_row_per_user_and_keys_unique(dims):
    rows = [r for r in dims["a"] if r["user_id"] is not None]
    current = sorted(r["user_id"] for r in rows if r["is_current"])
    assert current == ["u1", "u2", "u3"]
    assert len({r["user_key"] for r in dims["a"]}) == len(dims["a"])
    assert all(r["user_key"] != UNKNOWN for r in rows)


def test_dim_users_is_the_same_whatever_the_input_order(dims):
    assert sorted(dims["a"], key=repr) == sorted(dims["b"], key=repr)


def test_late_version_is_inserted_without_renumbering_the_others(dims, keys):
    late = dims["late"]
    assert _dim_tuples(late) == EXPECTED_DIM_LATE
    late_keys = {(r["user_id"], r["valid_from"]): r["user_key"] for r in late if r["user_id"] is not None}
    assert {k: late_keys[k] for k in keys} == keys  # every existing version keeps its key
    new_key = late_keys[("u1", "2025-01-20 00:00:00")]
    assert new_key not in keys.values() and new_key != UNKNOWN


def test_dim_users_schema(dims):
    assert dims["schema"].names == ["user_key", "user_id", "email", "country", "status", "valid_from",
                                    "valid_to", "is_current"]


# -- point in time -------------------------------------------------------------------------------
def _expected_key(keys, version):
    return UNKNOWN if version is None else keys[version]


def test_point_in_time_takes_the_version_valid_at_the_fact(facts, keys):
    got = {r["event_id"]: (r["user_key"], r["user_country"]) for r in facts["pit"]}
    assert len(facts["pit"]) == len(PIT_EVENTS)  # one version per fact, never more
    assert got == {e: (_expected_key(keys, v), PIT_COUNTRY[e]) for e, v in PIT_EXPECTED.items()}


def test_fact_events(facts, keys):
    assert facts["events_schema"].names == ["event_id", "user_id", "user_key", "event_type", "ts", "session_id",
                                            "product_id", "_event_date"]
    got = {r["event_id"]: r for r in facts["events"]}
    assert len(facts["events"]) == len(PIT_EVENTS)
    for e, version in PIT_EXPECTED.items():
        assert got[e]["user_key"] == _expected_key(keys, version), e
    b = got["b-just-before-v2"]
    assert (b["ts"], b["_event_date"], b["session_id"]) == ("2025-01-31 23:59:59.999999", day("2025-01-31"), "s")
    assert got["b-u2-at-start"]["product_id"] == "p1"


def test_fact_transactions(facts, keys):
    assert facts["transactions_schema"].names == ["transaction_id", "user_id", "user_key", "amount", "currency",
                                                  "status", "created_at", "_event_date"]
    got = {r["transaction_id"]: r for r in facts["transactions"]}
    assert len(facts["transactions"]) == len(TRANSACTIONS)
    assert {t: got[t]["user_key"] for t in TX_EXPECTED} == {t: _expected_key(keys, v) for t, v in TX_EXPECTED.items()}
    assert (got["t3"]["amount"], got["t3"]["_event_date"]) == (D("13.33"), day("2025-03-04"))


# -- marts ---------------------------------------------------------------------------------------
def test_daily_revenue(facts):
    got = {(r["date"], r["country"], r["currency"]): (r["revenue"], r["orders"], r["refunded_amount"],
                                                      r["avg_order_value"]) for r in facts["daily_revenue"]}
    assert len(facts["daily_revenue"]) == len(got)
    assert got == {
        (day("2025-02-10"), "DE", "EUR"): (D("1.00"), 1, D("0.00"), D("1.00")),
        (day("2025-03-04"), "DE", "EUR"): (D("10.00"), 1, D("0.00"), D("10.00")),
        (day("2025-03-04"), "FR", "EUR"): (D("33.33"), 2, D("5.00"), D("16.67")),  # 33.33 / 2 = 16.665
        (day("2025-03-04"), "US", "USD"): (D("10.00"), 2, D("0.00"), D("5.00")),
        (day("2025-03-04"), None, "EUR"): (D("4.00"), 1, D("0.00"), D("4.00")),
        (day("2025-03-05"), "US", "USD"): (D("0.00"), 0, D("3.00"), None),  # refund only: no average
        (day("2025-03-05"), None, "GBP"): (D("0.00"), 0, D("1.00"), None),
    }


def test_daily_active_users_counts_a_mover_in_each_country(facts):
    got = {(r["date"], r["country"]): r["active_users"] for r in facts["daily_active_users"]}
    assert len(facts["daily_active_users"]) == len(got)
    assert got == {
        (day("2025-03-04"), "DE"): 2,  # u3 before noon, u1 (twice)
        (day("2025-03-04"), "FR"): 1,  # u3 after noon
        (day("2025-03-04"), "US"): 1,
        (day("2025-03-04"), None): 1,  # u9, never seen
        (day("2025-03-05"), "FR"): 1,
    }


def test_fact_user_activity(facts):
    got = {(r["user_id"], r["date"]): (r["events"], r["sessions"], r["purchases"])
           for r in facts["fact_user_activity"]}
    assert len(facts["fact_user_activity"]) == len(got)
    assert got == {
        ("u3", day("2025-03-04")): (4, 2, 3),  # sessions s1, s2 (a null session is not one)
        ("u3", day("2025-03-05")): (1, 1, 0),
        ("u3", day("2025-02-10")): (0, 0, 1),
        ("u2", day("2025-03-04")): (1, 0, 2),
        ("u9", day("2025-03-04")): (1, 1, 1),
        ("u1", day("2025-03-04")): (2, 1, 0),
    }


def test_user_ltv_is_completed_minus_refunded(facts):
    got = {(r["user_id"], r["currency"]): (r["first_purchase_date"], r["last_purchase_date"], r["orders"],
                                           r["lifetime_revenue"], r["avg_order_value"]) for r in facts["user_ltv"]}
    assert len(facts["user_ltv"]) == len(got)
    assert got == {
        # completed 1 + 10 + 20 + 13.33 = 44.33, refunded 5; 44.33 / 4 = 11.0825
        ("u3", "EUR"): (day("2025-02-10"), day("2025-03-04"), 4, D("39.33"), D("11.08")),
        ("u2", "USD"): (day("2025-03-04"), day("2025-03-04"), 2, D("7.00"), D("5.00")),
        ("u9", "EUR"): (day("2025-03-04"), day("2025-03-04"), 1, D("4.00"), D("4.00")),
        ("u4", "GBP"): (None, None, 0, D("-1.00"), None),
    }


# -- reference dimensions --------------------------------------------------------------------------
def test_dim_date_is_contiguous_with_iso_calendar_fields(spark):
    from pyspark.sql import types as T

    from lake_assets.domains.commerce import gold

    times = spark.createDataFrame([(ts("2025-01-02 23:59:59"),), (ts("2024-12-28 00:00:00"),),
                                   (ts("2024-12-31 12:00:00"),), (ts("2024-12-31 13:00:00"),)],
                                  T.StructType([T.StructField("t", T.TimestampType())]))
    rows = [r.asDict() for r in gold.dim_date(times).orderBy("date").collect()]
    cols = ("date", "year", "quarter", "month", "day", "iso_week", "day_of_week", "is_weekend")
    assert [tuple(r[c] for c in cols) for r in rows] == [
        (day("2024-12-28"), 2024, 4, 12, 28, 52, 6, True),  # Saturday
        (day("2024-12-29"), 2024, 4, 12, 29, 52, 7, True),  # Sunday
        (day("2024-12-30"), 2024, 4, 12, 30, 1, 1, False),  # Monday of ISO week 1 of 2025
        (day("2024-12-31"), 2024, 4, 12, 31, 1, 2, False),
        (day("2025-01-01"), 2025, 1, 1, 1, 1, 3, False),
        (day("2025-01-02"), 2025, 1, 1, 2, 1, 4, False),
    ]


def test_dim_country_comes_from_iso_3166(spark):
    import pycountry

    from lake_assets.domains.commerce import gold

    rows = {r["country"]: (r["name"], r["region"]) for r in gold.dim_country(spark).collect()}
    assert set(rows) == {c.alpha_2 for c in pycountry.countries}
    assert rows["DE"] == ("Germany", "Western Europe")
    assert rows["FR"][0] == "France"
    assert rows["US"][0] == "United States"
    assert all(name for name, _ in rows.values())
    assert sum(region is not None for _, region in rows.values()) > 200


def test_dim_status_lists_every_contract_status(spark):
    from lake_assets.domains.commerce import gold

    rows = gold.dim_status(spark).collect()
    assert {(r["domain"], r["status"]) for r in rows} == {
        *[("user", s) for s in ("active", "suspended", "closed")],
        *[("transaction", s) for s in ("pending", "completed", "failed", "refunded")],
        *[("event_type", s) for s in ("page_view", "product_view", "add_to_cart", "checkout", "purchase", "login",
                                      "logout")],
    }
    assert len(rows) == 14
    assert all(r["description"] for r in rows)
