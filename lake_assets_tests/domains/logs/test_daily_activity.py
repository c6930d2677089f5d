"""Holds contract.daily_activity to the contract's gold table, against values computed
here in plain Python (never by the code under test).

One seeded data set of processed access and error rows is delivered twice with
different duplication and splitting over files/formats/runs ("a" and "b"); both
runs go through Spark in one union and are collected once for the module.
"""
from __future__ import annotations

import datetime as dt
import math
import random
from collections import defaultdict

import pytest

from lake_assets.domains.logs import contract

UTC = dt.timezone.utc
D1, D2, D3 = dt.date(2025, 3, 4), dt.date(2025, 3, 5), dt.date(2025, 3, 6)
ACCESS_COLUMNS = [f.name for f in contract.ACCESS_SCHEMA.fields]
ERROR_COLUMNS = [f.name for f in contract.ERROR_SCHEMA.fields]
ERROR_IDENTITY = ("event_ts", "event_date", "service", "host", "level", "code", "message", "request_id")
COUNT_COLUMNS = ("requests", "client_errors", "server_errors", "unique_users", "unique_clients", "bytes_sent",
                 "error_events", "critical_events")
STATUSES = [200] * 8 + [201, 204, 301, 304, 100, 399, 400, 401, 404, 404, 429, 499, 500, 502, 503, 599]


def _ts(rng: random.Random, day: dt.date) -> dt.datetime:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + dt.timedelta(seconds=rng.randrange(86400), microseconds=rng.randrange(1_000_000))


def _request(rng, day, service, request_id, *, latency=True, users=60, clients=40):
    return {
        "event_ts": _ts(rng, day), "event_date": day, "service": service,
        "host": rng.choice(["h1", "h2", None]), "request_id": request_id,
        "client_ip": rng.choice([None] * 3 + [f"10.0.{k // 8}.{k}" for k in range(clients)]),
        "user_id": rng.choice([None] * 5 + [f"user-{k}" for k in range(users)]),
        "method": rng.choice(["GET", "POST", "PUT"]), "path": f"/p/{rng.randrange(5)}",
        "status": rng.choice(STATUSES),
        "bytes_sent": None if rng.random() < 0.1 else rng.randrange(0, 50_000),
        "latency_ms": (None if rng.random() < 0.05 else round(rng.uniform(5.0, 2000.0), 3)) if latency else None,
        "user_agent": "ua", "attributes": None,
    }


def _error(rng, day, service, level=None, **kw):
    e = {"event_ts": _ts(rng, day), "event_date": day, "service": service, "host": rng.choice(["db-1", None]),
         "level": level or rng.choice(["WARN", "ERROR", "ERROR", "CRITICAL"]), "code": rng.choice(["E1", "E2", None]),
         "message": rng.choice(["timeout", "refused", ""]), "request_id": rng.choice([None, "req-x"])}
    e.update(kw)
    return e


def build_unique():
    """Distinct access requests and distinct error records (before any re-delivery)."""
    rng = random.Random(20250304)
    access = [_request(rng, D1, "api", f"api-{i}") for i in range(360)]          # a few hundred latencies
    access += [_request(rng, D1, "web", f"web-{i}", users=5, clients=3) for i in range(40)]
    access += [_request(rng, D2, "web", f"web-{i}", users=5, clients=3) for i in range(30)]  # ids reused on D2
    access.append(_request(rng, D1, "web", "api-0", users=5, clients=3))  # an id reused by another service
    access += [_request(rng, D2, "static", f"st-{i}", latency=False) for i in range(3)]  # no latencies at all
    errors = [_error(rng, D1, "api") for _ in range(25)]
    errors += [_error(rng, D1, "db") for _ in range(9)] + [_error(rng, D1, "db", level="CRITICAL")]
    errors += [_error(rng, D3, "api", level="CRITICAL"), _error(rng, D3, "api", level="WARN")]
    twin = _error(rng, D2, "web", level="ERROR", message="disk full")
    errors += [twin, {**twin, "message": "disk nearly full"},                  # differ in message only
               {**twin, "event_ts": twin["event_ts"] + dt.timedelta(microseconds=1)}]  # or in time only
    return access, errors


def deliver_a(access, errors):
    """Run a: everything once from one file; slow or heavy requests re-delivered twice more."""
    rows = [{**r, "source_format": "ndjson", "source_file": "a-1.ndjson", "ingest_run_id": "run-a"} for r in access]
    for r in access:
        if (r["latency_ms"] or 0) > 1500 or (r["bytes_sent"] or 0) > 40_000:
            rows += [{**r, "source_format": "json_gzip", "source_file": f"a-dup-{k}.json.gz",
                      "ingest_run_id": f"run-a{k}"} for k in (2, 3)]
    errs = [{**e, "source_file": "a-errors.xml", "ingest_run_id": "run-a"} for e in errors]
    errs += [{**e, "source_file": "a-errors-again.xml", "ingest_run_id": "run-a2"} for e in errors[:8]]
    return rows, errs


def deliver_b(access, errors):
    """Run b: split over many files and formats, everything at least twice, others more, shuffled."""
    rng = random.Random(7)
    rows = []
    for i, r in enumerate(access):
        copies = 2 + (i % 3 == 0) + 2 * ((r["latency_ms"] or 0) < 100)
        for k in range(copies):
            fmt = ("ndjson", "json_gzip")[(i + k) % 2]
            rows.append({**r, "source_format": fmt, "source_file": f"b-{(i + k) % 7}.{fmt}",
                         "ingest_run_id": f"run-b{k}"})
    errs = [{**e, "source_file": f"b-errors-{k}.xml", "ingest_run_id": f"run-b{k}"}
            for e in errors for k in range(3)]
    rng.shuffle(rows)
    rng.shuffle(errs)
    return rows, errs


# ---------------------------------------------------------------------------- the independent oracle
def exact_percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    s = sorted(values)
    pos = p * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def oracle(access_rows, error_rows) -> dict[tuple[dt.date, str], dict]:
    per_request: dict[tuple, dict] = defaultdict(dict)
    users, clients = defaultdict(set), defaultdict(set)
    for r in access_rows:
        key = (r["event_date"], r["service"])
        per_request[key].setdefault(r["request_id"], r)
        if r["user_id"] is not None:
            users[key].add(r["user_id"])
        if r["client_ip"] is not None:
            clients[key].add(r["client_ip"])
    distinct_errors = defaultdict(set)
    for e in error_rows:
        distinct_errors[(e["event_date"], e["service"])].add(tuple(e[c] for c in ERROR_IDENTITY))
    out = {}
    for key in set(per_request) | set(distinct_errors):
        reqs = list(per_request.get(key, {}).values())
        latencies = [r["latency_ms"] for r in reqs if r["latency_ms"] is not None]
        errs = distinct_errors.get(key, set())
        out[key] = {
            "requests": len(reqs),
            "client_errors": sum(400 <= r["status"] <= 499 for r in reqs),
            "server_errors": sum(500 <= r["status"] <= 599 for r in reqs),
            "unique_users": len(users.get(key, ())),
            "unique_clients": len(clients.get(key, ())),
            "bytes_sent": sum(r["bytes_sent"] or 0 for r in reqs),
            "p50_latency_ms": exact_percentile(latencies, 0.5),
            "p95_latency_ms": exact_percentile(latencies, 0.95),
            "error_events": len(errs),
            "critical_events": sum(e[ERROR_IDENTITY.index("level")] == "CRITICAL" for e in errs),
        }
    return out


# ---------------------------------------------------------------------------- fixtures
UNIQUE_ACCESS, UNIQUE_ERRORS = build_unique()
RUN_A = deliver_a(UNIQUE_ACCESS, UNIQUE_ERRORS)
RUN_B = deliver_b(UNIQUE_ACCESS, UNIQUE_ERRORS)


def _frames(spark, run):
    access_rows, error_rows = run
    access = spark.createDataFrame([tuple(r[c] for c in ACCESS_COLUMNS) for r in access_rows], contract.ACCESS_SCHEMA)
    errors = spark.createDataFrame([tuple(e[c] for c in ERROR_COLUMNS) for e in error_rows], contract.ERROR_SCHEMA)
    return access, errors


@pytest.fixture(scope="module")
def activity(spark):
    """{"a": {(date, service): row}, "b": ..., "schema": ...}: both runs in one Spark action."""
    from pyspark.sql import functions as F

    frames = {}
    for name, run in (("a", RUN_A), ("b", RUN_B)):
        frames[name] = contract.daily_activity(*_frames(spark, run))
    schema = frames["a"].schema
    union = frames["a"].withColumn("_run", F.lit("a")).unionByName(frames["b"].withColumn("_run", F.lit("b")))
    out: dict = {"a": {}, "b": {}, "schema": schema, "rows": {"a": 0, "b": 0}}
    for r in union.collect():
        d = r.asDict()
        run = d.pop("_run")
        out[run][(d["date"], d["service"])] = d
        out["rows"][run] += 1
    return out


@pytest.fixture(scope="module")
def expected():
    exp = oracle(*RUN_A)
    assert exp == oracle(*RUN_B), "the two deliveries must describe the same data"
    return exp


# ---------------------------------------------------------------------------- tests
def test_schema(activity):
    assert [(f.name, f.dataType) for f in activity["schema"].fields] == \
        [(f.name, f.dataType) for f in contract.DAILY_ACTIVITY_SCHEMA.fields]


def test_one_row_per_date_and_service(activity, expected):
    for run in ("a", "b"):
        assert activity["rows"][run] == len(activity[run]), f"run {run}: duplicate (date, service) rows"
        assert set(activity[run]) == set(expected)
    assert set(expected) == {(D1, "api"), (D1, "web"), (D2, "web"), (D2, "static"), (D1, "db"), (D3, "api")}


def test_test_data_is_sensitive_to_duplicates(expected):
    """Guards the data set: counting re-deliveries would change requests, bytes and p95 here."""
    naive = [r for r in RUN_A[0] if (r["event_date"], r["service"]) == (D1, "api")]
    distinct = expected[(D1, "api")]
    assert len(naive) > distinct["requests"]
    assert sum(r["bytes_sent"] or 0 for r in naive) > distinct["bytes_sent"]
    naive_p95 = exact_percentile([r["latency_ms"] for r in naive if r["latency_ms"] is not None], 0.95)
    assert abs(naive_p95 - distinct["p95_latency_ms"]) > 0.02 * distinct["p95_latency_ms"]
    assert len(RUN_A[1]) > sum(e["error_events"] for e in expected.values())


@pytest.mark.parametrize("run", ["a", "b"])
def test_request_counts_over_distinct_requests(activity, expected, run):
    for key, exp in expected.items():
        got = activity[run][key]
        assert {c: got[c] for c in ("requests", "client_errors", "server_errors", "bytes_sent")} == \
            {c: exp[c] for c in ("requests", "client_errors", "server_errors", "bytes_sent")}, key
    api = activity[run][(D1, "api")]
    assert api["requests"] == 360 and api["client_errors"] > 0 and api["server_errors"] > 0


@pytest.mark.parametrize("run", ["a", "b"])
def test_unique_users_and_clients_ignore_nulls(activity, expected, run):
    for key, exp in expected.items():
        got = activity[run][key]
        assert (got["unique_users"], got["unique_clients"]) == (exp["unique_users"], exp["unique_clients"]), key
    # web on D1 draws users from 5 ids and clients from 3 ips, with nulls in between.
    assert activity[run][(D1, "web")]["unique_users"] <= 5
    assert activity[run][(D1, "web")]["unique_clients"] <= 3


def _distinct_latencies(key) -> list[float]:
    seen = {}
    for r in UNIQUE_ACCESS:
        if (r["event_date"], r["service"]) == key:
            seen.setdefault(r["request_id"], r)
    return sorted(r["latency_ms"] for r in seen.values() if r["latency_ms"] is not None)


@pytest.mark.parametrize("run", ["a", "b"])
def test_latency_percentiles_within_one_percent(activity, expected, run):
    """On a few hundred distinct latencies, p50 and p95 are within 1 % of the exact percentiles."""
    key = (D1, "api")
    assert len(_distinct_latencies(key)) >= 300
    got = activity[run][key]
    for col in ("p50_latency_ms", "p95_latency_ms"):
        exp = expected[key][col]
        assert got[col] is not None and abs(got[col] - exp) <= 0.01 * exp, (col, got[col], exp)


@pytest.mark.parametrize("run", ["a", "b"])
def test_latency_percentiles_of_small_groups_are_near_rank(activity, expected, run):
    """With few values "within 1 %" depends on the percentile's definition: the answer must be a
    latency of the group within one rank of the exact percentile's neighbours; no latencies -> null."""
    for key, exp in expected.items():
        values = _distinct_latencies(key)
        got = activity[run][key]
        for col, p in (("p50_latency_ms", 0.5), ("p95_latency_ms", 0.95)):
            if not values:
                assert exp[col] is None and got[col] is None, (key, col)
                continue
            pos = p * (len(values) - 1)
            allowed = values[max(0, math.floor(pos) - 1): math.ceil(pos) + 2]
            assert got[col] in allowed, (key, col, got[col], allowed)
    assert expected[(D2, "static")]["p50_latency_ms"] is None


@pytest.mark.parametrize("run", ["a", "b"])
def test_error_and_critical_events_count_identical_records_once(activity, expected, run):
    for key, exp in expected.items():
        got = activity[run][key]
        assert (got["error_events"], got["critical_events"]) == (exp["error_events"], exp["critical_events"]), key
    # Three records that differ only in message or time are three events.
    assert activity[run][(D2, "web")]["error_events"] == 3
    assert activity[run][(D1, "db")]["critical_events"] >= 1


@pytest.mark.parametrize("run", ["a", "b"])
def test_service_with_errors_only_gets_zero_access_row(activity, run):
    for key in ((D1, "db"), (D3, "api")):
        got = activity[run][key]
        assert {c: got[c] for c in COUNT_COLUMNS[:6]} == dict.fromkeys(COUNT_COLUMNS[:6], 0), key
        assert got["p50_latency_ms"] is None and got["p95_latency_ms"] is None
        assert got["error_events"] > 0
    assert activity[run][(D3, "api")]["error_events"] == 2
    assert activity[run][(D3, "api")]["critical_events"] == 1
    # and a service with access rows but no errors has zero error counts
    assert activity[run][(D2, "static")]["error_events"] == 0


def test_same_output_however_records_were_split_or_duplicated(activity):
    a, b = activity["a"], activity["b"]
    assert set(a) == set(b)
    for key in a:
        assert {c: a[key][c] for c in COUNT_COLUMNS} == {c: b[key][c] for c in COUNT_COLUMNS}, key
        for col in ("p50_latency_ms", "p95_latency_ms"):
            assert a[key][col] == pytest.approx(b[key][col], rel=1e-9) if a[key][col] is not None \
                else b[key][col] is None, (key, col)
