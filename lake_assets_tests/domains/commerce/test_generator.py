"""Holds the synthetic commerce generator to the contract it feeds (shared/contracts/commerce.md).

Pipeline tests trust the generator's counts and truth, so these tests re-read every
file it writes with plain Python (json, csv, gzip, pyarrow), apply an independent
reading of the contract's rules and deduplication, and compare the outcome with
what the generator says: counts, reasons, undated rows and the expected silver rows.
"""
from __future__ import annotations

import collections
import csv
import datetime as dt
import gzip
import io
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import pyarrow as pa
import pyarrow.parquet as pq
import pycountry
import pytest

from lake_assets.domains.commerce.generator import GeneratedCommerce, generate_commerce

UTC = dt.timezone.utc
START = dt.date(2024, 3, 1)
NOW = dt.datetime(2024, 3, 10, 8, 0, tzinfo=UTC)  # the ingestion time the rules are checked against
ARGS = dict(start=START, days=3, seed=11, now=NOW, keep_truth=True)
DATASETS = ("events", "users", "transactions")

# --------------------------------------------------------------------------- the contract, read again

COLUMNS = {
    "events": ("event_id", "user_id", "event_type", "ts", "session_id", "product_id"),
    "users": ("user_id", "email", "country", "status", "created_at", "updated_at"),
    "transactions": ("transaction_id", "user_id", "amount", "currency", "status", "created_at"),
}
ALIASES = {
    "eventId": "event_id", "userId": "user_id", "type": "event_type", "timestamp": "ts", "event_time": "ts",
    "country_code": "country", "modified_at": "updated_at", "txn_id": "transaction_id", "total": "amount",
    "created": "created_at",
}
PK = {"events": ("event_id",), "users": ("user_id", "updated_at"), "transactions": ("transaction_id",)}
OPTIONAL = {"session_id", "product_id"}
TIMESTAMPS = {"events": ("ts",), "users": ("created_at", "updated_at"), "transactions": ("created_at",)}
DATING = {"events": "ts", "users": "updated_at", "transactions": "created_at"}
NULLS = {"", "null", "NULL", "N/A", "-"}
EVENT_TYPES = {"page_view", "product_view", "add_to_cart", "checkout", "purchase", "login", "logout"}
USER_STATUSES = {"active", "suspended", "closed"}
TXN_STATUSES = {"pending", "completed", "failed", "refunded"}
COUNTRIES = {c.alpha_2 for c in pycountry.countries}  # exact codes: lookups are case-insensitive
CURRENCIES = {c.alpha_3 for c in pycountry.currencies}
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
INTEGER = re.compile(r"-?\d+")
AMOUNT = re.compile(r"-?\d+(\.\d{1,2})?")
LOW = dt.datetime(2000, 1, 1, tzinfo=UTC)
HIGH = NOW + dt.timedelta(days=1)
BAD = object()  # a value that cannot be cast
MALFORMED = object()

ALL_FORMATS = {"json_array", "json_object", "ndjson", "csv", "txt", "json_array.gz", "ndjson.gz", "csv.gz",
               "txt.gz", "parquet", "parquet_typed"}
RULES = {
    "events": {"malformed_record", "missing_primary_key", "missing_value:user_id", "missing_value:event_type",
               "missing_value:ts", "invalid_type:ts", "impossible_timestamp", "invalid_value:event_type",
               "duplicate"},
    "users": {"malformed_record", "missing_primary_key", "missing_value:email", "missing_value:country",
              "missing_value:status", "missing_value:created_at", "invalid_type:created_at",
              "invalid_type:updated_at", "impossible_timestamp", "invalid_value:email", "invalid_value:country",
              "invalid_value:status", "duplicate"},
    "transactions": {"malformed_record", "missing_primary_key", "missing_value:user_id", "missing_value:amount",
                     "missing_value:currency", "missing_value:status", "missing_value:created_at",
                     "invalid_type:amount", "invalid_type:created_at", "impossible_timestamp",
                     "invalid_value:amount", "invalid_value:currency", "invalid_value:status", "duplicate"},
}


def run(**overrides) -> tuple[dict[str, bytes], GeneratedCommerce]:
    files: dict[str, bytes] = {}

    def write(path: str, data: bytes) -> None:
        assert path not in files, f"{path} written twice"
        assert isinstance(data, bytes)
        files[path] = data

    return files, generate_commerce(write, **{**ARGS, **overrides})


@pytest.fixture(scope="module")
def default_run():
    return run()


# --------------------------------------------------------------------------- an independent reader


class Unreadable(Exception):
    pass


def read_file(path: str, data: bytes) -> tuple[str, list]:
    """(format, records): a record is a dict of raw values or MALFORMED. Raises Unreadable."""
    name = path.rsplit("/", 1)[-1]
    ext = name.split(".", 1)[1]
    try:
        if ext.endswith(".gz"):
            data = gzip.decompress(data)
        if ext == "parquet":
            table = pq.read_table(io.BytesIO(data))
            typed = any(pa.types.is_timestamp(f.type) for f in table.schema)
            return ("parquet_typed" if typed else "parquet"), table.to_pylist()
        text = data.decode("utf-8")
        if "\x00" in text:
            raise Unreadable("NUL bytes")
        base = ext.removesuffix(".gz")
        gz = ".gz" if ext.endswith(".gz") else ""
        if base == "json":
            value = json.loads(text)
            if isinstance(value, dict):
                assert not gz
                return "json_object", [value]
            assert isinstance(value, list)
            return "json_array" + gz, [v if isinstance(v, dict) else MALFORMED for v in value]
        if base in ("ndjson", "jsonl"):
            out = []
            for line in text.splitlines():
                assert line.strip(), "no blank lines expected"
                try:
                    value = json.loads(line)
                except json.JSONDecodeError:
                    value = MALFORMED
                out.append(value if isinstance(value, dict) else MALFORMED)
            return "ndjson" + gz, out
        if base in ("csv", "txt"):
            rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="," if base == "csv" else "|"))
            header, body = rows[0], rows[1:]
            return base + gz, [dict(zip(header, r)) if len(r) == len(header) else MALFORMED for r in body]
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError, pa.ArrowException, Unreadable) as exc:
        raise Unreadable(f"{path}: {exc!r}") from exc
    raise AssertionError(f"unexpected extension: {path}")


def clean(v):
    if isinstance(v, str):
        v = v.strip()
        return None if v in NULLS else v
    return v


def as_ts(v):
    if isinstance(v, dt.datetime):
        return v.astimezone(UTC)
    if isinstance(v, str) and INTEGER.fullmatch(v):
        v = int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return dt.datetime(1970, 1, 1, tzinfo=UTC) + (dt.timedelta(milliseconds=v) if v > 10**11
                                                       else dt.timedelta(seconds=v))
    if isinstance(v, str) and ISO.fullmatch(v):
        try:
            return dt.datetime.fromisoformat(v.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            return BAD
    return BAD


def as_amount(v):
    if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
        return Decimal(str(v)).quantize(Decimal("0.01"))
    if isinstance(v, str) and AMOUNT.fullmatch(v):
        try:
            return Decimal(v).quantize(Decimal("0.01"))
        except InvalidOperation:
            return BAD
    return BAD


@dataclass
class Row:
    dataset: str
    file: str
    position: int  # delivery order within the dataset
    values: dict | None  # canonical, typed (None for a malformed record)
    reasons: tuple[str, ...]
    date: dt.date | None


def judge(dataset: str, record, file: str, position: int) -> Row:
    """Apply the contract's rules to one raw record."""
    if record is MALFORMED:
        return Row(dataset, file, position, None, ("malformed_record",), None)
    raw = {c: None for c in COLUMNS[dataset]}
    for key, v in record.items():
        canon = ALIASES.get(key, key)
        if canon in raw:
            raw[canon] = clean(v)
    values, bad_type = {}, set()
    for col, v in raw.items():
        if v is not None and col in TIMESTAMPS[dataset]:
            v = as_ts(v)
        elif v is not None and col == "amount":
            v = as_amount(v)
        if v is BAD:
            bad_type.add(col)
            v = None
        values[col] = v
    reasons = []
    if any(raw[c] is None for c in PK[dataset]):
        reasons.append("missing_primary_key")
    reasons += [f"missing_value:{c}" for c in COLUMNS[dataset]
                if raw[c] is None and c not in PK[dataset] and c not in OPTIONAL]
    reasons += [f"invalid_type:{c}" for c in COLUMNS[dataset] if c in bad_type]
    impossible = {c for c in TIMESTAMPS[dataset] if values[c] is not None and not LOW <= values[c] <= HIGH}
    if impossible:
        reasons.append("impossible_timestamp")
    allowed = {("events", "event_type"): EVENT_TYPES, ("users", "status"): USER_STATUSES,
               ("transactions", "status"): TXN_STATUSES, ("users", "country"): COUNTRIES,
               ("transactions", "currency"): CURRENCIES}
    for col in COLUMNS[dataset]:
        v = values[col]
        if v is None:
            continue
        if ((dataset, col) in allowed and v not in allowed[(dataset, col)]) or (col == "amount" and v < 0) or (
                col == "email" and "@" not in v):
            reasons.append(f"invalid_value:{col}")
    dating = DATING[dataset]
    date = values[dating].date() if values[dating] is not None and dating not in impossible else None
    return Row(dataset, file, position, values, tuple(reasons), date)


@dataclass
class Reading:
    formats: dict[str, set[str]]
    unreadable: list[str]
    rows: dict[str, list[Row]]
    silver: dict[str, list[Row]]
    duplicates: dict[str, list[Row]]


def read_back(files: dict[str, bytes]) -> Reading:
    formats = collections.defaultdict(set)
    unreadable = []
    rows = {d: [] for d in DATASETS}
    for path in sorted(files):  # lexicographic path order is delivery order
        dataset = path.split("/")[1]
        try:
            fmt, records = read_file(path, files[path])
        except Unreadable:
            unreadable.append(path)
            continue
        formats[dataset].add(fmt)
        for record in records:
            rows[dataset].append(judge(dataset, record, path, len(rows[dataset])))
    silver, duplicates = {}, {}
    for dataset, delivered in rows.items():
        winners: dict[tuple, Row] = {}
        losers = []
        for row in delivered:
            if row.reasons:
                continue
            key = tuple(row.values[c] for c in PK[dataset])
            held = winners.get(key)
            if held is None:
                winners[key] = row
            elif dataset == "events" and row.values["ts"] >= held.values["ts"]:
                losers.append(row)  # the earliest ts wins, then the earliest delivery
            else:
                losers.append(held)
                winners[key] = row
        silver[dataset] = sorted(winners.values(), key=lambda r: r.position)
        duplicates[dataset] = losers
    return Reading(dict(formats), unreadable, rows, silver, duplicates)


@pytest.fixture(scope="module")
def default_reading(default_run):
    return read_back(default_run[0])


def truth_key(dataset, row: dict):
    return tuple(row[c] for c in PK[dataset])


def check_against_reading(files, res: GeneratedCommerce, reading: Reading) -> None:
    assert res.files == len(files)
    assert sorted(res.bad_files) == reading.unreadable
    for dataset in DATASETS:
        delivered = reading.rows[dataset]
        assert res.rows[dataset] == len(delivered), dataset
        assert res.valid_rows[dataset] == len(reading.silver[dataset]), dataset
        first = collections.Counter(r.reasons[0] for r in delivered if r.reasons)
        first["duplicate"] += len(reading.duplicates[dataset])
        assert dict(res.reason_counts[dataset]) == {k: v for k, v in first.items() if v}, dataset
        full = collections.Counter(r.reasons for r in delivered if r.reasons)
        if reading.duplicates[dataset]:
            full[("duplicate",)] += len(reading.duplicates[dataset])
        assert dict(res.reason_sets[dataset]) == dict(full), dataset
        assert res.undated[dataset] == sum(1 for r in delivered if r.reasons and r.date is None), dataset
        dated = collections.Counter(r.date for r in delivered if r.reasons and r.date is not None)
        dated.update(r.date for r in reading.duplicates[dataset])
        assert dict(res.rejected_by_date[dataset]) == dict(dated), dataset
        assert dict(res.valid_by_date[dataset]) == dict(collections.Counter(r.date for r in reading.silver[dataset]))
        expected = sorted(({**r.values, "event_date": r.date} for r in reading.silver[dataset]),
                          key=lambda row: truth_key(dataset, row))
        got = sorted(res.truth[dataset], key=lambda row: truth_key(dataset, row))
        assert got == expected, dataset


# --------------------------------------------------------------------------- tests


def test_same_seed_same_bytes():
    files_a, res_a = run(keep_truth=False)
    files_b, res_b = run(keep_truth=False)
    assert files_a == files_b
    assert res_a == res_b and res_a.truth is None
    files_c, _ = run(seed=12, keep_truth=False)
    assert files_c != files_a


def test_counts_reasons_and_truth_match_an_independent_reading(default_run, default_reading):
    files, res = default_run
    check_against_reading(files, res, default_reading)


@pytest.mark.parametrize("overrides", [
    dict(days=1, users=8, events_per_day=40, transactions_per_day=10, seed=3),
    dict(days=4, bad_share=0.0, bad_files=False, seed=5, events_per_day=60, transactions_per_day=15),
    dict(days=2, bad_share=0.2, seed=9, now=None, events_per_day=80),
])
def test_other_shapes_match_an_independent_reading(overrides):
    files, res = run(**overrides)
    reading = read_back(files)
    check_against_reading(files, res, reading)
    if not overrides.get("bad_files", True):
        assert res.bad_files == []
    if overrides.get("bad_share") == 0.0:
        assert set().union(*(r.keys() for r in res.reason_counts.values())) <= {"duplicate"}


def test_invariant_rows_equal_valid_plus_rejected(default_run):
    _, res = default_run
    for dataset in DATASETS:
        assert res.rows[dataset] == res.valid_rows[dataset] + sum(res.reason_counts[dataset].values())
        assert res.valid_rows[dataset] == len(res.truth[dataset]) == sum(res.valid_by_date[dataset].values())
        assert res.undated[dataset] + sum(res.rejected_by_date[dataset].values()) == sum(
            res.reason_counts[dataset].values())


def test_every_format_for_every_dataset(default_run, default_reading):
    files, _ = default_run
    for dataset in DATASETS:
        assert default_reading.formats[dataset] == ALL_FORMATS, dataset
    # a typed Parquet file: timestamp[us, tz=UTC] time columns, a decimal or double amount
    typed = collections.defaultdict(list)
    for path, data in files.items():
        if path.endswith(".parquet") and path not in default_run[1].bad_files:
            schema = pq.read_schema(io.BytesIO(data))
            if any(pa.types.is_timestamp(f.type) for f in schema):
                typed[path.split("/")[1]].append(schema)
    for dataset, ts_cols in (("events", ({"ts", "timestamp", "event_time"})),
                             ("users", {"created_at", "updated_at", "modified_at"}),
                             ("transactions", {"created_at", "created"})):
        assert typed[dataset], dataset
        for schema in typed[dataset]:
            stamped = {f.name for f in schema if f.type == pa.timestamp("us", tz="UTC")}
            assert stamped and stamped <= ts_cols
    for schema in typed["transactions"]:
        (amount,) = [f for f in schema if f.name in ("amount", "total")]
        assert pa.types.is_decimal(amount.type) or pa.types.is_floating(amount.type)


def test_file_names_order_delivery(default_run):
    files, res = default_run
    pattern = re.compile(r"raw/(events|users|transactions)/(\d{4}-\d{2}-\d{2})_(\d{3})\.[a-z.]+")
    days = {START + dt.timedelta(days=i) for i in range(ARGS["days"])}
    for path in files:
        m = pattern.fullmatch(path)
        assert m, path
        assert dt.date.fromisoformat(m.group(2)) in days
    assert len(res.bad_files) >= 4 * len(DATASETS)
    kinds = collections.defaultdict(set)
    for path in res.bad_files:
        kinds[path.split("/")[1]].add(path.split(".", 1)[1])
    for dataset in DATASETS:
        assert kinds[dataset] >= {"ndjson.gz", "parquet", "csv", "json"}, dataset
    junk = [files[p] for p in res.bad_files if p.endswith(".csv")]
    assert all(b"\x00" in data for data in junk)


def test_every_rule_present(default_run):
    _, res = default_run
    for dataset in DATASETS:
        assert set(res.reason_counts[dataset]) == RULES[dataset], dataset
        assert res.undated[dataset] > 0
        combined = [reasons for reasons in res.reason_sets[dataset] if len(reasons) > 1]
        assert len(combined) >= 3, dataset


def test_truth_is_typed_unique_and_in_range(default_run):
    _, res = default_run
    last = START + dt.timedelta(days=ARGS["days"] - 1)
    for dataset in DATASETS:
        rows = res.truth[dataset]
        keys = [truth_key(dataset, row) for row in rows]
        assert len(keys) == len(set(keys)), dataset
        for row in rows:
            assert set(row) == set(COLUMNS[dataset]) | {"event_date"}
            for col in TIMESTAMPS[dataset]:
                assert row[col].tzinfo is not None and row[col].utcoffset() == dt.timedelta(0)
            assert row["event_date"] == row[DATING[dataset]].date()
            assert START <= row["event_date"] <= last
            for col in COLUMNS[dataset]:
                v = row[col]
                assert v is not None or col in OPTIONAL
                if isinstance(v, str):
                    assert v == v.strip() and v not in NULLS
            if dataset == "transactions":
                assert row["amount"] == row["amount"].quantize(Decimal("0.01"))
                assert row["amount"].as_tuple().exponent == -2
        for date in res.rejected_by_date[dataset]:
            assert START <= date <= last


def test_late_and_out_of_order_user_versions(default_reading):
    versions = [r for r in default_reading.rows["users"] if not r.reasons]
    late_across_files = late_across_days = 0
    for i, a in enumerate(versions):
        for b in versions[:i]:  # b delivered before a
            if b.values["user_id"] == a.values["user_id"] and b.values["updated_at"] > a.values["updated_at"]:
                late_across_files += b.file != a.file
        delivered_on = dt.date.fromisoformat(a.file.split("/")[2][:10])
        late_across_days += delivered_on > a.date
    assert late_across_files > 0
    assert late_across_days > 0
    per_user = collections.Counter(r.values["user_id"] for r in default_reading.silver["users"])
    assert max(per_user.values()) >= 3  # several versions per user


def test_unknown_members_and_facts_before_first_version(default_run):
    _, res = default_run
    known = {row["user_id"] for row in res.truth["users"]}
    first = {}
    for row in res.truth["users"]:
        first[row["user_id"]] = min(first.get(row["user_id"], row["updated_at"]), row["updated_at"])
    assert {row["user_id"] for row in res.truth["events"]} - known
    assert {row["user_id"] for row in res.truth["transactions"]} - known
    assert any(row["user_id"] in first and row["ts"] < first[row["user_id"]] for row in res.truth["events"])


def test_duplicates_of_every_kind(default_reading):
    reading = default_reading
    # events: a later delivery with an earlier ts wins; a later ts loses; a tie goes to the first delivery
    events = collections.defaultdict(list)
    for r in reading.rows["events"]:
        if not r.reasons:
            events[r.values["event_id"]].append(r)
    groups = [g for g in events.values() if len(g) > 1]
    assert any(g[-1].values["ts"] < g[0].values["ts"] for g in groups)
    assert any(g[-1].values["ts"] > g[0].values["ts"] for g in groups)
    assert any(g[-1].values["ts"] == g[0].values["ts"] for g in groups)
    for g in groups:
        assert len({r.date for r in g}) == 1
    # transactions: a pending payment settled by a later delivery, and a later bad redelivery that loses
    txns = collections.defaultdict(list)
    for r in reading.rows["transactions"]:
        if r.values and r.values["transaction_id"]:
            txns[r.values["transaction_id"]].append(r)
    silver = {r.values["transaction_id"]: r for r in reading.silver["transactions"]}
    settled = [t for t, g in txns.items() if g[0].values["status"] == "pending" and not g[0].reasons
               and silver[t].values["status"] in ("completed", "failed")]
    assert settled
    assert any(g[-1].reasons and not g[0].reasons and g[-1].reasons[0] == "invalid_value:status"
               for g in txns.values() if len(g) > 2)
    assert any(r.values["status"] == "refunded" for r in reading.silver["transactions"])
    # users: a redelivered version with a corrected email wins
    users = collections.defaultdict(list)
    for r in reading.rows["users"]:
        if not r.reasons:
            users[(r.values["user_id"], r.values["updated_at"])].append(r)
    assert any(len(g) > 1 and g[0].values["email"] != g[-1].values["email"] for g in users.values())


def test_drift_is_present(default_run):
    files, res = default_run
    keys = collections.Counter()
    values = []
    for path in sorted(files):
        if path in res.bad_files:
            continue
        _, records = read_file(path, files[path])
        for record in records:
            if record is not MALFORMED:
                keys.update(list(record))
                values += [(ALIASES.get(k, k), v) for k, v in record.items()]
    assert set(ALIASES) <= set(keys)  # every alias
    assert {"campaign", "device", "app_version", "refund_of"} <= set(keys)  # unknown columns
    seen = collections.Counter()
    for col, v in values:
        if isinstance(v, str) and v != v.strip():
            seen["padded"] += 1
        if isinstance(v, str) and v.strip() in NULLS:
            seen["null:" + v.strip()] += 1
        if col in ("ts", "created_at", "updated_at"):
            kind = type(v).__name__
            if isinstance(v, str):
                kind = ("iso_z" if v.strip().endswith("Z") else "iso_offset" if ISO.fullmatch(v.strip())
                        else "epoch_ms_str" if INTEGER.fullmatch(v) and int(v) > 10**11
                        else "epoch_s_str" if INTEGER.fullmatch(v) else "other")
            elif isinstance(v, int):
                kind = "epoch_ms" if v > 10**11 else "epoch_s"
            seen[kind] += 1
        if col == "amount":
            seen["amount_" + type(v).__name__] += 1
    for kind in ("padded", "null:", "null:null", "null:NULL", "null:N/A", "null:-", "iso_z", "iso_offset",
                 "epoch_ms_str", "epoch_s_str", "epoch_ms", "epoch_s", "datetime", "amount_str", "amount_float",
                 "amount_Decimal"):
        assert seen[kind], kind
