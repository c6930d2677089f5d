"""Synthetic raw input for the logs contract (/work/shared/contracts/logs.md).

Tests and benchmarks need input that exercises every clause of the contract:
all timestamp forms, files that span days, re-deliveries, bad records of every
rule and whole files that must be rejected. Output must also be reproducible
(byte-identical for the same arguments) and cheap to produce at millions of
records. That is why valid access lines are assembled from pre-encoded JSON
fragments rather than ``json.dumps``, and why every file is built and handed to
``write`` on its own instead of holding the whole data set in memory.
"""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lake_assets.domains.logs.fields import ACCESS_REQUIRED, ACCESS_RULES, ERROR_RULES

__all__ = ["GeneratedLogs", "generate_logs"]


@dataclass(frozen=True)
class GeneratedLogs:
    """What a run wrote, so a test can predict the pipeline's counts without re-parsing.

    ``access_records + error_records == records``: records are counted by the
    kind of file that holds them (bad ones included), since that is all a
    malformed record reveals about itself.
    """

    files: int  # raw files written (good + bad)
    records: int  # records in readable files (every record, valid or bad)
    bad_records: int  # of those, records that break at least one contract rule
    bad_files: list[str]  # relative paths of files that must be rejected whole
    access_records: int
    error_records: int
    duplicate_deliveries: int  # access records re-delivered with the same request_id
    #: Of ``bad_records``, those in access files (ndjson / json_gzip).
    bad_access_records: int = 0
    #: Bad records per first rule broken (the ``reason`` column of rejected/data_quality).
    reason_counts: Mapping[str, int] = field(default_factory=dict, hash=False)


# Sizing: own records per file. Late arrivals and re-deliveries add a few percent,
# which keeps every file below ~50k records.
_MAX_FILE_RECORDS = 45_000
_ERROR_SHARE = 0.10
_DUPLICATE_SHARE = 0.01
_LATE_SHARE = 0.03  # valid records delivered with a later day's files
_NEAR_MIDNIGHT_SHARE = 0.06
_GZIP_LEVEL = 1  # speed over size: benchmarks write hundreds of MB

_DAY_MS = 86_400_000
_EPOCH_DATE = dt.date(1970, 1, 1)
_UTC = dt.timezone.utc
#: Far enough ahead to be out of range whatever the ingestion clock says.
_FAR_FUTURE = dt.datetime(2100, 1, 6, 12, 0, tzinfo=_UTC)

# --------------------------------------------------------------------------- pools

_SERVICES = (("web", 30), ("api", 30), ("search", 15), ("checkout", 15), ("auth", 10))
#: billing-worker logs errors only: the contract still wants a daily_activity row for it.
_ERROR_SERVICES = _SERVICES + (("billing-worker", 12),)
_LATENCY_MU = {"web": 3.2, "api": 3.6, "search": 4.0, "checkout": 4.4, "auth": 3.4}
_PATHS = {
    "web": [("/", 0), ("/home", 0), ("/products/", 1), ("/category/shoes", 0),
            ("/static/app.js", 0), ("/static/styles.css", 0), ("/cart", 0), ("/favicon.ico", 0)],
    "api": [("/api/v1/products/", 1), ("/api/v1/products", 0), ("/api/v1/orders/", 1),
            ("/api/v1/orders", 0), ("/api/v2/users/", 1), ("/api/v1/inventory?sku=SKU-", 1),
            ("/health", 0)],
    "search": [("/search?q=running+shoes", 0), ("/search?q=café", 0), ('/search?q="red dress"', 0),
               ("/search/suggest?q=lap", 0), ("/search?page=", 1)],
    "checkout": [("/checkout", 0), ("/checkout/payment", 0), ("/checkout/confirm", 0),
                 ("/checkout/orders/", 1)],
    "auth": [("/login", 0), ("/logout", 0), ("/oauth/token", 0), ("/session/refresh", 0),
             ("/users/", 1)],
}
_METHODS = (("GET", 620), ("POST", 150), ("PUT", 40), ("PATCH", 20), ("DELETE", 30), ("HEAD", 30),
            ("OPTIONS", 20), ("TRACE", 2), ("CONNECT", 1), ("get", 45), ("post", 20), ("Get", 10),
            ("Delete", 3), ("patch", 2))
_STATUSES = ((200, 780), (201, 30), (204, 20), (301, 10), (302, 15), (304, 30), (400, 20), (401, 15),
             (403, 10), (404, 30), (409, 3), (429, 5), (500, 15), (502, 7), (503, 5), (504, 3))
_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "okhttp/4.12.0", "python-requests/2.31.0", "curl/8.5.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)", "ShopApp/5.2 (Android 14; Pixel 8) \"beta\"",
)
_REGIONS = ("eu-west-1", "us-east-1", "ap-south-1", "eu-central-1")
_EXTRAS_STATIC = (
    ',"client":{"os":"ios","version":"17.3","app":{"build":512}}',
    ',"tags":["mobile","beta"]',
    ',"ab_test":{"bucket":3,"enabled":true}',
    ',"referer":"https://www.example.com/home"',
    ',"tls":null',
)
_LEVELS = (("WARN", 380), ("warn", 50), ("Warn", 20), ("ERROR", 360), ("error", 60),
           ("CRITICAL", 110), ("critical", 20))
_MESSAGES = (
    "Upstream timeout after 3000 ms calling inventory-service",
    "Payment provider returned 502 <Bad Gateway> for order 1234 & retry scheduled",
    "Invalid input: field \"email\" must contain '@'",
    "Connection reset by peer",
    "java.lang.NullPointerException at com.shop.cart.Cart.add(Cart.java:42)",
    "Ungültige Eingabe – café ☕ nicht gefunden",
    "Disk usage above 90% on /var/lib/data",
    "Rate limit exceeded for client 203.0.113.9",
    "Stack trace follows:\n  at a()\n  at b()",
    "<script>alert('x')</script> rejected by WAF",
    "Literal ]]> and &amp; survive escaping",
    "Retry budget exhausted (5/5)",
)
_CODES = ("E1001", "E2002", "HTTP-504", "DB_TIMEOUT", "429", "PAY-17", "OOM")
# Timestamp forms: (kind, offset minutes, suffix, with milliseconds). kind: 0 ISO,
# 1 epoch seconds int, 2 epoch seconds float, 3 epoch milliseconds.
_TS_FORMS = (
    ((0, 0, "Z", True), 28), ((0, 0, "Z", False), 14), ((0, 0, "+00:00", True), 3),
    ((0, 120, "+02:00", True), 8), ((0, 120, "+02:00", False), 3), ((0, -300, "-05:00", True), 6),
    ((0, 330, "+05:30", False), 2), ((0, -480, "-08:00", True), 2),
    ((1, 0, "", False), 12), ((2, 0, "", False), 10), ((3, 0, "", False), 12),
)
# Near midnight, offsets that move the local date away from the UTC date.
_TS_LATE_EVENING = (((0, 120, "+02:00", True), 5), ((0, 330, "+05:30", False), 2), ((0, 0, "Z", True), 2),
                    ((3, 0, "", False), 1))
_TS_EARLY_MORNING = (((0, -300, "-05:00", True), 5), ((0, -480, "-08:00", False), 2),
                     ((0, 0, "Z", True), 2), ((2, 0, "", False), 1))


def _table(pairs, size=1000):
    """Weighted choice as a flat list, so picking costs one random() and one index."""
    total = sum(w for _, w in pairs)
    out = []
    for value, weight in pairs:
        out.extend([value] * max(1, round(weight * size / total)))
    return out


def _jstr(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sorted_reasons(reasons, order):
    """Reasons in the contract's order, so the first one is the ``reason`` column."""
    assert all(r in order for r in reasons), reasons
    return tuple(sorted(set(reasons), key=order.index))


# --------------------------------------------------------------------------- records


class _Records:
    """Record factory: one rng, pre-encoded pools, running request ids."""

    def __init__(self, rng: random.Random, tag: str, future_ms: int):
        self.rng = rng
        self.tag = tag
        self.seq = 0
        self.future_ms = future_ms
        self._dates: dict[int, str] = {}
        r = rng
        self.services = _table([((s, _jstr(s)), w) for s, w in _SERVICES])
        self.error_services = _table(_ERROR_SERVICES)
        self.hosts = {s: [f"{s}-{i}.prod.internal" for i in range(1, 5)] for s, _ in _ERROR_SERVICES}
        self.host_kv = {s: [f',"host":{_jstr(h)}' for h in hs] for s, hs in self.hosts.items()}
        self.paths = {s: [(_jstr(p)[:-1], n) for p, n in ps] for s, ps in _PATHS.items()}
        self.methods = _table([(_jstr(m), w) for m, w in _METHODS], 10_000)
        self.statuses = _table([((c, str(c), f'"{c}"'), w) for c, w in _STATUSES], 10_000)
        ips = [f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}" for _ in range(2000)]
        ips += [f"203.0.113.{r.randrange(1, 255)}" for _ in range(500)]
        ips += [f"2001:db8::{r.randrange(1, 0xFFFF):x}" for _ in range(300)]
        self.ip_kv = [f',"client_ip":"{ip}"' for ip in ips]
        self.user_kv = [f',"user_id":"u{n:06d}"' for n in r.sample(range(1_000_000), 20_000)]
        self.ua_kv = [f',"user_agent":{_jstr(ua)}' for ua in _USER_AGENTS]
        self.ts_forms = _table(_TS_FORMS)
        self.ts_evening = _table(_TS_LATE_EVENING)
        self.ts_morning = _table(_TS_EARLY_MORNING)
        self.levels = _table(_LEVELS)
        self.messages = [_xml_escape(m) for m in _MESSAGES]
        self.bad_access_variants = _interleave(_bad_access_families())
        self.bad_error_variants = _interleave(_bad_error_families())
        self.bad_access_i = 0
        self.bad_error_i = 0
        #: One valid access record as compact JSON, for a day starting at ``day_ms``.
        self.access_line: Callable[[int], str] = self._make_access_line()

    # -- time

    def date(self, epoch_day: int) -> str:
        text = self._dates.get(epoch_day)
        if text is None:
            text = self._dates[epoch_day] = (_EPOCH_DATE + dt.timedelta(days=epoch_day)).isoformat()
        return text

    def iso(self, t_ms: int, off_min: int, suffix: str, frac: bool) -> str:
        day, sod = divmod(t_ms + off_min * 60_000, _DAY_MS)
        h, rem = divmod(sod, 3_600_000)
        m, rem = divmod(rem, 60_000)
        s, ms = divmod(rem, 1000)
        if frac:
            return f"{self.date(day)}T{h:02d}:{m:02d}:{s:02d}.{ms:03d}{suffix}"
        return f"{self.date(day)}T{h:02d}:{m:02d}:{s:02d}{suffix}"

    def event_time(self, day_ms: int) -> tuple[int, tuple]:
        """A UTC instant inside the day, and a rendering form (offsets favoured near midnight)."""
        r = self.rng.random
        x = r()
        if x < _NEAR_MIDNIGHT_SHARE / 2:
            t = day_ms + int(r() * 5_400_000)
            forms = self.ts_morning
        elif x < _NEAR_MIDNIGHT_SHARE:
            t = day_ms + _DAY_MS - 1 - int(r() * 5_400_000)
            forms = self.ts_evening
        else:
            t = day_ms + int(r() * _DAY_MS)
            forms = self.ts_forms
        return t, forms[int(r() * len(forms))]

    def render(self, t_ms: int, form: tuple) -> tuple[str, bool]:
        """Timestamp text and whether it is a string (JSON needs quotes) or a number."""
        kind, off, suffix, frac = form
        if kind == 0:
            return self.iso(t_ms, off, suffix, frac), True
        if kind == 1:
            return str(t_ms // 1000), False
        if kind == 2:
            return repr(t_ms / 1000), False
        return str(t_ms), False

    # -- access

    def _make_access_line(self) -> Callable[[int], str]:
        """The hot path, as a closure over pre-encoded pools: no json.dumps, no attribute lookups.

        Lognormal bytes and latencies come from pre-drawn tables, because drawing
        gaussians per record was a third of the run time.
        """
        rng = self.rng
        r = rng.random
        getrandbits = rng.getrandbits
        event_time, render, tag = self.event_time, self.render, self.tag
        normals = [rng.gauss(0.0, 1.0) for _ in range(8192)]
        sent_pool = [f',"bytes_sent":{int(math.exp(8.0 + 1.1 * z))}' for z in normals]
        per_service = {
            svc: (svc_json, self.paths[svc], self.host_kv[svc],
                  [math.exp(_LATENCY_MU[svc] + 0.7 * z) for z in normals[::-1]])
            for svc, svc_json in dict.fromkeys(self.services)
        }
        services = [per_service[svc] for svc, _ in self.services]  # keeps the weights
        n_services = len(services)
        methods, n_methods = self.methods, len(self.methods)
        statuses, n_statuses = self.statuses, len(self.statuses)
        ip_kv, n_ip = self.ip_kv, len(self.ip_kv)
        user_kv, n_user = self.user_kv, len(self.user_kv)
        ua_kv, n_ua = self.ua_kv, len(self.ua_kv)
        n_normals = len(normals)
        regions, n_regions = _REGIONS, len(_REGIONS)
        extras, n_extras = _EXTRAS_STATIC, len(_EXTRAS_STATIC)
        gen = self

        def access_line(day_ms: int) -> str:
            t, form = event_time(day_ms)
            ts, quoted = render(t, form)
            if quoted:
                ts = f'"{ts}"'
            svc_json, paths, hosts, lats = services[int(r() * n_services)]
            prefix, needs_id = paths[int(r() * len(paths))]
            path = f'{prefix}{int(r() * 99_999) + 1}"' if needs_id else prefix + '"'
            method = methods[int(r() * n_methods)]
            code, st_int, st_str = statuses[int(r() * n_statuses)]
            status = st_str if r() < 0.06 else st_int

            x = r()
            host = "" if x < 0.03 else ',"host":null' if x < 0.05 else hosts[int(r() * 4)]
            x = r()
            ip = "" if x < 0.01 else ',"client_ip":null' if x < 0.03 else ip_kv[int(r() * n_ip)]
            x = r()
            user = "" if x < 0.03 else ',"user_id":null' if x < 0.28 else user_kv[int(r() * n_user)]
            x = r()
            ua = "" if x < 0.02 else ',"user_agent":null' if x < 0.05 else ua_kv[int(r() * n_ua)]

            x = r()
            if x < 0.01:
                sent = ""
            elif x < 0.03:
                sent = ',"bytes_sent":null'
            elif code == 204 or code == 304:
                sent = ',"bytes_sent":0'
            else:
                sent = sent_pool[int(r() * n_normals)]
            x = r()
            if x < 0.02:
                lat = ',"latency_ms":null'
            else:
                ms = lats[int(r() * n_normals)]
                if code >= 500:
                    ms *= 3.0
                lat = f',"latency_ms":{int(ms)}' if x > 0.9 else f',"latency_ms":{ms:.3f}'

            x = r()
            if x < 0.12:
                if x < 0.05:
                    extra = f',"trace_id":"{getrandbits(64):016x}"'
                    if x < 0.02:
                        extra += f',"region":"{regions[int(r() * n_regions)]}"'
                elif x < 0.08:
                    extra = f',"region":"{regions[int(r() * n_regions)]}"'
                else:
                    extra = extras[int(r() * n_extras)]
            else:
                extra = ""

            gen.seq = seq = gen.seq + 1
            return (f'{{"timestamp":{ts},"service":{svc_json},"request_id":"{tag}-{seq:08x}",'
                    f'"method":{method},"path":{path},"status":{status}{host}{ip}{user}{ua}{sent}{lat}{extra}}}')

        return access_line

    def bad_access(self, day_ms: int, allow_text: bool) -> tuple[str, tuple[str, ...]]:
        """Next bad access record in the rule cycle; ``allow_text`` says non-JSON lines may appear."""
        variant = self.bad_access_variants[self.bad_access_i % len(self.bad_access_variants)]
        self.bad_access_i += 1
        record = json.loads(self.access_line(day_ms))
        value, reasons = variant(self, record, day_ms)
        if isinstance(value, _JsonValue):
            value = value.value
        elif isinstance(value, str):
            if not allow_text:  # inside a JSON array every element must still be JSON
                value = ["not", "an", "object"]
            else:
                return value, _sorted_reasons(reasons, ACCESS_RULES)
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return text, _sorted_reasons(reasons, ACCESS_RULES)

    # -- errors

    def error_fields(self, day_ms: int) -> dict[str, str | None]:
        r = self.rng.random
        t, form = self.event_time(day_ms)
        if form[0] != 0 and r() < 0.5:  # fewer epoch numbers in XML than in JSON
            form = (0, 0, "Z", True)
        svc = self.error_services[int(r() * len(self.error_services))]
        hosts = self.hosts[svc]
        message = "" if r() < 0.05 else self.messages[int(r() * len(self.messages))]
        rid = None
        if self.seq and r() < 0.6:
            rid = f"{self.tag}-{int(r() * self.seq) + 1:08x}"
        return {
            "timestamp": self.render(t, form)[0],
            "service": svc,
            "level": self.levels[int(r() * len(self.levels))],
            "message": message,
            "host": hosts[int(r() * len(hosts))] if r() < 0.9 else None,
            "code": _CODES[int(r() * len(_CODES))] if r() < 0.7 else None,
            "request_id": rid,
        }

    def error_xml(self, fields: Mapping[str, str | None], tag: str = "error") -> str:
        """Serialise pre-escaped fields; None is an absent element, "" an empty one."""
        r = self.rng.random
        items = [(k, v) for k, v in fields.items() if v is not None]
        if r() < 0.05:
            self.rng.shuffle(items)  # element order carries no meaning
        parts = []
        for k, v in items:
            if v == "":
                parts.append(f"<{k}/>" if r() < 0.6 else f"<{k}></{k}>")
            else:
                parts.append(f"<{k}>{v}</{k}>")
        return f"  <{tag}>{''.join(parts)}</{tag}>"

    def error_record(self, day_ms: int) -> str:
        return self.error_xml(self.error_fields(day_ms))

    def bad_error(self, day_ms: int) -> tuple[str, tuple[str, ...]]:
        variant = self.bad_error_variants[self.bad_error_i % len(self.bad_error_variants)]
        self.bad_error_i += 1
        fields = self.error_fields(day_ms)
        tag, reasons = variant(self, fields, day_ms)
        return self.error_xml(fields, tag), _sorted_reasons(reasons, ERROR_RULES)


# --------------------------------------------------------------------------- bad-record variants
# Each variant mutates a valid record and names the rules it then breaks.


def _interleave(families):
    """Round-robin over rule families, so even a handful of bad records covers them all."""
    out = []
    for i in range(max(len(f) for f in families)):
        out.extend(f[i] for f in families if i < len(f))
    return out


def _naive_iso(gen: _Records, day_ms: int) -> str:
    return f"{gen.date(day_ms // _DAY_MS)}T12:00:00"


def _future_iso(gen: _Records) -> str:
    return gen.iso(gen.future_ms, 0, "Z", False)


class _JsonValue:
    """Marks a Python str that must be dumped as a JSON string, not written as raw text."""

    def __init__(self, value):
        self.value = value


def _bad_access_families():
    def v(reasons, fn):
        def variant(gen, rec, day_ms):
            return fn(gen, rec, day_ms), reasons
        return variant

    def drop(*names):
        def fn(gen, rec, day_ms):
            for n in names:
                rec.pop(n, None)
            return rec
        return fn

    def setf(**changes):
        return lambda gen, rec, day_ms: {**rec, **changes}

    # A str is written as raw text (not JSON at all); anything else is dumped as JSON.
    malformed = [
        v(("malformed_record",), lambda g, rec, d: f'{rec["method"]} {rec["path"]} HTTP/1.1 {rec["status"]}'),
        v(("malformed_record",), lambda g, rec, d: [rec["timestamp"], rec["service"], rec["path"]]),
        v(("malformed_record",), lambda g, rec, d: 404),
        v(("malformed_record",), lambda g, rec, d: json.dumps(rec)[: len(json.dumps(rec)) // 2]),
        v(("malformed_record",), lambda g, rec, d: _JsonValue("GET /health")),
        v(("malformed_record",), lambda g, rec, d: None),
    ]
    missing = []
    for name in ACCESS_REQUIRED:
        rule = (f"missing_field:{name}",)
        missing += [v(rule, drop(name)), v(rule, setf(**{name: None})), v(rule, setf(**{name: ""}))]
    invalid_ts = [
        v(("invalid_timestamp",), setf(timestamp="yesterday")),
        v(("invalid_timestamp",), setf(timestamp="2024-13-45T00:00:00Z")),
        v(("invalid_timestamp",), lambda g, rec, d: {**rec, "timestamp": _naive_iso(g, d)}),
        v(("invalid_timestamp",), lambda g, rec, d: {**rec, "timestamp": _naive_iso(g, d) + ".250"}),
    ]
    out_of_range = [
        v(("timestamp_out_of_range",), setf(timestamp="2019-06-30T12:00:00Z")),
        v(("timestamp_out_of_range",), lambda g, rec, d: {**rec, "timestamp": _future_iso(g)}),
        v(("timestamp_out_of_range",), setf(timestamp=1262304000)),  # 2010-01-01, epoch seconds
        v(("timestamp_out_of_range",), lambda g, rec, d: {**rec, "timestamp": g.future_ms}),
        v(("timestamp_out_of_range",), setf(timestamp=1561896000000)),  # 2019, epoch ms
    ]
    status = [
        v(("invalid_status",), setf(status=700)),
        v(("invalid_status",), setf(status="abc")),
        v(("invalid_status",), setf(status=99)),
        v(("invalid_status",), setf(status="600")),
    ]
    method = [
        v(("invalid_method",), setf(method="FETCH")),
        v(("invalid_method",), setf(method="purge")),
        v(("invalid_method",), setf(method="GETT")),
    ]
    negative = [
        v(("negative_value:bytes_sent",), setf(bytes_sent=-1)),
        v(("negative_value:latency_ms",), setf(latency_ms=-3.5)),
        v(("negative_value:bytes_sent",), setf(bytes_sent=-1024)),
    ]

    def no_service_700(g, rec, d):
        rec.pop("service", None)
        return {**rec, "status": 700}

    combos = [
        v(("missing_field:service", "invalid_status"), no_service_700),
        v(("invalid_timestamp", "negative_value:bytes_sent"), setf(timestamp="yesterday", bytes_sent=-1)),
        v(("timestamp_out_of_range", "invalid_method"), setf(timestamp="2019-06-30T12:00:00Z", method="FETCH")),
        v(("invalid_status", "invalid_method", "negative_value:latency_ms"),
          setf(status="abc", method="fetch", latency_ms=-1.0)),
        v(("missing_field:request_id", "missing_field:path"), setf(request_id=None, path="")),
        v(("negative_value:bytes_sent", "negative_value:latency_ms"), setf(bytes_sent=-5, latency_ms=-0.5)),
    ]
    return [malformed, missing, invalid_ts, out_of_range, status, method, negative, combos]


def _bad_error_families():
    def v(reasons, tag="error", **changes):
        def variant(gen, fields, day_ms):
            for k, val in changes.items():
                if callable(val):
                    val = val(gen, day_ms)
                fields[k] = val
            return tag, reasons
        return variant

    malformed = [v(("malformed_record",), tag="warning"), v(("malformed_record",), tag="notice")]
    missing = [
        v(("missing_field:timestamp",), timestamp=None),
        v(("missing_field:service",), service=""),
        v(("missing_field:level",), level=None),
        v(("missing_field:message",), message=None),
        v(("missing_field:timestamp",), timestamp=""),
        v(("missing_field:service",), service=None),
        v(("missing_field:level",), level=""),
    ]
    invalid_ts = [
        v(("invalid_timestamp",), timestamp="yesterday"),
        v(("invalid_timestamp",), timestamp="2024-13-45T00:00:00Z"),
        v(("invalid_timestamp",), timestamp=_naive_iso),
    ]
    out_of_range = [
        v(("timestamp_out_of_range",), timestamp="2019-06-30T12:00:00Z"),
        v(("timestamp_out_of_range",), timestamp=lambda g, d: _future_iso(g)),
        v(("timestamp_out_of_range",), timestamp="1262304000"),
    ]
    level = [
        v(("invalid_level",), level="DEBUG"),
        v(("invalid_level",), level="info"),
        v(("invalid_level",), level="FATAL"),
    ]
    combos = [
        v(("missing_field:service", "invalid_level"), service=None, level="DEBUG"),
        v(("invalid_timestamp", "invalid_level"), timestamp="yesterday", level="trace"),
        v(("missing_field:timestamp", "missing_field:message"), timestamp=None, message=None),
    ]
    return [malformed, missing, invalid_ts, out_of_range, level, combos]


# --------------------------------------------------------------------------- bad files


def _bad_truncated_gzip(gen: _Records, day_ms: int) -> tuple[str, bytes]:
    body = "".join(gen.access_line(day_ms) + "\n" for _ in range(400)).encode()
    blob = gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)
    return "raw/json_gzip/api-{date}-bad{i:02d}.json.gz", blob[: len(blob) // 2]


def _bad_not_well_formed_xml(gen: _Records, day_ms: int) -> tuple[str, bytes]:
    good = "\n".join(gen.error_record(day_ms) for _ in range(20))
    text = (f'<?xml version="1.0" encoding="UTF-8"?>\n<errors>\n{good}\n'
            "  <error><service>web</service><level>ERROR</error>\n")  # mismatched tag, no </errors>
    return "raw/xml_errors/errors-{date}-bad{i:02d}.xml", text.encode()


def _bad_utf8_ndjson(gen: _Records, day_ms: int) -> tuple[str, bytes]:
    good = "".join(gen.access_line(day_ms) + "\n" for _ in range(50)).encode()
    rec = json.loads(gen.access_line(day_ms))
    rec["user_agent"] = "@@UA@@"
    broken = json.dumps(rec).encode().replace(b"@@UA@@", b"Mozilla/5.0 \xff\xfe caf\xe9")
    return "raw/ndjson/web-{date}-bad{i:02d}.ndjson", good + broken + b"\n" + good


def _bad_billion_laughs(gen: _Records, day_ms: int) -> tuple[str, bytes]:
    entities = ['  <!ENTITY lol0 "lol">']
    entities += [f'  <!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)]
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE errors [\n' + "\n".join(entities) + "\n]>\n"
            "<errors>\n" + gen.error_record(day_ms) + "\n"
            "  <error><timestamp>2024-03-01T00:00:00Z</timestamp><service>web</service>"
            "<level>ERROR</level><message>&lol9;</message></error>\n</errors>\n")
    return "raw/xml_errors/errors-{date}-bad{i:02d}.xml", text.encode()


def _bad_external_entity(gen: _Records, day_ms: int) -> tuple[str, bytes]:
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE errors [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
            "<errors>\n" + gen.error_record(day_ms) + "\n"
            "  <error><timestamp>2024-03-01T00:00:00Z</timestamp><service>web</service>"
            "<level>ERROR</level><message>&e;</message></error>\n</errors>\n")
    return "raw/xml_errors/errors-{date}-bad{i:02d}.xml", text.encode()


_BAD_FILE_MAKERS = (_bad_truncated_gzip, _bad_not_well_formed_xml, _bad_utf8_ndjson,
                    _bad_billion_laughs, _bad_external_entity)


# --------------------------------------------------------------------------- driver


def _split(rng: random.Random, n: int, min_parts: int) -> list[int]:
    """Uneven file sizes (±20 %) that never exceed _MAX_FILE_RECORDS."""
    if n <= 0:
        return []
    k = min(n, max(min_parts, math.ceil(n * 1.4 / _MAX_FILE_RECORDS)))
    base, rest = divmod(n, k)
    sizes = [base + (i < rest) for i in range(k)]
    jitter = base // 5
    if jitter:
        for i in range(k - 1):
            d = rng.randint(-jitter, jitter)
            sizes[i] += d
            sizes[i + 1] -= d
    return sizes


def _scatter(rng: random.Random, items: list[str], extra: list[str]) -> list[str]:
    """Mix late and re-delivered records into a file at random places (cheaper than a shuffle)."""
    if not extra:
        return items
    r = rng.random
    n = len(items)
    cuts = sorted(int(r() * (n + 1)) for _ in extra)
    out: list[str] = []
    prev = 0
    for cut, item in zip(cuts, extra):
        out += items[prev:cut]
        out.append(item)
        prev = cut
    out += items[prev:]
    return out


class _Tally:
    def __init__(self):
        self.files = 0
        self.records = 0
        self.bad = 0
        self.bad_access = 0
        self.access = 0
        self.errors = 0
        self.duplicates = 0
        self.reasons: dict[str, int] = {}

    def bad_record(self, reasons: tuple[str, ...], access: bool) -> None:
        self.bad += 1
        self.bad_access += access
        self.reasons[reasons[0]] = self.reasons.get(reasons[0], 0) + 1


def generate_logs(write: Callable[[str, bytes], None], *, start: dt.date, days: int,
                  records_per_day: int, bad_share: float = 0.01, bad_files: int = 3,
                  seed: int = 7, now: dt.datetime | None = None) -> GeneratedLogs:
    """Write synthetic raw log files through ``write(relative_path, data)``, one call per file.

    Valid events fall on the UTC days ``start .. start + days - 1``; keep ``start`` on or
    after the lake's start date (2024-01-01 by default) and ingest no later than a day
    after the last day, or the pipeline will rightly call them out of range. ``now`` only
    places the "too far in the future" bad timestamps (five days after it); without it
    they go to 2100 so they stay out of range whatever the ingestion clock says.
    """
    if days < 0 or records_per_day < 0 or bad_files < 0 or not 0.0 <= bad_share <= 1.0:
        raise ValueError("days, records_per_day and bad_files must be >= 0 and bad_share in [0, 1]")
    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=_UTC)
    future = (now + dt.timedelta(days=5)) if now is not None else _FAR_FUTURE
    # request ids differ between runs with different arguments, repeat with the same ones.
    tag = hashlib.blake2b(repr((seed, start.isoformat(), days, records_per_day, bad_share, bad_files))
                          .encode(), digest_size=4).hexdigest()
    rng = random.Random(seed)
    r = rng.random
    gen = _Records(rng, tag, int(future.timestamp() * 1000))
    tally = _Tally()
    first_day = (start - _EPOCH_DATE).days

    def emit(path: str, data: bytes, n_records: int, access: bool) -> None:
        write(path, data)
        tally.files += 1
        tally.records += n_records
        if access:
            tally.access += n_records
        else:
            tally.errors += n_records

    n_errors = round(records_per_day * _ERROR_SHARE)
    n_access = records_per_day - n_errors
    late_access: dict[int, list[str]] = {}
    late_errors: dict[int, list[str]] = {}
    redeliver: list[str] = []
    access_bad_acc = error_bad_acc = 0.5  # Bresenham: spreads bad records evenly at bad_share
    gz_files = 0
    file_no = 0

    for di in range(days):
        day_ms = (first_day + di) * _DAY_MS
        date = gen.date(first_day + di)
        last_day = di == days - 1
        k = 0  # per-day file number

        # ---- access files: ndjson and json_gzip
        sizes = _split(rng, n_access, 2)
        incoming = late_access.pop(di, [])
        for pi, size in enumerate(sizes):
            last_file = last_day and pi == len(sizes) - 1
            if file_no % 2 == 0:
                fmt = "ndjson"
            else:
                fmt = "gz_array" if gz_files % 2 else "gz_ndjson"
                gz_files += 1
            file_no += 1
            lines: list[str] = []
            next_redeliver: list[str] = []
            for _ in range(size):
                access_bad_acc += bad_share
                if access_bad_acc >= 1.0:
                    access_bad_acc -= 1.0
                    text, reasons = gen.bad_access(day_ms, allow_text=fmt != "gz_array")
                    tally.bad_record(reasons, access=True)
                    lines.append(text)
                    continue
                text = gen.access_line(day_ms)
                x = r()
                if x < _LATE_SHARE and not last_day:
                    target = min(di + (1 if x < _LATE_SHARE * 0.8 else 2), days - 1)
                    late_access.setdefault(target, []).append(text)
                    continue
                lines.append(text)
                if x > 1.0 - _DUPLICATE_SHARE and not last_file:
                    next_redeliver.append(text)
            extra = incoming[pi::len(sizes)] + redeliver
            tally.duplicates += len(redeliver)
            redeliver = next_redeliver
            lines = _scatter(rng, lines, extra)
            n = len(lines)
            if fmt == "ndjson":
                for _ in range(int(r() * 3)):  # blank lines are legal and ignored
                    lines.insert(int(r() * (len(lines) + 1)), "")
                data = ("\n".join(lines) + "\n").encode()
                emit(f"raw/ndjson/web-{date}-{k:03d}.ndjson", data, n, True)
            else:
                text = ("[\n" + ",\n".join(lines) + "\n]\n") if fmt == "gz_array" else "\n".join(lines) + "\n"
                data = gzip.compress(text.encode(), compresslevel=_GZIP_LEVEL, mtime=0)
                emit(f"raw/json_gzip/api-{date}-{k:03d}.json.gz", data, n, True)
            k += 1

        # ---- error files: xml_errors
        sizes = _split(rng, n_errors, 2)
        incoming = late_errors.pop(di, [])
        for pi, size in enumerate(sizes):
            elements: list[str] = []
            for _ in range(size):
                error_bad_acc += bad_share
                if error_bad_acc >= 1.0:
                    error_bad_acc -= 1.0
                    text, reasons = gen.bad_error(day_ms)
                    tally.bad_record(reasons, access=False)
                    elements.append(text)
                    continue
                text = gen.error_record(day_ms)
                x = r()
                if x < _LATE_SHARE and not last_day:
                    target = min(di + (1 if x < _LATE_SHARE * 0.8 else 2), days - 1)
                    late_errors.setdefault(target, []).append(text)
                    continue
                elements.append(text)
            elements = _scatter(rng, elements, incoming[pi::len(sizes)])
            head = '<?xml version="1.0" encoding="UTF-8"?>\n' if r() < 0.8 else ""
            data = f"{head}<errors>\n" + "\n".join(elements) + ("\n</errors>\n" if elements else "</errors>\n")
            emit(f"raw/xml_errors/errors-{date}-{k:03d}.xml", data.encode(), len(elements), False)
            k += 1

    # ---- whole files that must be rejected, appended after the good ones
    rejected: list[str] = []
    for i in range(bad_files):
        di = i % days if days else 0
        template, data = _BAD_FILE_MAKERS[i % len(_BAD_FILE_MAKERS)](gen, (first_day + di) * _DAY_MS)
        path = template.format(date=gen.date(first_day + di), i=i)
        write(path, data)
        tally.files += 1
        rejected.append(path)

    return GeneratedLogs(
        files=tally.files,
        records=tally.records,
        bad_records=tally.bad,
        bad_files=rejected,
        access_records=tally.access,
        error_records=tally.errors,
        duplicate_deliveries=tally.duplicates,
        bad_access_records=tally.bad_access,
        reason_counts=dict(sorted(tally.reasons.items())),
    )
