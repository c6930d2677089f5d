"""Commerce silver (``silver.parse`` / ``silver_rows`` / ``quarantined_rows``) held to
shared/contracts/commerce.md: aliases, null tokens, trimming, casting, every rule, ``_extra``,
deduplication and the silver/quarantine split.

Every case is one record; all cases of a dataset go through Spark in one DataFrame, each
identified by (``source_file``, ``position``), and the results are collected once per module.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal

import pytest

from lake_assets.domains.commerce.spec import EVENTS, TRANSACTIONS, USERS

UTC = dt.timezone.utc
START = dt.date(2024, 1, 1)
INGEST_TS = dt.datetime(2025, 3, 5, 12, 0, tzinfo=UTC)
ROUTED = dt.date(2025, 3, 4)
RUN_ID = "run-0001"
LOADED_AT = dt.datetime(2025, 3, 5, 13, 0, tzinfo=UTC)
SPECS = {"events": EVENTS, "users": USERS, "transactions": TRANSACTIONS}

TS = "2025-03-04T10:00:00Z"
TS_TEXT = "2025-03-04 10:00:00"  # the same instant, as Spark renders a timestamp in UTC
EPOCH_S = 1741082400  # 2025-03-04T10:00:00Z


def base(dataset: str, case: str) -> dict:
    """A valid record whose primary key is unique to the case."""
    if dataset == "events":
        return {"event_id": f"e-{case}", "user_id": "u1", "event_type": "page_view", "ts": TS,
                "session_id": "s1", "product_id": "p1"}
    if dataset == "users":
        return {"user_id": f"u-{case}", "email": "a@example.com", "country": "DE", "status": "active",
                "created_at": "2025-01-01T00:00:00Z", "updated_at": TS}
    return {"transaction_id": f"t-{case}", "user_id": "u1", "amount": "12.50", "currency": "EUR",
            "status": "completed", "created_at": TS}


def changed(dataset: str, case: str, **changes) -> dict:
    """A valid record with fields changed; ``...`` removes a field."""
    rec = base(dataset, case)
    for k, v in changes.items():
        if v is ...:
            rec.pop(k, None)
        else:
            rec[k] = v
    return rec


class Case:
    def __init__(self, dataset, case_id, record, *, ingest_ts=INGEST_TS, source_file=None, position=0):
        self.dataset = dataset
        self.id = case_id
        self.record = record if isinstance(record, str) else json.dumps(record)
        self.ingest_ts = ingest_ts
        self.source_file = source_file or f"raw/{dataset}/{case_id}.json"
        self.position = position

    @property
    def key(self):
        return (self.source_file, self.position)


CASES: dict[str, list[Case]] = {d: [] for d in SPECS}
BY_ID: dict[tuple[str, str], Case] = {}


def add(dataset, case_id, record, **kw) -> Case:
    c = Case(dataset, case_id, record, **kw)
    assert (dataset, case_id) not in BY_ID
    CASES[dataset].append(c)
    BY_ID[(dataset, case_id)] = c
    return c


# -- valid records, one per dataset -----------------------------------------------------
for _d in SPECS:
    add(_d, "valid", base(_d, "valid"))

# -- every alias of every column (read from the specs: a new alias is tested automatically) --
ALIAS_CASES = []
for _d, _spec in SPECS.items():
    for _col in _spec.columns:
        for _alias in _col.aliases:
            _rec = base(_d, f"alias-{_col.name}-{_alias}")
            _rec[_alias] = _rec.pop(_col.name)
            add(_d, f"alias:{_col.name}:{_alias}", _rec)
            ALIAS_CASES.append((_d, _col.name, _alias))

add("events", "both-names", {**base("events", "both"), "eventId": "other"})
add("events", "canonical-null", {**base("events", "cn"), "event_id": "null", "eventId": "e-from-alias"})

# -- null tokens and trimming ------------------------------------------------------------
NULL_TOKENS = ["", "null", "NULL", "N/A", "-", "   ", " null ", "\tN/A ", "  -  "]
for _i, _tok in enumerate(NULL_TOKENS):
    add("events", f"null-optional:{_i}", changed("events", f"nullopt{_i}", session_id=_tok, product_id=_tok))
    add("events", f"null-required:{_i}", changed("events", f"nullreq{_i}", user_id=_tok))
    add("events", f"null-pk:{_i}", changed("events", "x", event_id=_tok))
add("events", "json-null", changed("events", "jsonnull", session_id=None, user_id=None))
add("events", "trim", changed("events", "  trim  ", user_id="  u1  ", event_type=" page_view\t",
                             session_id="  s 1  ", ts=f"  {TS}  ", product_id="\n\tp1\r\n"))

# -- timestamp forms (events.ts) ---------------------------------------------------------
TS_FORMS = {
    "iso-z": (TS, TS_TEXT),
    "iso-offset-plus": ("2025-03-04T12:00:00+02:00", TS_TEXT),
    "iso-offset-minus": ("2025-03-04T05:30:00-04:30", TS_TEXT),
    "iso-fraction": ("2025-03-04T10:00:00.250Z", "2025-03-04 10:00:00.25"),
    "epoch-s-number": (EPOCH_S, TS_TEXT),
    "epoch-s-string": (str(EPOCH_S), TS_TEXT),
    "epoch-s-fraction": (EPOCH_S + 0.5, "2025-03-04 10:00:00.5"),
    "epoch-ms-number": (EPOCH_S * 1000 + 123, "2025-03-04 10:00:00.123"),
    "epoch-ms-string": (str(EPOCH_S * 1000 + 123), "2025-03-04 10:00:00.123"),
}
for _name, (_value, _) in TS_FORMS.items():
    add("events", f"ts:{_name}", changed("events", f"ts-{_name}", ts=_value))

# -- decimal casting (transactions.amount) ------------------------------------------------
AMOUNTS = {
    "string-2dp": ("12.50", Decimal("12.50")),
    "int-number": (3, Decimal("3.00")),
    "float-number": (12.5, Decimal("12.50")),
    "exponent-string": ("1e2", Decimal("100.00")),
    "padded": ("  7.1 ", Decimal("7.10")),
    "zero": ("0", Decimal("0.00")),
}
for _name, (_value, _) in AMOUNTS.items():
    add("transactions", f"amount:{_name}", changed("transactions", f"amount-{_name}", amount=_value))

# -- every rule, one crafted row each (expected reasons written out from the contract) --------
LATE = (INGEST_TS + dt.timedelta(days=1, seconds=1)).isoformat().replace("+00:00", "Z")
RULE_CASES: dict[str, list[tuple[str, dict | str, list[str]]]] = {
    "events": [
        ("malformed_record", "not json at all", ["malformed_record"]),
        ("malformed_record", "[1, 2, 3]", ["malformed_record"]),
        ("malformed_record", '{"event_id": "e1"} {"event_id": "e2"}', ["malformed_record"]),
        ("missing_primary_key", {"event_id": ...}, ["missing_primary_key"]),
        ("missing_value:user_id", {"user_id": ...}, ["missing_value:user_id"]),
        ("missing_value:event_type", {"event_type": "N/A"}, ["missing_value:event_type"]),
        ("missing_value:ts", {"ts": ...}, ["missing_value:ts"]),
        ("invalid_type:ts", {"ts": "yesterday"}, ["invalid_type:ts"]),
        ("invalid_type:ts", {"ts": "2025-03-04 10:00:00"}, ["invalid_type:ts"]),  # no zone
        ("impossible_timestamp", {"ts": LATE}, ["impossible_timestamp"]),
        # Impossible is reported as such only, not also as before the lake's start.
        ("impossible_timestamp", {"ts": "1999-12-31T23:59:59Z"}, ["impossible_timestamp"]),
        ("before_lake_start", {"ts": "2023-12-31T23:59:59Z"}, ["before_lake_start"]),
        ("invalid_value:event_type", {"event_type": "click"}, ["invalid_value:event_type"]),
        ("invalid_value:event_type", {"event_type": "Page_View"}, ["invalid_value:event_type"]),
    ],
    "users": [
        ("malformed_record", '{"user_id": "u1",}', ["malformed_record"]),
        ("missing_primary_key", {"user_id": ...}, ["missing_primary_key"]),
        ("missing_primary_key", {"updated_at": "null"}, ["missing_primary_key"]),
        ("missing_value:email", {"email": ...}, ["missing_value:email"]),
        ("missing_value:country", {"country": ""}, ["missing_value:country"]),
        ("missing_value:status", {"status": ...}, ["missing_value:status"]),
        ("missing_value:created_at", {"created_at": ...}, ["missing_value:created_at"]),
        ("invalid_type:created_at", {"created_at": "01/01/2025"}, ["invalid_type:created_at"]),
        ("invalid_type:updated_at", {"updated_at": "soon"}, ["invalid_type:updated_at"]),
        ("impossible_timestamp", {"created_at": "1970-01-01T00:00:00Z"}, ["impossible_timestamp"]),
        ("before_lake_start", {"updated_at": "2023-06-01T00:00:00Z"}, ["before_lake_start"]),
        ("invalid_value:email", {"email": "no-at-sign"}, ["invalid_value:email"]),
        ("invalid_value:country", {"country": "XX"}, ["invalid_value:country"]),
        ("invalid_value:country", {"country": "de"}, ["invalid_value:country"]),
        ("invalid_value:status", {"status": "deleted"}, ["invalid_value:status"]),
    ],
    "transactions": [
        ("malformed_record", '"just a string"', ["malformed_record"]),
        ("missing_primary_key", {"transaction_id": "-"}, ["missing_primary_key"]),
        ("missing_value:user_id", {"user_id": ...}, ["missing_value:user_id"]),
        ("missing_value:amount", {"amount": ...}, ["missing_value:amount"]),
        ("missing_value:currency", {"currency": "NULL"}, ["missing_value:currency"]),
        ("missing_value:status", {"status": ...}, ["missing_value:status"]),
        ("missing_value:created_at", {"created_at": ...}, ["missing_value:created_at"]),
        ("invalid_type:amount", {"amount": "12,50"}, ["invalid_type:amount"]),
        ("invalid_type:amount", {"amount": "abc"}, ["invalid_type:amount"]),
        ("invalid_type:created_at", {"created_at": "tomorrow"}, ["invalid_type:created_at"]),
        ("impossible_timestamp", {"created_at": LATE}, ["impossible_timestamp"]),
        ("before_lake_start", {"created_at": "2023-01-01T00:00:00Z"}, ["before_lake_start"]),
        ("invalid_value:amount", {"amount": "-0.01"}, ["invalid_value:amount"]),
        ("invalid_value:currency", {"currency": "QQQ"}, ["invalid_value:currency"]),
        ("invalid_value:status", {"status": "paid"}, ["invalid_value:status"]),
    ],
}
RULE_PARAMS = []
for _d, _cases in RULE_CASES.items():
    for _i, (_rule, _rec, _expected) in enumerate(_cases):
        record = _rec if isinstance(_rec, str) else changed(_d, f"rule{_i}", **_rec)
        add(_d, f"rule:{_i}:{_rule}", record)
        RULE_PARAMS.append((_d, f"rule:{_i}:{_rule}", _rule, _expected))

# A row breaking several rules lists them all, in the contract's order.
MULTI = {
    "events": (changed("events", "m", event_id=..., user_id="", event_type="click", ts="garbage", extra=1),
               ["missing_primary_key", "missing_value:user_id", "invalid_type:ts", "invalid_value:event_type"]),
    "users": (changed("users", "m", email="nobody", country="ZZ", status="gone", created_at="1999-01-01T00:00:00Z"),
              ["impossible_timestamp", "invalid_value:email", "invalid_value:country", "invalid_value:status"]),
    "transactions": (changed("transactions", "m", amount="-5", currency="QQQ", status="paid",
                             created_at="1999-06-01T00:00:00Z"),
                     ["impossible_timestamp", "invalid_value:amount",
                      "invalid_value:currency", "invalid_value:status"]),
}
for _d, (_rec, _) in MULTI.items():
    add(_d, "multi", _rec)

# -- _extra --------------------------------------------------------------------------------
EXTRA = {"campaign": "spring", "score": 7, "nested": {"a": [1, 2]}}
for _d in SPECS:
    add(_d, "extra", {**base(_d, "extra"), **EXTRA})

# -- deduplication -------------------------------------------------------------------------
T0 = INGEST_TS - dt.timedelta(hours=2)
T1 = INGEST_TS - dt.timedelta(hours=1)
# events: the earliest ts wins, whatever the delivery order; ties by earliest ingest_ts, source_file, position.
_ev = lambda eid, ts, sid: changed("events", "", event_id=eid, ts=ts, session_id=sid)  # noqa: E731
add("events", "dupA:late-ts-first-delivered", _ev("dupA", "2025-03-04T10:05:00Z", "first"), ingest_ts=T0)
add("events", "dupA:early-ts-later-delivered", _ev("dupA", "2025-03-04T10:00:00Z", "second"), ingest_ts=T1)
add("events", "dupB:later-ingest", _ev("dupB", TS, "later"), ingest_ts=T1)
add("events", "dupB:earlier-ingest", _ev("dupB", TS, "earlier"), ingest_ts=T0)
add("events", "dupC:file-b", _ev("dupC", TS, "b"), source_file="raw/events/dupC-b.json")
add("events", "dupC:file-a", _ev("dupC", TS, "a"), source_file="raw/events/dupC-a.json")
add("events", "dupD:pos-3", _ev("dupD", TS, "p3"), source_file="raw/events/dupD.json", position=3)
add("events", "dupD:pos-1", _ev("dupD", TS, "p1"), source_file="raw/events/dupD.json", position=1)
# an invalid row with the same key does not make the valid one a duplicate
add("events", "dupE:valid", _ev("dupE", "2025-03-04T11:00:00Z", "v"), ingest_ts=T1)
add("events", "dupE:invalid", changed("events", "", event_id="dupE", ts=TS, event_type="click"), ingest_ts=T0)

# transactions: the latest delivery wins (created_at plays no part).
_tx = lambda tid, status, created=TS: changed("transactions", "", transaction_id=tid, status=status,  # noqa: E731
                                              created_at=created)
add("transactions", "dupA:first", _tx("dupA", "pending", "2025-03-04T09:00:00Z"), ingest_ts=T0)
add("transactions", "dupA:latest", _tx("dupA", "completed", "2025-03-04T11:00:00Z"), ingest_ts=T1)
add("transactions", "dupB:file-b", _tx("dupB", "refunded"), source_file="raw/transactions/dupB-b.csv")
add("transactions", "dupB:file-a", _tx("dupB", "failed"), source_file="raw/transactions/dupB-a.csv")
add("transactions", "dupC:pos-2", _tx("dupC", "completed"), source_file="raw/transactions/dupC.csv", position=2)
add("transactions", "dupC:pos-5", _tx("dupC", "failed"), source_file="raw/transactions/dupC.csv", position=5)
add("transactions", "dupD:valid", _tx("dupD", "completed"), ingest_ts=T0)
add("transactions", "dupD:invalid-later", changed("transactions", "", transaction_id="dupD", currency="QQQ"),
    ingest_ts=T1)

# users: per (user_id, updated_at) the latest delivery wins; other versions are kept.
_us = lambda uid, updated, email: changed("users", "", user_id=uid, updated_at=updated, email=email)  # noqa: E731
add("users", "dupA:first", _us("dupA", TS, "old@x.com"), ingest_ts=T0)
add("users", "dupA:latest", _us("dupA", TS, "new@x.com"), ingest_ts=T1)
add("users", "dupA:other-version", _us("dupA", "2025-03-04T11:00:00Z", "v2@x.com"), ingest_ts=T0)
add("users", "dupA:same-instant-other-form", _us("dupA", "2025-03-04T12:00:00+02:00", "mid@x.com"), ingest_ts=T0,
    source_file="raw/users/dupA-offset.json")
add("users", "dupB:pos-0", _us("dupB", TS, "p0@x.com"), source_file="raw/users/dupB.json", position=0)
add("users", "dupB:pos-4", _us("dupB", TS, "p4@x.com"), source_file="raw/users/dupB.json", position=4)

DEDUP_EXPECTED = {  # (dataset, winner case) -> losers
    ("events", "dupA:early-ts-later-delivered"): ["dupA:late-ts-first-delivered"],
    ("events", "dupB:earlier-ingest"): ["dupB:later-ingest"],
    ("events", "dupC:file-a"): ["dupC:file-b"],
    ("events", "dupD:pos-1"): ["dupD:pos-3"],
    ("events", "dupE:valid"): [],
    ("transactions", "dupA:latest"): ["dupA:first"],
    ("transactions", "dupB:file-b"): ["dupB:file-a"],
    ("transactions", "dupC:pos-5"): ["dupC:pos-2"],
    ("transactions", "dupD:valid"): [],
    ("users", "dupA:latest"): ["dupA:first", "dupA:same-instant-other-form"],
    ("users", "dupA:other-version"): [],
    ("users", "dupB:pos-4"): ["dupB:pos-0"],
}


# -- Spark: one DataFrame per dataset, collected once ---------------------------------------
def _input(spark, cases: list[Case]):
    from lake_assets.ingest.validated import NUMBERED_INPUT_SCHEMA

    rows = [(c.record, ROUTED, c.dataset, c.source_file, RUN_ID, c.ingest_ts, c.position) for c in cases]
    return spark.createDataFrame(rows, NUMBERED_INPUT_SCHEMA)


def _as_json(df, tag: str):
    """Rows as JSON text tagged with their output, timestamps as UTC text (whatever the Python zone)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    cols = [F.col(f.name).cast("string").alias(f.name) if isinstance(f.dataType, T.TimestampType) else F.col(f.name)
            for f in df.schema.fields]
    return df.select(F.lit(tag).alias("tag"), F.to_json(F.struct(*cols)).alias("json"))


@pytest.fixture(scope="module")
def results(spark):
    """Per dataset: parsed rows by case, silver rows, quarantined rows (one Spark action each), schemas."""
    from lake_assets.domains.commerce import silver

    out = {}
    for name, spec in SPECS.items():
        cases = CASES[name]
        parsed = silver.parse(_input(spark, cases), spec, START).cache()  # parsed once, read three times
        good = silver.silver_rows(parsed, spec, LOADED_AT)
        bad = silver.quarantined_rows(parsed, LOADED_AT)
        rows = _as_json(parsed, "parsed").unionByName(_as_json(good, "silver")).unionByName(_as_json(bad, "quarantine"))
        got = {"parsed": [], "silver": [], "quarantine": []}
        for r in rows.collect():
            got[r["tag"]].append(json.loads(r["json"], parse_float=Decimal))
        for group in got.values():  # to_json leaves nulls out
            for d in group:
                for f in (good.schema if group is got["silver"] else bad.schema if group is got["quarantine"]
                          else parsed.schema).names:
                    d.setdefault(f, None)
        by_key = {(r["source_file"], r["position"]): r for r in got["parsed"]}
        assert len(by_key) == len(cases)
        out[name] = {
            "parsed": {c.id: by_key[c.key] for c in cases},
            "silver": got["silver"],
            "quarantine": got["quarantine"],
            "silver_schema": good.schema,
            "quarantine_schema": bad.schema,
        }
        parsed.unpersist()
    return out


def row(results, dataset, case_id):
    return results[dataset]["parsed"][case_id]


# -- tests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", list(SPECS))
def test_valid_record_is_typed_and_breaks_no_rule(results, dataset):
    r = row(results, dataset, "valid")
    assert r["reasons"] == []
    assert r["_extra"] is None
    expected = {
        "events": {"event_id": "e-valid", "user_id": "u1", "event_type": "page_view", "ts": TS_TEXT,
                   "session_id": "s1", "product_id": "p1"},
        "users": {"user_id": "u-valid", "email": "a@example.com", "country": "DE", "status": "active",
                  "created_at": "2025-01-01 00:00:00", "updated_at": TS_TEXT},
        "transactions": {"transaction_id": "t-valid", "user_id": "u1", "amount": Decimal("12.50"),
                         "currency": "EUR", "status": "completed", "created_at": TS_TEXT},
    }[dataset]
    assert {k: r[k] for k in expected} == expected


def test_every_alias_is_covered():
    """The parametrized alias cases come from the specs; the contract's aliases are among them."""
    contract = {("events", "event_id", "eventId"), ("events", "user_id", "userId"), ("events", "event_type", "type"),
                ("events", "ts", "timestamp"), ("events", "ts", "event_time"), ("users", "user_id", "userId"),
                ("users", "country", "country_code"), ("users", "updated_at", "modified_at"),
                ("transactions", "transaction_id", "txn_id"), ("transactions", "user_id", "userId"),
                ("transactions", "amount", "total"), ("transactions", "created_at", "created")}
    assert contract <= set(ALIAS_CASES)


@pytest.mark.parametrize("dataset,column,alias", ALIAS_CASES, ids=[f"{d}.{c}<-{a}" for d, c, a in ALIAS_CASES])
def test_alias_maps_to_its_canonical_column(results, dataset, column, alias):
    r = row(results, dataset, f"alias:{column}:{alias}")
    original = base(dataset, f"alias-{column}-{alias}")[column]
    expected = {TS: TS_TEXT, "12.50": Decimal("12.50")}.get(original, original)
    assert r[column] == expected
    assert r["reasons"] == []
    assert r["_extra"] is None  # an alias is a known name, not an extra column


def test_canonical_name_wins_over_alias_when_both_present(results):
    r = row(results, "events", "both-names")
    assert (r["event_id"], r["reasons"], r["_extra"]) == ("e-both", [], None)


def test_alias_used_when_canonical_is_a_null_token(results):
    r = row(results, "events", "canonical-null")
    assert (r["event_id"], r["reasons"]) == ("e-from-alias", [])


@pytest.mark.parametrize("i", range(len(NULL_TOKENS)), ids=[repr(t) for t in NULL_TOKENS])
def test_null_tokens_become_null(results, i):
    opt = row(results, "events", f"null-optional:{i}")
    assert (opt["session_id"], opt["product_id"], opt["reasons"]) == (None, None, [])
    req = row(results, "events", f"null-required:{i}")
    assert req["user_id"] is None
    assert req["reasons"] == ["missing_value:user_id"]
    pk = row(results, "events", f"null-pk:{i}")
    assert pk["reasons"] == ["missing_primary_key"]


def test_json_null_is_null(results):
    r = row(results, "events", "json-null")
    assert (r["session_id"], r["user_id"], r["reasons"]) == (None, None, ["missing_value:user_id"])


def test_strings_are_trimmed(results):
    r = row(results, "events", "trim")
    assert (r["event_id"], r["user_id"], r["event_type"], r["session_id"], r["ts"], r["product_id"]) == \
        ("e-  trim", "u1", "page_view", "s 1", TS_TEXT, "p1")
    assert r["reasons"] == []


@pytest.mark.parametrize("form", list(TS_FORMS))
def test_timestamp_forms(results, form):
    r = row(results, "events", f"ts:{form}")
    assert r["ts"] == TS_FORMS[form][1]
    assert r["reasons"] == []


@pytest.mark.parametrize("form", list(AMOUNTS))
def test_amount_is_cast_to_decimal(results, form):
    r = row(results, "transactions", f"amount:{form}")
    assert r["amount"] == AMOUNTS[form][1]
    assert r["reasons"] == []


def test_every_rule_has_a_crafted_case():
    for name, spec in SPECS.items():
        crafted = {rule for rule, _, _ in RULE_CASES[name]} | {"duplicate"}
        assert set(spec.rule_names) == crafted, name


@pytest.mark.parametrize("dataset,case_id,rule,expected", RULE_PARAMS, ids=[f"{d}:{c}" for d, c, _, _ in RULE_PARAMS])
def test_rule_fires_on_its_crafted_row(results, dataset, case_id, rule, expected):
    r = row(results, dataset, case_id)
    assert r["reasons"] == expected
    assert r["reasons"][0] == rule
    q = [q for q in results[dataset]["quarantine"] if q["source_file"] == BY_ID[(dataset, case_id)].source_file]
    assert len(q) == 1
    assert (q[0]["reason"], q[0]["reasons"]) == (rule, expected)
    assert q[0]["record"] == BY_ID[(dataset, case_id)].record


@pytest.mark.parametrize("dataset", list(SPECS))
def test_rule_order_matches_the_contract(dataset):
    spec = SPECS[dataset]
    names = spec.rule_names
    groups = ["malformed_record", "missing_primary_key", "missing_value:", "invalid_type:", "impossible_timestamp",
              "before_lake_start", "invalid_value:", "duplicate"]
    ranks = [next(i for i, g in enumerate(groups) if n == g or (g.endswith(":") and n.startswith(g))) for n in names]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize("dataset", list(SPECS))
def test_row_breaking_several_rules_lists_them_all_in_order(results, dataset):
    r = row(results, dataset, "multi")
    expected = MULTI[dataset][1]
    assert r["reasons"] == expected
    names = SPECS[dataset].rule_names
    assert [names.index(x) for x in expected] == sorted(names.index(x) for x in expected)
    q = [q for q in results[dataset]["quarantine"] if q["source_file"] == BY_ID[(dataset, "multi")].source_file]
    assert q[0]["reason"] == expected[0]


@pytest.mark.parametrize("dataset", list(SPECS))
def test_unknown_columns_go_to_extra_as_json(results, dataset):
    r = row(results, dataset, "extra")
    assert r["reasons"] == []
    assert json.loads(r["_extra"]) == EXTRA
    silver = [s for s in results[dataset]["silver"] if s["_source_file"] == BY_ID[(dataset, "extra")].source_file]
    assert json.loads(silver[0]["_extra"]) == EXTRA


@pytest.mark.parametrize("dataset,winner", list(DEDUP_EXPECTED), ids=[f"{d}:{w}" for d, w in DEDUP_EXPECTED])
def test_deduplication(results, dataset, winner):
    assert row(results, dataset, winner)["reasons"] == []
    for loser in DEDUP_EXPECTED[(dataset, winner)]:
        assert row(results, dataset, loser)["reasons"] == ["duplicate"], loser


def test_deduplicated_values_are_the_winners(results):
    def silver_by(dataset, **key):
        return [s for s in results[dataset]["silver"] if all(s[k] == v for k, v in key.items())]

    assert [s["session_id"] for s in silver_by("events", event_id="dupA")] == ["second"]
    assert [s["ts"] for s in silver_by("events", event_id="dupA")] == ["2025-03-04 10:00:00"]
    assert [s["session_id"] for s in silver_by("events", event_id="dupB")] == ["earlier"]
    assert [s["session_id"] for s in silver_by("events", event_id="dupC")] == ["a"]
    assert [s["session_id"] for s in silver_by("events", event_id="dupD")] == ["p1"]
    assert [s["ts"] for s in silver_by("events", event_id="dupE")] == ["2025-03-04 11:00:00"]
    assert [(s["status"], s["created_at"]) for s in silver_by("transactions", transaction_id="dupA")] == \
        [("completed", "2025-03-04 11:00:00")]
    assert [s["status"] for s in silver_by("transactions", transaction_id="dupB")] == ["refunded"]
    assert [s["status"] for s in silver_by("transactions", transaction_id="dupC")] == ["failed"]
    assert [s["currency"] for s in silver_by("transactions", transaction_id="dupD")] == ["EUR"]
    assert sorted((s["updated_at"], s["email"]) for s in silver_by("users", user_id="dupA")) == \
        [("2025-03-04 10:00:00", "new@x.com"), ("2025-03-04 11:00:00", "v2@x.com")]
    assert [s["email"] for s in silver_by("users", user_id="dupB")] == ["p4@x.com"]


@pytest.mark.parametrize("dataset", list(SPECS))
def test_silver_keys_are_unique(results, dataset):
    pk = SPECS[dataset].primary_key
    keys = [tuple(s[k] for k in pk) for s in results[dataset]["silver"]]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("dataset", list(SPECS))
def test_every_row_lands_in_exactly_one_of_silver_and_quarantine(results, dataset):
    res = results[dataset]
    cases = CASES[dataset]
    assert len(res["silver"]) + len(res["quarantine"]) == len(cases)
    valid = Counter(c.source_file for c in cases if row(results, dataset, c.id)["reasons"] == [])
    invalid = Counter(c.source_file for c in cases if row(results, dataset, c.id)["reasons"] != [])
    assert Counter(s["_source_file"] for s in res["silver"]) == valid
    assert Counter(q["source_file"] for q in res["quarantine"]) == invalid
    # Records of the quarantine are exactly the invalid inputs' original text.
    assert Counter(q["record"] for q in res["quarantine"]) == \
        Counter(c.record for c in cases if row(results, dataset, c.id)["reasons"] != [])


@pytest.mark.parametrize("dataset", list(SPECS))
def test_output_shapes(results, dataset):
    spec = SPECS[dataset]
    res = results[dataset]
    assert res["silver_schema"].names == [*spec.column_names, "_extra", "_source_file", "_ingest_run_id",
                                          "_loaded_at", "_event_date"]
    assert {"record", "reason", "reasons", "source_file", "ingest_run_id"} <= set(res["quarantine_schema"].names)
    for s in res["silver"]:
        assert (s["_ingest_run_id"], s["_loaded_at"], s["_event_date"]) == (RUN_ID, "2025-03-05 13:00:00", ROUTED.isoformat())
    for q in res["quarantine"]:
        assert q["reason"] == q["reasons"][0]
        assert q["ingest_run_id"] == RUN_ID
        assert q["stage"] == "silver"
        assert q["_partition_date"] == ROUTED.isoformat()
