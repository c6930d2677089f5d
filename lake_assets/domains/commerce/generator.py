"""Synthetic raw input for the commerce contract (/work/shared/contracts/commerce.md).

The independent ground truth the commerce pipeline is tested against: it imports
nothing from ``lake_assets``, and it knows, row by row, what the pipeline must do
with what it writes (silver row, quarantine reason, duplicate, unreadable file).

What a run writes, through ``write(rel_path, data)``, one call per file:

* ``raw/{events,users,transactions}/<delivery date>_<seq:03d><ext>``: lexicographic
  path order is delivery order within a dataset (day of delivery, then sequence).
  Formats rotate so that a run of three days or more holds, per dataset: JSON array
  (``.json``), JSON single object (``.json``, pretty-printed), NDJSON (``.ndjson`` or
  ``.jsonl``), CSV (``.csv``), ``|``-delimited TXT (``.txt``), gzip of the four
  text formats (``.json.gz``, ``.ndjson.gz``/``.jsonl.gz``, ``.csv.gz``, ``.txt.gz``),
  Parquet with string columns and Parquet with typed columns (timestamps as
  ``timestamp[us, tz=UTC]``, transaction amounts as ``decimal(18,2)`` or ``double``).
* Drift: per file, each column under its canonical name or an alias, columns in a
  shuffled order now and then, extra columns (``campaign``, ``device``,
  ``app_version``, ``refund_of``, ``redelivered``), every timestamp form (ISO with ``Z`` or an offset,
  epoch seconds, epoch milliseconds; JSON numbers or strings), amounts as strings or
  numbers, padded strings, every null token (and JSON null / a missing key).
* Bad rows of every rule (alone and combined), duplicates of every kind, late and
  out-of-order user versions, and (``bad_files``) unreadable files.

Reasons are not declared by hand: every cell records what it is (valid, null, not
castable, impossible timestamp, invalid value), and a row's reasons are derived from
its cells in the contract's order. Deduplication is applied afterwards, in the
final delivery order, so the truth follows whatever order the files ended up in.

Semantic choices beyond the contract's text (the pipeline must agree):

* A null primary-key column gives ``missing_primary_key`` only, not also
  ``missing_value:<pk column>``.
* An NDJSON line that is not valid JSON at all counts as ``malformed_record``, like
  a line holding a JSON value that is not an object; it does not make the file
  unreadable.
* Codes are case-sensitive: ``us`` / ``usd`` are invalid (pycountry's own lookup is
  case-insensitive: compare against the exact set of codes).
* Valid dates (and delivery days) stay within ``start .. start + days - 1``; a late
  arrival is a row delivered on a later day than its own date.

Who does what (a signal for the purchase-propensity model to learn):

* Engagement: each known user has a latent engagement level ``z`` that drifts day by
  day as a stationary AR(1) random walk, ``z[t] = 0.9 z[t-1] + sqrt(1 - 0.9^2) e``,
  ``e ~ N(0, 1)``, ``z[0] ~ N(0, 1)``: it persists for a week or two, then wanders off.
* Events: the day's ``events_per_day`` events go to users in proportion to
  ``exp(2 z)``: a few engaged users make most of the traffic, a dormant one makes
  none for days.
* Purchases: each of the day's ``transactions_per_day`` transactions goes to a user in
  proportion to a logistic function of their own activity in the 7 days before (never
  the same day): ``sigmoid(-6 + 2 log1p(events on days t-7 .. t-1))``. So whether a
  user buys in the next week rises with how active they were lately, through their
  engagement's persistence. On the first day nobody has a history yet: picks are
  uniform, and the signal builds up over the first week.
* Unchanged: the per-day volumes (exactly ``events_per_day`` events and
  ``transactions_per_day`` transactions a day, before duplicates, refunds and bad
  rows), the share of facts naming an unknown user (~6 %), the transaction statuses
  (drawn independently of the user), and every bad row, duplicate and late version;
  bad rows still pick users uniformly (they never reach silver).
"""
from __future__ import annotations

import bisect
import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["DATASETS", "GeneratedCommerce", "generate_commerce"]

DATASETS = ("events", "users", "transactions")


@dataclass(frozen=True)
class GeneratedCommerce:
    """What a run wrote, so a test can predict the pipeline's counts without re-parsing.

    ``rows[d] == valid_rows[d] + sum(reason_counts[d].values())`` for every dataset.
    """

    files: int  # raw files written (incl. unreadable)
    bad_files: list[str]  # rel paths of unreadable files
    rows: Mapping[str, int]  # dataset -> rows in readable files (every row, valid or bad)
    valid_rows: Mapping[str, int]  # dataset -> rows that must end in silver (after dedup)
    reason_counts: Mapping[str, Mapping[str, int]]  # dataset -> first reason -> rows (incl. "duplicate")
    undated: Mapping[str, int]  # dataset -> bad rows with no usable dating timestamp
    #: With ``keep_truth``: dataset -> expected silver rows (canonical columns, typed, + event_date).
    truth: Mapping[str, list[dict]] | None = None
    #: dataset -> full ``reasons`` tuple -> rows (the ``reasons`` column of quarantine).
    reason_sets: Mapping[str, Mapping[tuple[str, ...], int]] = field(default_factory=dict, hash=False)
    #: dataset -> event_date -> silver rows.
    valid_by_date: Mapping[str, Mapping[dt.date, int]] = field(default_factory=dict, hash=False)
    #: dataset -> event_date -> quarantined rows that have a date (duplicates included).
    rejected_by_date: Mapping[str, Mapping[dt.date, int]] = field(default_factory=dict, hash=False)


# --------------------------------------------------------------------------- contract


@dataclass(frozen=True)
class _Spec:
    columns: tuple[str, ...]
    aliases: Mapping[str, tuple[str, ...]]
    pk: tuple[str, ...]
    optional: tuple[str, ...]
    timestamps: tuple[str, ...]
    date_col: str
    amount: str | None = None


_SPECS = {
    "events": _Spec(
        columns=("event_id", "user_id", "event_type", "ts", "session_id", "product_id"),
        aliases={"event_id": ("eventId",), "user_id": ("userId",), "event_type": ("type",),
                 "ts": ("timestamp", "event_time")},
        pk=("event_id",), optional=("session_id", "product_id"), timestamps=("ts",), date_col="ts"),
    "users": _Spec(
        columns=("user_id", "email", "country", "status", "created_at", "updated_at"),
        aliases={"user_id": ("userId",), "country": ("country_code",), "updated_at": ("modified_at",)},
        pk=("user_id", "updated_at"), optional=(), timestamps=("created_at", "updated_at"),
        date_col="updated_at"),
    "transactions": _Spec(
        columns=("transaction_id", "user_id", "amount", "currency", "status", "created_at"),
        aliases={"transaction_id": ("txn_id",), "user_id": ("userId",), "amount": ("total",),
                 "created_at": ("created",)},
        pk=("transaction_id",), optional=(), timestamps=("created_at",), date_col="created_at",
        amount="amount"),
}

EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "checkout", "purchase", "login", "logout")
USER_STATUSES = ("active", "suspended", "closed")
COUNTRIES = ("US", "DE", "FR", "GB", "JP", "BR", "IN", "CA")
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "BRL", "INR", "CAD")
NULL_TOKENS = ("", "null", "NULL", "N/A", "-")

_UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_EDGE_MS = 90 * 60_000  # near midnight: offsets that move the local date
_FAR_FUTURE = dt.datetime(2100, 1, 6, 12, 0, tzinfo=_UTC)
_Y1999_MS = 946_684_799_000  # 1999-12-31T23:59:59Z
_CENT = Decimal("0.01")

# The purchase signal (see the module docstring).
_ENGAGEMENT_PERSISTENCE = 0.9  # AR(1) coefficient of the daily engagement walk
_ENGAGEMENT_SPREAD = 2.0  # events go to users in proportion to exp(spread * z)
_PROPENSITY_INTERCEPT = -6.0  # purchase propensity: sigmoid(intercept + slope * log1p(recent events))
_PROPENSITY_SLOPE = 2.0
_PROPENSITY_LOOKBACK_DAYS = 7


def purchase_propensity(recent_events: int) -> float:
    """A user's relative propensity to buy on a day, from their events in the 7 days before."""
    return 1.0 / (1.0 + math.exp(-(_PROPENSITY_INTERCEPT + _PROPENSITY_SLOPE * math.log1p(recent_events))))


#: Bulk formats in rotation (the single-object JSON file comes on top, once a day).
_BULK = ("csv", "ndjson", "parquet_typed", "json_array", "txt", "csv_gz", "parquet", "ndjson_gz",
         "json_array_gz", "txt_gz")
_MALFORMABLE = {"csv", "txt", "ndjson", "json_array", "csv_gz", "txt_gz", "ndjson_gz", "json_array_gz"}

# Timestamp forms: (kind, offset minutes, suffix); kind "iso", "s" (epoch seconds), "ms".
_TS_FORMS = ((("iso", 0, "Z"), 30), (("iso", 0, "+00:00"), 3), (("iso", 120, "+02:00"), 8),
             (("iso", -300, "-05:00"), 6), (("iso", 330, "+05:30"), 3), (("s", 0, ""), 15),
             (("ms", 0, ""), 15))
_TS_MORNING = ((("iso", -300, "-05:00"), 5), (("iso", -480, "-08:00"), 3), (("iso", 0, "Z"), 2),
               (("ms", 0, ""), 1))
_TS_EVENING = ((("iso", 120, "+02:00"), 5), (("iso", 330, "+05:30"), 3), (("iso", 0, "Z"), 2),
               (("s", 0, ""), 1))

_NAMES = ("ada", "bob", "chloe", "dmitri", "emma", "farid", "gita", "hugo", "ines", "jonas", "keiko",
          "liam", "mia", "noah", "olga", "pedro", "quinn", "rosa", "sven", "tara")
_DOMAINS = ("example.com", "mail.example.org", "shop.example.net")
_EXTRA_POOLS = {
    "campaign": ("spring_sale", "été-2024", "newsletter", None),
    "device": ("ios", "android", "web", None),
    "app_version": ("5.2.0", "5.3.1", "6.0.0-beta"),
}

_OMIT = object()  # a JSON key left out
_UNTYPED = object()  # a value a typed Parquet column cannot hold


class _Cell(NamedTuple):
    json: Any  # in JSON files (_OMIT: key left out)
    text: str  # in CSV/TXT files and string Parquet
    typed: Any  # in typed Parquet columns (_UNTYPED: not representable)
    value: Any  # canonical value (str, tz-aware datetime, Decimal) or None
    flag: str  # "" valid, "null", "type" (cannot be cast), "impossible", "value" (invalid value)


class _Row:
    __slots__ = ("cells", "extras", "reasons", "date", "malformed", "key", "file")

    def __init__(self, cells=None, extras=None, malformed=None):
        self.cells: dict[str, _Cell] = cells or {}
        self.extras: dict[str, Any] = extras or {}
        self.malformed = malformed  # None, or what to write instead of the record
        self.reasons: tuple[str, ...] = ()
        self.date: dt.date | None = None
        self.key: tuple | None = None
        self.file: str | None = None


def _table(pairs, size=100):
    out = []
    total = sum(w for _, w in pairs)
    for value, weight in pairs:
        out.extend([value] * max(1, round(weight * size / total)))
    return out


def _iso(t_ms: int, off_min: int = 0, suffix: str = "Z", frac: bool = False) -> str:
    local = _EPOCH_NAIVE + dt.timedelta(milliseconds=t_ms + off_min * 60_000)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += f".{t_ms % 1000:03d}"
    return text + suffix


def _instant(t_ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=t_ms)


def _amount_text(cents: int, minimal: bool) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    if not minimal:
        return f"{sign}{whole}.{frac:02d}"
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:02d}".rstrip("0")


def _finish(row: _Row, spec: _Spec) -> _Row:
    """Reasons (contract order), partition date and key, from the row's cells."""
    if row.malformed is not None:
        row.reasons = ("malformed_record",)
        return row
    c = row.cells
    reasons = []
    if any(c[k].flag == "null" for k in spec.pk):
        reasons.append("missing_primary_key")
    reasons += [f"missing_value:{k}" for k in spec.columns
                if c[k].flag == "null" and k not in spec.pk and k not in spec.optional]
    reasons += [f"invalid_type:{k}" for k in spec.columns if c[k].flag == "type"]
    if any(c[k].flag == "impossible" for k in spec.timestamps):
        reasons.append("impossible_timestamp")
    reasons += [f"invalid_value:{k}" for k in spec.columns if c[k].flag == "value"]
    row.reasons = tuple(reasons)
    dating = c[spec.date_col]
    row.date = dating.value.date() if dating.flag == "" else None
    row.key = tuple(c[k].value for k in spec.pk)
    return row


# --------------------------------------------------------------------------- cells


class _Cells:
    def __init__(self, rng, future_ms: int):
        self.rng = rng
        self.future_ms = future_ms
        self.forms = _table(_TS_FORMS)
        self.morning = _table(_TS_MORNING)
        self.evening = _table(_TS_EVENING)

    def pick(self, seq):
        return seq[int(self.rng.random() * len(seq))]

    def ts_render(self, t_ms: int, form, number_ok: bool = True) -> tuple[Any, str]:
        kind, off, suffix = form
        r = self.rng.random
        if kind == "s" and t_ms % 1000:
            kind = "ms"
        if kind == "iso":
            text = _iso(t_ms, off, suffix, frac=bool(t_ms % 1000) or r() < 0.1)
            if r() < 0.03:
                text = f" {text} "
            return text, text
        n = t_ms // 1000 if kind == "s" else t_ms
        return (n if number_ok and r() < 0.7 else str(n)), str(n)

    def ts(self, t_ms: int) -> _Cell:
        sod = t_ms % _DAY_MS
        pool = self.morning if sod < _EDGE_MS else self.evening if sod >= _DAY_MS - _EDGE_MS else self.forms
        js, text = self.ts_render(t_ms, self.pick(pool))
        value = _instant(t_ms)
        return _Cell(js, text, value, value, "")

    def string(self, s: str) -> _Cell:
        x = self.rng.random()
        shown = s if x >= 0.06 else f" {s}" if x < 0.02 else f"{s} " if x < 0.04 else f"  {s} "
        return _Cell(shown, shown, shown, s, "")

    def amount(self, cents: int, flag: str = "") -> _Cell:
        x = self.rng.random()
        value = (Decimal(cents) / 100).quantize(_CENT)
        if x < 0.4:
            js = text = _amount_text(cents, minimal=False)
        elif x < 0.6:
            js = text = _amount_text(cents, minimal=True)
        else:
            js = cents // 100 if cents % 100 == 0 else cents / 100
            text = _amount_text(cents, minimal=self.rng.random() < 0.5)
        return _Cell(js, text, value, value, flag)

    def null(self) -> _Cell:
        r = self.rng.random
        token = self.pick(NULL_TOKENS + ("  ", " N/A", "null "))
        x = r()
        js = None if x < 0.4 else _OMIT if x < 0.6 else token
        return _Cell(js, token, None, None, "null")

    def build(self, spec: _Spec, sem: Mapping[str, Any]) -> dict[str, _Cell]:
        cells = {}
        for col in spec.columns:
            v = sem.get(col)
            if v is None:
                cells[col] = self.null()
            elif col in spec.timestamps:
                cells[col] = self.ts(v)
            elif col == spec.amount:
                cells[col] = self.amount(v)
            else:
                cells[col] = self.string(v)
        return cells

    # -- bad cells

    def bad(self, change, base_ms: int | None) -> _Cell:
        kind, arg = change
        if kind == "null":
            return self.null()
        if kind == "type":  # a value that cannot be cast
            text = arg(base_ms) if callable(arg) else arg
            return _Cell(text, text, _UNTYPED, None, "type")
        if kind == "value":  # an invalid value of a string column
            return _Cell(arg, arg, arg, arg, "value")
        if kind == "neg":  # a negative amount
            return self.amount(-abs(arg), flag="value")
        if kind == "imp":  # an impossible timestamp
            t, form, number = {
                "y1999": (_Y1999_MS, ("iso", 0, "Z"), False),
                "offset1999": (_Y1999_MS - _HOUR_MS, ("iso", 120, "+02:00"), False),  # local 2000-01-01
                "epoch0": (0, ("s", 0, ""), True),
                "epoch1999": (_Y1999_MS, ("s", 0, ""), True),
                "y2100": (4_102_444_800_000, ("iso", 0, "Z"), False),  # 2100-01-01T00:00:00Z
                "future": (self.future_ms, ("ms", 0, ""), True),
            }[arg]
            js, text = self.ts_render(t, form, number_ok=number)
            value = _instant(t)
            return _Cell(js, text, value, value, "impossible")
        raise ValueError(kind)


def _naive(t_ms):
    return _iso(t_ms if t_ms is not None else 1_709_287_200_000, suffix="")


_NULL = ("null", None)
_T = lambda v: ("type", v)  # noqa: E731
_V = lambda v: ("value", v)  # noqa: E731
_IMP = lambda v: ("imp", v)  # noqa: E731
_NEG = ("neg", 1250)

#: Bad-row variants per dataset, as families (one rule each, then combinations).
_BAD_FAMILIES = {
    "events": [
        [{"event_id": _NULL}],
        [{"user_id": _NULL}, {"event_type": _NULL}, {"ts": _NULL}],
        [{"ts": _T("yesterday")}, {"ts": _T("2024-13-45T00:00:00Z")}, {"ts": _T(_naive)}],
        [{"ts": _IMP("y1999")}, {"ts": _IMP("epoch0")}, {"ts": _IMP("future")}, {"ts": _IMP("offset1999")}],
        [{"event_type": _V("click")}, {"event_type": _V("Page_View")}, {"event_type": _V("PURCHASE")}],
        [{"event_id": _NULL, "event_type": _V("click")},
         {"user_id": _NULL, "ts": _T("yesterday")},
         {"ts": _IMP("y2100"), "event_type": _V("refund")},
         {"user_id": _NULL, "event_type": _NULL}],
    ],
    "users": [
        [{"user_id": _NULL}, {"updated_at": _NULL}],
        [{"email": _NULL}, {"country": _NULL}, {"status": _NULL}, {"created_at": _NULL}],
        [{"created_at": _T("yesterday")}, {"updated_at": _T(_naive)}, {"updated_at": _T("2024-13-45T00:00:00Z")}],
        [{"updated_at": _IMP("y1999")}, {"created_at": _IMP("epoch0")}, {"updated_at": _IMP("future")}],
        [{"email": _V("jane.doe.example.com")}, {"country": _V("XX")}, {"status": _V("deleted")},
         {"country": _V("us")}, {"status": _V("Active")}, {"country": _V("UK")}],
        [{"email": _V("no-at-sign"), "country": _V("ZZ"), "status": _V("banned")},
         {"user_id": _NULL, "country": _V("XX")},
         {"created_at": _T("yesterday"), "updated_at": _IMP("y1999")},
         {"email": _NULL, "updated_at": _T(_naive)}],
    ],
    "transactions": [
        [{"transaction_id": _NULL}],
        [{"user_id": _NULL}, {"amount": _NULL}, {"currency": _NULL}, {"status": _NULL}, {"created_at": _NULL}],
        [{"amount": _T("12.5x")}, {"created_at": _T("yesterday")}, {"amount": _T("twelve")},
         {"created_at": _T(_naive)}],
        [{"created_at": _IMP("epoch1999")}, {"created_at": _IMP("future")}, {"created_at": _IMP("epoch0")}],
        [{"amount": _NEG}, {"currency": _V("EURO")}, {"status": _V("done")}, {"currency": _V("usd")},
         {"status": _V("COMPLETED")}, {"currency": _V("XYZ")}],
        [{"amount": _T("12.5x"), "currency": _V("EURO")},
         {"currency": _NULL, "amount": _NEG},
         {"transaction_id": _NULL, "created_at": _IMP("y1999")},
         {"amount": _NEG, "currency": _V("usd"), "status": _V("cancelled")}],
    ],
}


def _interleave(families):
    out, k = [], 0
    while any(k < len(f) for f in families):
        out += [f[k] for f in families if k < len(f)]
        k += 1
    return out


_MALFORMED_JSON_LINES = ("[1, 2, 3]", '"not an object"', "42", '{"broken": "record", ')
_MALFORMED_ELEMENTS = (42, "not an object", [1, 2, 3], True)


# --------------------------------------------------------------------------- generator


class _Run:
    def __init__(self, write, *, start, days, users, events_per_day, transactions_per_day, bad_share,
                 bad_files, seed, future_ms, tag):
        self.write = write
        self.start = start
        self.days = days
        self.n_users = users
        self.events_per_day = events_per_day
        self.transactions_per_day = transactions_per_day
        self.bad_share = bad_share
        self.with_bad_files = bad_files
        self.rng = random.Random(seed)
        self.tag = tag
        self.cells = _Cells(self.rng, future_ms)
        self.start_ms = (start - _EPOCH.date()).days * _DAY_MS
        self.end_ms = self.start_ms + days * _DAY_MS  # exclusive
        #: dataset -> day -> (main rows, rows delivered at the end of the day)
        self.queues = {d: [([], []) for _ in range(days)] for d in DATASETS}
        self.delivered: dict[str, list[_Row]] = {d: [] for d in DATASETS}
        self.files = 0
        self.bad_file_paths: list[str] = []
        self.seq = {(d, di): 0 for d in DATASETS for di in range(days)}
        self.rotation = {d: 3 * i for i, d in enumerate(DATASETS)}
        self.malformable = {d: 0 for d in DATASETS}
        self.user_ids = [f"u{i:04d}" for i in range(1, users + 1)]
        self.unknown_ids = [f"u{users + 1001 + k:04d}" for k in range(4)]
        self.first_version_ms: dict[str, int] = {}
        self.counters = {"e": 0, "t": 0}
        self.typed_amounts = 0
        self.layouts = {d: 0 for d in DATASETS}
        #: day -> events per known user (index into user_ids): what purchase propensity reads.
        self.user_events: list[list[int]] = []

    # -- helpers

    def r(self) -> float:
        return self.rng.random()

    def day_of(self, t_ms: int) -> int:
        return (t_ms - self.start_ms) // _DAY_MS

    def time_in_day(self, di: int) -> int:
        base = self.start_ms + di * _DAY_MS
        x = self.r()
        if x < 0.04:
            t = base + self.rng.randrange(_EDGE_MS // 1000) * 1000
        elif x < 0.08:
            t = base + _DAY_MS - 1000 - self.rng.randrange(_EDGE_MS // 1000) * 1000
        else:
            t = base + self.rng.randrange(_DAY_MS // 1000) * 1000
        if self.r() < 0.2:
            t += self.rng.randrange(1, 1000)
        return t

    def new_id(self, prefix: str) -> str:
        self.counters[prefix] += 1
        return f"{prefix}-{self.tag}-{self.counters[prefix]:06d}"

    def pick_user(self, n: int, cum_weights: list[float] | None = None) -> str:
        """A user id: now and then an unknown one; else a known one, uniformly or by ``cum_weights``."""
        if not self.user_ids or n % 37 == 5 or self.r() < 0.03:
            return self.cells.pick(self.unknown_ids)
        if cum_weights is None:
            return self.cells.pick(self.user_ids)
        i = bisect.bisect_right(cum_weights, self.r() * cum_weights[-1])
        return self.user_ids[min(i, len(self.user_ids) - 1)]

    def engagement_weights(self) -> list[list[float]]:
        """Per day, cumulative event weights ``exp(spread * z)`` of the known users (see the docstring)."""
        rho, rng = _ENGAGEMENT_PERSISTENCE, self.rng
        noise = math.sqrt(1.0 - rho * rho)
        z = [rng.gauss(0.0, 1.0) for _ in self.user_ids]
        out = []
        for di in range(self.days):
            if di:
                z = [rho * x + noise * rng.gauss(0.0, 1.0) for x in z]
            cum, total = [], 0.0
            for x in z:
                total += math.exp(_ENGAGEMENT_SPREAD * x)
                cum.append(total)
            out.append(cum)
        return out

    def propensity_weights(self, di: int) -> list[float]:
        """Cumulative purchase propensities of the known users on day ``di``, from days before it only."""
        lo = max(0, di - _PROPENSITY_LOOKBACK_DAYS)
        recent = [0] * len(self.user_ids)
        for day in self.user_events[lo:di]:
            recent = [a + b for a, b in zip(recent, day)]
        cum, total = [], 0.0
        for k in recent:
            total += purchase_propensity(k)
            cum.append(total)
        return cum

    def row(self, dataset: str, sem: Mapping[str, Any], extras=None) -> _Row:
        spec = _SPECS[dataset]
        return _finish(_Row(self.cells.build(spec, sem), dict(extras or {})), spec)

    def deliver(self, dataset: str, row: _Row, day: int, tail: bool = False, late_p: float = 0.0) -> None:
        if late_p and self.r() < late_p and day < self.days - 1:
            day, tail = min(self.days - 1, day + 1 + (self.r() < 0.3)), True
        main, end = self.queues[dataset][day]
        (end if tail else main).append(row)

    def later_day(self, day: int, p: float) -> int:
        return day + 1 if day < self.days - 1 and self.r() < p else day

    # -- datasets

    def gen_users(self) -> None:
        r, rng, cells = self.r, self.rng, self.cells
        n = 0
        for uid in self.user_ids:
            first_day = 0 if r() < 0.6 else rng.randrange(self.days)
            t = self.start_ms + first_day * _DAY_MS + rng.randrange(_DAY_MS // 1000) * 1000
            times = [t]
            for _ in range(cells.pick((0, 1, 1, 2, 2, 3))):
                t += rng.randrange(_HOUR_MS // 1000, 30 * _HOUR_MS // 1000) * 1000
                if t >= self.end_ms:
                    break
                times.append(t)
            self.first_version_ms[uid] = times[0]
            created = max(self.start_ms, times[0] - rng.randrange(6 * _HOUR_MS // 1000) * 1000)
            name = cells.pick(_NAMES)
            sem = {"user_id": uid, "email": f"{name}.{uid[1:]}@{cells.pick(_DOMAINS)}",
                   "country": cells.pick(COUNTRIES), "status": "active", "created_at": created}
            versions = []
            for k, t in enumerate(times):
                sem = dict(sem, updated_at=t)
                if k:
                    x = r()
                    if x < 0.4:
                        sem["status"] = cells.pick([s for s in USER_STATUSES if s != sem["status"]])
                    elif x < 0.7:
                        sem["country"] = cells.pick([c for c in COUNTRIES if c != sem["country"]])
                    else:
                        sem["email"] = f"{name}.{uid[1:]}.{k}@{cells.pick(_DOMAINS)}"
                versions.append(sem)
            for k, sem in enumerate(versions):
                n += 1
                day = self.day_of(sem["updated_at"])
                tail = False
                # late and out of order: an older version after a newer one
                if k + 1 < len(versions) and (r() < 0.25 or n % 9 == 2):
                    late = max(day + 1, self.day_of(versions[k + 1]["updated_at"]))
                    if late < self.days:
                        day, tail = late, True
                self.deliver("users", self.row("users", sem), day, tail)
                if n % 13 == 4 or r() < 0.04:  # redelivery of the same version, maybe corrected
                    again = dict(sem)
                    if r() < 0.5:
                        again["email"] = f"{name}.{uid[1:]}.fixed@{cells.pick(_DOMAINS)}"
                    self.deliver("users", self.row("users", again), self.later_day(day, 0.4), tail=True)

    def event_sem(self, n: int, di: int, t: int | None = None, uid: str | None = None,
                  cum_weights: list[float] | None = None) -> dict:
        cells = self.cells
        etype = cells.pick(EVENT_TYPES)
        uid = uid or self.pick_user(n, cum_weights)
        return {
            "event_id": self.new_id("e"),
            "user_id": uid,
            "event_type": etype,
            "ts": t if t is not None else self.time_in_day(di),
            "session_id": None if self.r() < 0.1 else f"s-{self.tag}-{di}-{uid}-{self.rng.randrange(3)}",
            "product_id": (None if etype in ("login", "logout") or self.r() < 0.3
                           else f"p-{self.rng.randrange(1, 300):04d}"),
        }

    def gen_events(self) -> None:
        r = self.r
        n = 0
        weights = self.engagement_weights() if self.user_ids else [None] * self.days
        index = {uid: i for i, uid in enumerate(self.user_ids)}
        for di in range(self.days):
            counts = [0] * len(self.user_ids)
            self.user_events.append(counts)
            for _ in range(self.events_per_day):
                n += 1
                sem = self.event_sem(n, di, cum_weights=weights[di])
                if sem["user_id"] in index:
                    counts[index[sem["user_id"]]] += 1
                self.deliver("events", self.row("events", sem), di, late_p=0.02)
                if n % 25 == 7 or r() < 0.02:
                    # a duplicate: same ts (tie: earliest delivery wins), later or earlier ts the same day
                    kind = (n // 25) % 3
                    t = sem["ts"]
                    day_start = t - t % _DAY_MS
                    if kind == 1:
                        t = min(t + self.rng.randrange(1, 900) * 1000, day_start + _DAY_MS - 1)
                    elif kind == 2:
                        t = max(t - self.rng.randrange(1, 900) * 1000, day_start)
                    again = dict(sem, ts=t)
                    if kind == 0:  # a tie: let the first delivery's values be observable
                        again["session_id"] = None if sem["session_id"] else f"s-{self.tag}-{di}-redelivered"
                    extras = {"redelivered": "true"} if r() < 0.3 else None
                    self.deliver("events", self.row("events", again, extras),
                                 self.later_day(di, 0.3), tail=True)
        # facts before the user's first version
        if self.user_ids:
            uid = max(self.user_ids, key=lambda u: (self.first_version_ms[u], u))
            first = self.first_version_ms[uid]
            if first > self.start_ms + 60_000:
                for _ in range(2):
                    n += 1
                    t = self.start_ms + self.rng.randrange((first - self.start_ms) // 1000) * 1000
                    sem = self.event_sem(n, self.day_of(t), t=t, uid=uid)
                    self.deliver("events", self.row("events", sem), self.day_of(t))

    def txn_sem(self, n: int, di: int, status: str | None = None, cum_weights: list[float] | None = None) -> dict:
        cells = self.cells
        if status is None:
            status = cells.pick(("completed",) * 6 + ("pending",) * 2 + ("failed",))
        cents = self.rng.randrange(100, 50_000)
        if self.r() < 0.1:
            cents -= cents % 100
        return {"transaction_id": self.new_id("t"), "user_id": self.pick_user(n, cum_weights), "amount": cents,
                "currency": cells.pick(CURRENCIES), "status": status, "created_at": self.time_in_day(di)}

    def gen_transactions(self) -> None:
        r, rng = self.r, self.rng
        n = 0
        pending_seen = 0
        for di in range(self.days):
            weights = self.propensity_weights(di) if self.user_ids else None
            for _ in range(self.transactions_per_day):
                n += 1
                sem = self.txn_sem(n, di, cum_weights=weights)
                self.deliver("transactions", self.row("transactions", sem), di, late_p=0.02)
                status = sem["status"]
                if status == "pending" and (pending_seen % 3 == 0 or r() < 0.2):
                    # the redelivery settles it, and being the latest delivery it wins
                    day = self.later_day(di, 0.4)
                    settled = dict(sem, status="completed" if r() < 0.7 else "failed")
                    self.deliver("transactions", self.row("transactions", settled), day, tail=True)
                    if self.bad_share and pending_seen % 6 == 0:
                        # a later redelivery that is bad does not take part in deduplication
                        broken = self.row("transactions", dict(settled))
                        broken.cells["status"] = _Cell(" Completed", " Completed", " Completed",
                                                       "Completed", "value")
                        self.deliver("transactions", _finish(broken, _SPECS["transactions"]), day, tail=True)
                if status == "pending":
                    pending_seen += 1
                if status == "completed":
                    if n % 23 == 3 or r() < 0.02:  # an identical redelivery
                        self.deliver("transactions", self.row("transactions", sem), self.later_day(di, 0.3),
                                     tail=True)
                    if n % 7 == 1 or r() < 0.08:  # a refund: its own transaction
                        t = sem["created_at"] + rng.randrange(1800, 36 * 3600) * 1000
                        if t < self.end_ms:
                            cents = sem["amount"] if r() < 0.7 else max(1, sem["amount"] // 2)
                            refund = dict(sem, transaction_id=self.new_id("t"), amount=cents, status="refunded",
                                          created_at=t)
                            self.deliver("transactions", self.row("transactions", refund,
                                                                  {"refund_of": sem["transaction_id"]}),
                                         self.day_of(t))

    def gen_bad_rows(self) -> None:
        if not self.bad_share or not self.days:
            return
        totals = {"events": self.events_per_day * self.days,
                  "users": sum(len(m) + len(e) for m, e in self.queues["users"]),
                  "transactions": self.transactions_per_day * self.days}
        for dataset in DATASETS:
            spec = _SPECS[dataset]
            variants = _interleave(_BAD_FAMILIES[dataset])
            n_bad = max(round(totals[dataset] * self.bad_share), len(variants))
            for i in range(n_bad):
                di = i % self.days
                if dataset == "events":
                    sem = self.event_sem(i, di)
                elif dataset == "transactions":
                    sem = self.txn_sem(i, di)
                else:
                    uid = self.cells.pick(self.user_ids) if self.user_ids else "u0000"
                    t = self.time_in_day(di)
                    sem = {"user_id": uid, "email": f"{uid}@example.com", "country": self.cells.pick(COUNTRIES),
                           "status": self.cells.pick(USER_STATUSES), "created_at": t - t % _DAY_MS,
                           "updated_at": t}
                row = _Row(self.cells.build(spec, sem))
                base_ms = sem[spec.date_col]
                for col, change in variants[i % len(variants)].items():
                    row.cells[col] = self.cells.bad(change, base_ms)
                _finish(row, spec)
                main, _ = self.queues[dataset][di]
                main.insert(self.rng.randrange(len(main) + 1), row)

    # -- files

    def path(self, dataset: str, di: int, ext: str) -> str:
        seq = self.seq[(dataset, di)]
        self.seq[(dataset, di)] = seq + 1
        date = self.start + dt.timedelta(days=di)
        return f"raw/{dataset}/{date.isoformat()}_{seq:03d}{ext}"

    def plan(self, dataset: str, n_rows: int) -> list[str]:
        per_day = -(-len(_BULK) // min(self.days, 3))
        n_obj = 1 if n_rows >= 3 else 0
        n_bulk = max(0, min(per_day, n_rows - n_obj))
        fmts = []
        for _ in range(n_bulk):
            fmts.append(_BULK[self.rotation[dataset] % len(_BULK)])
            self.rotation[dataset] += 1
        if fmts and fmts[-1] == "parquet_typed":  # typed files skip rows they cannot hold: never last
            if len(fmts) > 1:
                fmts[-1], fmts[-2] = fmts[-2], fmts[-1]
            else:
                fmts[-1] = "parquet"
        if n_obj and fmts:  # never last: the last file takes whatever is left
            fmts.insert(self.rng.randrange(len(fmts)), "json_object")
        return fmts

    def split(self, total: int, k: int) -> list[int]:
        """Uneven sizes (each >= 1) of k files holding ``total`` rows (total >= k)."""
        sizes = []
        for i in range(k):
            left = k - i
            if left == 1:
                sizes.append(total)
                break
            even = total // left
            jitter = even // 3
            size = max(1, min(total - (left - 1), even + self.rng.randint(-jitter, jitter)))
            sizes.append(size)
            total -= size
        return sizes

    def write_day(self, dataset: str, di: int) -> None:
        main, end = self.queues[dataset][di]
        if dataset == "users":
            self.rng.shuffle(main)  # versions out of order within and across files
        queue = main + end
        fmts = self.plan(dataset, len(queue))
        n_bulk = sum(f != "json_object" for f in fmts)
        bulk = iter(self.split(len(queue) - (len(fmts) - n_bulk), n_bulk))
        sizes = [1 if f == "json_object" else next(bulk) for f in fmts]
        for i, (fmt, size) in enumerate(zip(fmts, sizes)):
            if i == len(fmts) - 1:  # never a single-object or typed file (see plan)
                rows, queue = queue, []
            elif fmt == "parquet_typed":
                take = [k for k, row in enumerate(queue) if self.typed_ok(dataset, row)][:size]
                if take:
                    chosen = set(take)
                    rows = [queue[k] for k in take]
                    queue = [row for k, row in enumerate(queue) if k not in chosen]
                else:
                    fmt, rows, queue = "parquet", queue[:size], queue[size:]
            else:
                rows, queue = queue[:size], queue[size:]
            if fmt in _MALFORMABLE and self.bad_share:
                self.malformable[dataset] += 1
                if self.malformable[dataset] % 2 == 1:
                    bad = _Row(malformed=self.malformable[dataset] // 2)
                    rows.insert(self.rng.randrange(len(rows) + 1), _finish(bad, _SPECS[dataset]))
            self.write_file(dataset, di, fmt, rows)
        assert not queue

    @staticmethod
    def typed_ok(dataset: str, row: _Row) -> bool:
        spec = _SPECS[dataset]
        return all(row.cells[c].typed is not _UNTYPED for c in spec.timestamps + ((spec.amount,) if spec.amount else ()))

    def layout(self, dataset: str, rows: list[_Row]) -> tuple[list[str], list[str]]:
        """(canonical-or-extra keys in file order, names in the file)."""
        spec = _SPECS[dataset]
        k = self.layouts[dataset] = self.layouts[dataset] + 1
        names = {}  # names rotate, so every alias shows up in a few files
        for j, c in enumerate(spec.columns):
            options = (c, *spec.aliases.get(c, ()))
            names[c] = options[(k + j + int(self.r() * 2)) % len(options)]
        keys = list(spec.columns)
        if self.r() < 0.3:
            self.rng.shuffle(keys)
        if k % 3 == 1:
            pool = sorted(_EXTRA_POOLS)
            file_extras = [pool[(k // 3) % len(pool)]] + ([pool[(k // 3 + 1) % len(pool)]] if self.r() < 0.5 else [])
            for row in rows:
                if row.malformed is None:
                    for name in file_extras:
                        row.extras[name] = self.cells.pick(_EXTRA_POOLS[name])
        for row in rows:
            for name in row.extras:
                if name not in keys:
                    keys.append(name)
        return keys, [names.get(k, k) for k in keys]

    def write_file(self, dataset: str, di: int, fmt: str, rows: list[_Row]) -> None:
        spec = _SPECS[dataset]
        keys, names = self.layout(dataset, rows)
        gz = fmt.endswith("_gz")
        base = fmt[:-3] if gz else fmt
        r = self.r

        def obj(row):
            out = {}
            for key, name in zip(keys, names):
                if key in row.cells:
                    v = row.cells[key].json
                    if v is not _OMIT:
                        out[name] = v
                elif key in row.extras:
                    out[name] = row.extras[key]
            return out

        if base in ("json_array", "json_object", "ndjson"):
            if base == "ndjson":
                lines = [_MALFORMED_JSON_LINES[row.malformed % len(_MALFORMED_JSON_LINES)]
                         if row.malformed is not None else json.dumps(obj(row), ensure_ascii=False)
                         for row in rows]
                text = "\n".join(lines) + "\n"
                ext = ".jsonl" if r() < 0.4 else ".ndjson"
            elif base == "json_object":
                text = json.dumps(obj(rows[0]), ensure_ascii=False, indent=2) + "\n"
                ext = ".json"
            else:
                elements = [_MALFORMED_ELEMENTS[row.malformed % len(_MALFORMED_ELEMENTS)]
                            if row.malformed is not None else obj(row) for row in rows]
                text = json.dumps(elements, ensure_ascii=False, indent=2 if r() < 0.5 else None) + "\n"
                ext = ".json"
            data = text.encode()
        elif base in ("csv", "txt"):
            buf = io.StringIO()
            writer = csv.writer(buf, delimiter="," if base == "csv" else "|",
                                lineterminator="\r\n" if r() < 0.2 else "\n")
            writer.writerow(names)
            for row in rows:
                values = [row.cells[k].text if k in row.cells else
                          ("" if row.extras.get(k) is None else str(row.extras[k])) for k in keys]
                if row.malformed is not None:
                    values = values[:-1] if row.malformed % 2 else values + ["unexpected"]
                    values = [v if v else "x" for v in values]
                writer.writerow(values)
            data = buf.getvalue().encode()
            ext = "." + base
        else:
            typed = base == "parquet_typed"
            columns, fields_ = [], []
            for key, name in zip(keys, names):
                if typed and key in spec.timestamps:
                    typ = pa.timestamp("us", tz="UTC")
                    vals = [row.cells[key].typed for row in rows]
                elif typed and key == spec.amount:
                    as_double = self.typed_amounts % 2 == 1  # decimal(18,2) first, then double
                    self.typed_amounts += 1
                    typ = pa.float64() if as_double else pa.decimal128(18, 2)
                    vals = [None if row.cells[key].typed is None else
                            float(row.cells[key].typed) if as_double else row.cells[key].typed for row in rows]
                elif key in spec.columns:
                    typ = pa.string()
                    vals = [None if row.cells[key].json in (None, _OMIT) else row.cells[key].text for row in rows]
                else:
                    typ = pa.string()
                    vals = [None if row.extras.get(key) is None else str(row.extras[key]) for row in rows]
                columns.append(pa.array(vals, type=typ))
                fields_.append(pa.field(name, typ))
            buf = io.BytesIO()
            pq.write_table(pa.Table.from_arrays(columns, schema=pa.schema(fields_)), buf, compression="snappy")
            data = buf.getvalue()
            ext = ".parquet"
            gz = False
        if gz:
            data = gzip.compress(data, compresslevel=6, mtime=0)
            ext += ".gz"
        path = self.path(dataset, di, ext)
        self.write(path, data)
        self.files += 1
        for row in rows:
            row.file = path
            self.delivered[dataset].append(row)

    # -- unreadable files

    def write_bad_files(self) -> None:
        if not self.with_bad_files or not self.days:
            return
        for i, dataset in enumerate(DATASETS):
            spec = _SPECS[dataset]
            for kind in range(4):
                di = (kind + i) % self.days
                rows = []
                for _ in range(12):
                    if dataset == "events":
                        sem = self.event_sem(0, di)
                    elif dataset == "transactions":
                        sem = self.txn_sem(0, di)
                    else:
                        t = self.time_in_day(di)
                        sem = {"user_id": "u0001", "email": "ada@example.com", "country": "DE", "status": "active",
                               "created_at": t, "updated_at": t}
                    rows.append(sem)
                objs = [{c: (_iso(v) if c in spec.timestamps else _amount_text(v, False) if c == spec.amount else v)
                         for c, v in sem.items()} for sem in rows]
                if kind == 0:  # truncated gzip
                    body = "".join(json.dumps(o) + "\n" for o in objs).encode()
                    blob = gzip.compress(body, compresslevel=6, mtime=0)
                    path, data = self.path(dataset, di, ".ndjson.gz"), blob[: len(blob) * 3 // 5]
                elif kind == 1:  # truncated Parquet
                    table = pa.Table.from_pylist([{k: None if v is None else str(v) for k, v in o.items()}
                                                  for o in objs])
                    buf = io.BytesIO()
                    pq.write_table(table, buf)
                    blob = buf.getvalue()
                    path, data = self.path(dataset, di, ".parquet"), blob[: len(blob) // 2]
                elif kind == 2:  # binary junk in a CSV
                    head = ",".join(spec.columns) + "\n"
                    lines = [",".join("" if o[c] is None else str(o[c]) for c in spec.columns) + "\n" for o in objs]
                    data = (head + "".join(lines[:6])).encode() + b"\x00\x00\xff\xfe\x00binary\x89PNG\r\n\x1a\n\x00" \
                        + "".join(lines[6:]).encode()
                    path = self.path(dataset, di, ".csv")
                else:  # a JSON array cut in the middle
                    text = json.dumps(objs, indent=2)
                    path, data = self.path(dataset, di, ".json"), text[: len(text) // 2].encode()
                self.write(path, data)
                self.files += 1
                self.bad_file_paths.append(path)


def _tally(run: _Run, keep_truth: bool):
    rows, valid, reasons, sets, undated, truth, valid_by, rejected_by = {}, {}, {}, {}, {}, {}, {}, {}
    for dataset in DATASETS:
        spec = _SPECS[dataset]
        delivered = run.delivered[dataset]
        counts: dict[str, int] = {}
        full: dict[tuple[str, ...], int] = {}
        dated: dict[dt.date, int] = {}
        n_undated = 0
        winners: dict[tuple, tuple[int, _Row]] = {}
        losers: list[_Row] = []

        def reject(row, why):
            nonlocal n_undated
            counts[why[0]] = counts.get(why[0], 0) + 1
            full[why] = full.get(why, 0) + 1
            if row.date is None:
                n_undated += 1
            else:
                dated[row.date] = dated.get(row.date, 0) + 1

        for i, row in enumerate(delivered):
            if row.reasons:
                reject(row, row.reasons)
                continue
            held = winners.get(row.key)
            if held is None:
                winners[row.key] = (i, row)
                continue
            if dataset == "events":  # the earliest ts wins, then the earliest delivery
                if row.cells["ts"].value < held[1].cells["ts"].value:
                    losers.append(held[1])
                    winners[row.key] = (i, row)
                else:
                    losers.append(row)
            else:  # the latest delivery wins
                losers.append(held[1])
                winners[row.key] = (i, row)
        for row in losers:
            reject(row, ("duplicate",))
        good = [row for _, row in sorted(winners.values(), key=lambda x: x[0])]
        by_date: dict[dt.date, int] = {}
        for row in good:
            by_date[row.date] = by_date.get(row.date, 0) + 1
        rows[dataset] = len(delivered)
        valid[dataset] = len(good)
        reasons[dataset] = dict(sorted(counts.items()))
        sets[dataset] = dict(sorted(full.items()))
        undated[dataset] = n_undated
        valid_by[dataset] = dict(sorted(by_date.items()))
        rejected_by[dataset] = dict(sorted(dated.items()))
        if keep_truth:
            truth[dataset] = [{**{c: row.cells[c].value for c in spec.columns}, "event_date": row.date}
                              for row in good]
        assert rows[dataset] == valid[dataset] + sum(counts.values())
    return rows, valid, reasons, sets, undated, (truth if keep_truth else None), valid_by, rejected_by


def generate_commerce(write: Callable[[str, bytes], None], *, start: dt.date, days: int, users: int = 50,
                      events_per_day: int = 200, transactions_per_day: int = 40, bad_share: float = 0.05,
                      bad_files: bool = True, seed: int = 7, now: dt.datetime | None = None,
                      keep_truth: bool = False) -> GeneratedCommerce:
    """Write synthetic raw commerce files through ``write(relative_path, data)``, one call per file.

    Valid rows are dated (and files delivered) on the UTC days ``start .. start + days - 1``;
    ingest no earlier than the end of the last day. ``now`` only places the "too far in the
    future" bad timestamps (five days after it); without it they go to 2100. When
    ``bad_share`` > 0, every bad-row variant appears at least once (so small runs still
    cover every rule), plus malformed records in every other text file.
    """
    if days < 0 or users < 0 or events_per_day < 0 or transactions_per_day < 0 or not 0.0 <= bad_share <= 1.0:
        raise ValueError("days, users and per-day counts must be >= 0 and bad_share in [0, 1]")
    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=_UTC)
    future = (now + dt.timedelta(days=5)) if now is not None else _FAR_FUTURE
    tag = hashlib.blake2b(repr((seed, start.isoformat(), days, users, events_per_day, transactions_per_day,
                                bad_share)).encode(), digest_size=4).hexdigest()
    run = _Run(write, start=start, days=days, users=users, events_per_day=events_per_day,
               transactions_per_day=transactions_per_day, bad_share=bad_share, bad_files=bad_files, seed=seed,
               future_ms=int(future.timestamp() * 1000), tag=tag)
    if days:
        run.gen_users()
        run.gen_events()
        run.gen_transactions()
        run.gen_bad_rows()
    for di in range(days):
        for dataset in DATASETS:
            run.write_day(dataset, di)
    run.write_bad_files()
    rows, valid, reasons, sets, undated, truth, valid_by, rejected_by = _tally(run, keep_truth)
    return GeneratedCommerce(
        files=run.files, bad_files=list(run.bad_file_paths), rows=rows, valid_rows=valid, reason_counts=reasons,
        undated=undated, truth=truth, reason_sets=sets, valid_by_date=valid_by, rejected_by_date=rejected_by)
