"""``lake provision``: the S3 bucket of an ``s3://bucket/prefix`` lake, declared once and made so.

Why a command and not a console checklist: a lake's bucket settings (versioning, encryption,
public access, TLS-only access, lifecycle per zone, tags) decide whether data survives a bad
run, leaks, or costs more every month, and they drift when someone fixes things by hand.
Here they are declared in one place, :class:`BucketSpec`, built from the lake root and a few
environment variables when the command runs (never at import), and from the zone layout the
code already has (the domains' tables and landing zones), so a new table lands in a zone the
lifecycle already covers. ``--plan`` says what differs (exit 2, for CI), ``--apply`` makes it
so, idempotently: every setting is read back and compared in a normalized form, and only what
differs is written, so a second apply changes nothing.

Settings read (by :meth:`BucketSpec.from_env`):

* ``LAKE_ROOT``: must be ``s3://bucket[/prefix]``.
* ``AWS_REGION`` / ``AWS_DEFAULT_REGION``: where a missing bucket is created (default us-east-1).
* ``LAKE_SSE``: ``s3`` (default, SSE-S3) or ``kms`` (SSE-KMS with ``LAKE_KMS_KEY_ID`` and an
  S3 bucket key, which cuts the KMS requests of a lake of many small files).
* ``LAKE_QUARANTINE_RETENTION_DAYS``: how long quarantined, rejected and discarded rows and
  files are kept (default 365).
* ``LAKE_BUCKET_TAGS``: ``k=v,k2=v2``, added to ``lake=lake_assets``.
* ``LAKE_REQUIRE_TLS``: ``false`` leaves out the bucket policy denying requests without TLS
  (for an S3-compatible server reached over plain http, where it would refuse every request).
* ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``: a non-AWS endpoint (MinIO, LocalStack, moto).

Settings shared by the whole bucket (versioning, encryption, public access block) are set
exactly; the lifecycle rules, policy statements and tags this module owns are merged into
whatever else the bucket has (another lake under another prefix, another team's rule), which
is left alone: rule IDs carry the lake prefix (``lake_assets[prefix] zone/``), the policy
statement its ``LakeAssets`` Sid. A rule of this lake no longer in the layout is removed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

#: Lifecycle numbers the issue fixes; in code, not flags, so every lake gets the same.
ABORT_MULTIPART_DAYS = 7
ARCHIVE_TRANSITION_DAYS = 90
NONCURRENT_DAYS = 30
SCRATCH_DAYS = 7
DEFAULT_RETENTION_DAYS = 365
BASE_TAGS = (("lake", "lake_assets"),)

#: The bucket policy statement this module owns (its Sid starts with the prefix).
POLICY_SID_PREFIX = "LakeAssets"
TLS_SID = "LakeAssetsDenyInsecureTransport"

PUBLIC_ACCESS_BLOCKS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")

#: What each zone kind keeps, and why (the kind is the zone's lifecycle):
#:  rebuilt      what the pipeline overwrites or deletes as it works: derived data (validated,
#:               silver, gold, metrics...), landing files deleted once ingested (their bytes
#:               are archived), bookkeeping (ingest manifests, claims). Versioning keeps the
#:               old versions as an undo: they go after NONCURRENT_DAYS.
#:  archive      unchanged copies of ingested files, written once, never read by the code:
#:               cold storage (GLACIER) after ARCHIVE_TRANSITION_DAYS.
#:  archive-read an archive the code reads back (orders' archive: validation reads every file,
#:               and it is a catalog table): GLACIER would make those reads fail
#:               (InvalidObjectState), GLACIER_IR keeps them instant, so that is its cold class.
#:  retained     quarantine, rejected, discarded: expire after the retention.
#:  scratch      Spark's staging (``_staging/``), left behind only by a killed run.
KINDS = ("rebuilt", "archive", "archive-read", "retained", "scratch")

#: What the pipeline does in a zone, for the IAM policy:
#:  read-delete  read and delete (raw/: sources write it, ingestion reads then deletes).
#:  write-once   read and write, never delete (archives: the source of truth stays).
#:  read-write   read, write, delete.
ACCESS = ("read-delete", "write-once", "read-write")


class ProvisionError(RuntimeError):
    """The declared state cannot be reached (a bucket in another region, one not ours)."""


class NotAnS3Lake(ValueError):
    """LAKE_ROOT is a local folder: there is no bucket to provision."""


@dataclass(frozen=True, order=True)
class Zone:
    """A folder of the lake (relative to the lake root) with its lifecycle kind and access."""

    prefix: str
    kind: str
    access: str
    source: str = field(default="", compare=False)  # where the code declares it (for people)

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.access not in ACCESS:
            raise ValueError(f"zone {self.prefix!r}: kind {self.kind!r} / access {self.access!r} unknown")


# -- the zone layout, read from the code ------------------------------------------------------------
_TABLE_ZONE_KIND = {"bronze": "rebuilt", "processed": "rebuilt", "analytics": "rebuilt", "silver": "rebuilt", "gold": "rebuilt",
                    "ml": "rebuilt", "curated": "rebuilt",
                    "quarantine": "retained", "rejected": "retained", "discarded": "retained",
                    "archive": "archive-read"}


def declared_zones() -> list[Zone]:
    """Every folder the code reads or writes, as declared where the code declares it.

    Tables come from the registry (each with its catalog zone); landing zones from each
    domain's ingestion :class:`~lake_assets.ingest.router.Zones` (raw, validated, archive,
    rejected files, manifests, per format); the rest from the modules that own them.
    """
    from lake_assets.analytics import tables as analytics_tables
    from lake_assets.definitions import registry
    from lake_assets.domains import DOMAINS
    from lake_assets.domains.orders import zones as orders_zones
    from lake_assets.lake import claims
    from lake_assets.quality import metrics

    out = [Zone(t.location, _TABLE_ZONE_KIND[t.zone], "write-once" if t.zone == "archive" else "read-write",
                f"table {t.qualified_name}") for t in registry()]
    for d in DOMAINS.values():
        if not d.landing:
            continue
        spec = d.landing()
        z = spec.zones
        out.append(Zone(z.raw, "rebuilt", "read-delete", f"{d.name} landing (raw files, deleted once ingested)"))
        for fmt in spec.formats:
            out += [Zone(z.validated_dir(fmt), "rebuilt", "read-write", f"{d.name} validated {fmt}"),
                    Zone(z.archive_dir(fmt), "archive", "write-once", f"{d.name} archive of {fmt} files"),
                    Zone(z.rejected_dir(fmt), "retained", "read-write", f"{d.name} rejected {fmt} files"),
                    Zone(z.manifest_dir(fmt), "rebuilt", "read-write", f"{d.name} ingest manifests {fmt}")]
        out.append(Zone(z.rejected_dir("unknown"), "retained", "read-write", f"{d.name} files of no known format"))
    out += [
        Zone(orders_zones.LANDING, "rebuilt", "read-write", "orders landing sets (extract writes, validate deletes)"),
        Zone(metrics.ZONE, "rebuilt", "read-write", "quality metrics CSVs"),
        Zone(analytics_tables.MODELS_ZONE, "retained", "read-write", "trained models (MLflow's artifact store)"),
        Zone(analytics_tables.REPORTS_ZONE, "rebuilt", "read-write", "the lake report (one HTML file)"),
        Zone(claims.ZONE, "rebuilt", "read-write", "claims of concurrent runs"),
        # lake_assets.spark.SparkStage: with s3a Spark stages its output under the lake root.
        Zone("_staging", "scratch", "read-write", "Spark staging (s3a)"),
    ]
    return out


def compact_zones(zones: Iterable[Zone]) -> tuple[Zone, ...]:
    """The fewest prefixes covering ``zones``: a folder all of whose zones agree is one zone.

    ``gold/dim/dim_users`` ... ``gold/mart/user_ltv`` become ``gold``; ``bronze`` stays split
    (archives, records, manifests and orders' landing live side by side there). A zone nested
    in one of another kind is refused: S3 would apply both rules to it.
    """
    zones = sorted({(z.prefix.strip("/"), z.kind, z.access): z for z in zones}.values())
    by_prefix: dict[str, Zone] = {}
    for z in zones:
        prefix = z.prefix.strip("/")
        if prefix in by_prefix and (by_prefix[prefix].kind, by_prefix[prefix].access) != (z.kind, z.access):
            raise ValueError(f"zone {prefix!r} is declared both {by_prefix[prefix].kind} and {z.kind}")
        by_prefix.setdefault(prefix, z)
    for p, z in by_prefix.items():
        for q, y in by_prefix.items():
            if p != q and p.startswith(q + "/") and (z.kind, z.access) != (y.kind, y.access):
                raise ValueError(f"zone {p!r} ({z.kind}) lies inside zone {q!r} ({y.kind})")

    def uniform(folder: str) -> tuple[str, str] | None:
        kinds = {(z.kind, z.access) for p, z in by_prefix.items() if p == folder or p.startswith(folder + "/")}
        return kinds.pop() if len(kinds) == 1 else None

    out: dict[str, Zone] = {}
    for p, z in by_prefix.items():
        parts = p.split("/")
        # The shallowest ancestor (or itself) whose every zone agrees.
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if uniform(folder):
                if folder not in out:
                    sources = sorted({y.source for q, y in by_prefix.items()
                                      if (q == folder or q.startswith(folder + "/")) and y.source})
                    out[folder] = Zone(folder, z.kind, z.access, "; ".join(sources))
                break
    return tuple(sorted(out.values()))


def zone_layout() -> tuple[Zone, ...]:
    """The lake's zones, compacted: what lifecycle rules and the IAM policy are derived from."""
    return compact_zones(declared_zones())


# -- the desired state ------------------------------------------------------------------------------
def _env_bool(name: str, default: bool) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not true or false")


def _parse_tags(raw: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"LAKE_BUCKET_TAGS: {item!r} is not key=value")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def split_root(root: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``; a local root raises :class:`NotAnS3Lake`."""
    if not root.startswith("s3://"):
        raise NotAnS3Lake(f"LAKE_ROOT={root} is a local folder: lake provision needs an s3://bucket/prefix lake")
    bucket, _, prefix = root[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"LAKE_ROOT {root!r} names no bucket")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class BucketSpec:
    """The declared state of a lake's bucket: one object, built once, read by plan, apply and IAM."""

    bucket: str
    prefix: str  # the lake's key prefix, no slashes at its ends ("" = the whole bucket)
    region: str
    zones: tuple[Zone, ...]
    sse: str = "s3"  # "s3" (SSE-S3) or "kms" (SSE-KMS with kms_key_id and a bucket key)
    kms_key_id: str | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    tags: tuple[tuple[str, str], ...] = BASE_TAGS
    require_tls: bool = True

    def __post_init__(self) -> None:
        if self.sse not in ("s3", "kms"):
            raise ValueError(f"LAKE_SSE={self.sse!r}: use s3 or kms")
        if self.sse == "kms" and not self.kms_key_id:
            raise ValueError("LAKE_SSE=kms needs LAKE_KMS_KEY_ID (a key id or ARN)")
        if self.retention_days < 1:
            raise ValueError(f"LAKE_QUARANTINE_RETENTION_DAYS={self.retention_days}: at least 1 day")

    @classmethod
    def from_env(cls, root: str | None = None, zones: tuple[Zone, ...] | None = None) -> "BucketSpec":
        """The spec for ``root`` (default LAKE_ROOT) and the environment's settings, read now."""
        from lake_assets import settings

        bucket, prefix = split_root(root or settings.lake_root())
        from lake_assets.lake.storage import configured_sse

        sse, kms_key_id = configured_sse()
        retention = os.environ.get("LAKE_QUARANTINE_RETENTION_DAYS") or str(DEFAULT_RETENTION_DAYS)
        try:
            retention_days = int(retention)
        except ValueError as exc:
            raise ValueError(f"LAKE_QUARANTINE_RETENTION_DAYS={retention!r} is not a number of days") from exc
        tags = dict(BASE_TAGS)
        tags.update(_parse_tags(os.environ.get("LAKE_BUCKET_TAGS", "")))
        return cls(
            bucket=bucket, prefix=prefix,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            zones=zone_layout() if zones is None else zones,
            sse=sse, kms_key_id=kms_key_id,
            retention_days=retention_days,
            tags=tuple(sorted(tags.items())),
            require_tls=_env_bool("LAKE_REQUIRE_TLS", True),
        )

    # -- names derived from it --------------------------------------------------------------------
    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key_prefix(self, zone: str = "") -> str:
        """The key prefix of a lake folder (``lake/raw/``); of the lake itself with no zone."""
        parts = [p for p in (self.prefix, zone.strip("/")) if p]
        return "/".join(parts) + "/" if parts else ""

    @property
    def rule_id_prefix(self) -> str:
        """What this lake's lifecycle rule IDs start with: another lake's in the bucket never do."""
        return f"lake_assets[{self.prefix}] "

    @property
    def partition(self) -> str:
        if self.region.startswith("cn-"):
            return "aws-cn"
        if self.region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"

    @property
    def bucket_arn(self) -> str:
        return f"arn:{self.partition}:s3:::{self.bucket}"


def s3_client(spec: BucketSpec):
    """A boto3 S3 client for the spec's region, honouring AWS_ENDPOINT_URL(_S3) as the lake does."""
    import boto3

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client("s3", region_name=spec.region, endpoint_url=endpoint)


def _lifecycle_rules(spec: BucketSpec) -> list[dict]:
    """The lake's lifecycle rules in the API's form: one per zone, one over the whole lake."""
    rules = [{
        "ID": f"{spec.rule_id_prefix}abort-incomplete-multipart-uploads",
        "Filter": {"Prefix": spec.key_prefix()},
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
    }]
    for z in spec.zones:
        body: dict[str, Any] = {}
        if z.kind == "rebuilt":
            body["NoncurrentVersionExpiration"] = {"NoncurrentDays": NONCURRENT_DAYS}
            # A deleted file leaves a delete marker over its expired versions: clear it too.
            body["Expiration"] = {"ExpiredObjectDeleteMarker": True}
        elif z.kind == "archive":
            body["Transitions"] = [{"Days": ARCHIVE_TRANSITION_DAYS, "StorageClass": "GLACIER"}]
        elif z.kind == "archive-read":
            body["Transitions"] = [{"Days": ARCHIVE_TRANSITION_DAYS, "StorageClass": "GLACIER_IR"}]
        elif z.kind == "retained":
            body["Expiration"] = {"Days": spec.retention_days}
            body["NoncurrentVersionExpiration"] = {"NoncurrentDays": NONCURRENT_DAYS}
        elif z.kind == "scratch":
            body["Expiration"] = {"Days": SCRATCH_DAYS}
            body["NoncurrentVersionExpiration"] = {"NoncurrentDays": 1}
        rules.append({"ID": f"{spec.rule_id_prefix}{z.prefix}/ ({z.kind})",
                      "Filter": {"Prefix": spec.key_prefix(z.prefix)}, "Status": "Enabled", **body})
    return rules


def _policy_statements(spec: BucketSpec) -> list[dict]:
    if not spec.require_tls:
        return []
    return [{
        "Sid": TLS_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [spec.bucket_arn, f"{spec.bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]


def _encryption(spec: BucketSpec) -> dict:
    if spec.sse == "kms":
        return {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                                  "KMSMasterKeyID": spec.kms_key_id},
                           "BucketKeyEnabled": True}]}
    return {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


# -- normalized forms (what desired and actual are compared in) -------------------------------------
def _norm_encryption(config: dict | None) -> dict | None:
    rules = (config or {}).get("Rules") or []
    if not rules:
        return None
    default = rules[0].get("ApplyServerSideEncryptionByDefault") or {}
    out = {"SSEAlgorithm": default.get("SSEAlgorithm")}
    if out["SSEAlgorithm"] != "AES256":  # a bucket key means nothing for SSE-S3
        key = default.get("KMSMasterKeyID")
        # A key id and its ARN name one key (S3 may answer either): compared as the id.
        out["KMSMasterKeyID"] = key.split(":key/", 1)[1] if key and ":key/" in key else key
        out["BucketKeyEnabled"] = bool(rules[0].get("BucketKeyEnabled"))
    return out


def _norm_rule(rule: dict) -> dict:
    """A lifecycle rule without what S3 may spell differently (filter form, defaults, order)."""
    flt = rule.get("Filter")
    if flt is None or flt == {}:
        flt = {"Prefix": rule.get("Prefix", "")}
    out: dict[str, Any] = {"Filter": json.loads(json.dumps(flt, sort_keys=True)), "Status": rule.get("Status")}
    exp = {k: v for k, v in (rule.get("Expiration") or {}).items() if v not in (None, False)}
    if exp:
        out["Expiration"] = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in exp.items()}
    if rule.get("Transitions"):
        out["Transitions"] = sorted(({k: v for k, v in t.items() if v is not None} for t in rule["Transitions"]),
                                    key=lambda t: (t.get("Days", 0), t.get("StorageClass", "")))
    nve = {k: v for k, v in (rule.get("NoncurrentVersionExpiration") or {}).items() if v is not None}
    if nve:
        out["NoncurrentVersionExpiration"] = nve
    if rule.get("NoncurrentVersionTransitions"):
        out["NoncurrentVersionTransitions"] = sorted(rule["NoncurrentVersionTransitions"],
                                                     key=lambda t: t.get("NoncurrentDays", 0))
    if rule.get("AbortIncompleteMultipartUpload"):
        out["AbortIncompleteMultipartUpload"] = dict(rule["AbortIncompleteMultipartUpload"])
    return out


def _as_list(value) -> list:
    return sorted(value) if isinstance(value, list) else [value]


def _norm_statement(st: dict) -> dict:
    """A policy statement as IAM means it: one-item lists, ``{"AWS": "*"}`` and case spelled one way."""
    out: dict[str, Any] = {"Effect": st.get("Effect")}
    principal = st.get("Principal")
    if principal == {"AWS": "*"} or principal == {"AWS": ["*"]}:
        principal = "*"
    if isinstance(principal, dict):
        principal = {k: _as_list(v) for k, v in sorted(principal.items())}
    if principal is not None:
        out["Principal"] = principal
    for key in ("Action", "NotAction", "Resource", "NotResource"):
        if key in st:
            out[key] = _as_list(st[key])
    if st.get("Condition"):
        out["Condition"] = {op: {k.lower(): sorted(str(v).lower() if isinstance(v, bool) else str(v)
                                                  for v in _as_list(vals))
                                 for k, vals in sorted(cond.items())}
                            for op, cond in sorted(st["Condition"].items())}
    return out


def _statements_by_sid(policy: dict | None) -> dict[str, dict]:
    out = {}
    statements = (policy or {}).get("Statement") or []
    for i, st in enumerate(statements if isinstance(statements, list) else [statements]):
        out[st.get("Sid") or f"#{i}"] = st
    return out


def desired_state(spec: BucketSpec) -> dict:
    """What the bucket should be, normalized; ``owned`` says which rules and statements are ours."""
    return {
        "bucket": {"name": spec.bucket, "exists": True, "region": spec.region},
        "versioning": "Enabled",
        "encryption": _norm_encryption(_encryption(spec)),
        "public_access_block": {k: True for k in PUBLIC_ACCESS_BLOCKS},
        "policy": {st["Sid"]: _norm_statement(st) for st in _policy_statements(spec)},
        "lifecycle": {r["ID"]: _norm_rule(r) for r in _lifecycle_rules(spec)},
        "tags": dict(spec.tags),
        "owned": {"lifecycle": spec.rule_id_prefix, "policy": POLICY_SID_PREFIX},
    }


# -- reading the bucket -----------------------------------------------------------------------------
_NOT_FOUND = {"NoSuchLifecycleConfiguration", "ServerSideEncryptionConfigurationNotFoundError",
              "NoSuchBucketPolicy", "NoSuchPublicAccessBlockConfiguration", "NoSuchTagSet"}


def _error_code(exc) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _get(client, method: str, bucket: str) -> dict | None:
    """A ``get_bucket_*`` answer, or None when S3 says the setting was never set."""
    from botocore.exceptions import ClientError

    try:
        return getattr(client, method)(Bucket=bucket)
    except ClientError as exc:
        if _error_code(exc) in _NOT_FOUND:
            return None
        raise


def _bucket_region(client, bucket: str) -> str | None:
    """The bucket's region, or None when there is no such bucket; one we cannot see is an error."""
    from botocore.exceptions import ClientError

    try:
        resp = client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if _error_code(exc) in ("404", "NoSuchBucket", "NotFound") or status == 404:
            return None
        if status == 301:  # elsewhere: S3 says where
            return exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        if status == 403:
            raise ProvisionError(f"bucket {bucket} exists but these credentials cannot reach it "
                                 "(another account's, or no s3:ListBucket)") from exc
        raise
    region = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
    if not region:
        region = client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    return region


def _read(client, spec: BucketSpec) -> dict:
    """The bucket's settings as S3 answers them (None for each one never set)."""
    region = _bucket_region(client, spec.bucket)
    raw: dict[str, Any] = {"region": region}
    if region is None:
        return raw
    b = spec.bucket
    raw["versioning"] = client.get_bucket_versioning(Bucket=b)
    raw["encryption"] = _get(client, "get_bucket_encryption", b)
    raw["public_access_block"] = _get(client, "get_public_access_block", b)
    raw["policy"] = _get(client, "get_bucket_policy", b)
    raw["lifecycle"] = _get(client, "get_bucket_lifecycle_configuration", b)
    raw["tags"] = _get(client, "get_bucket_tagging", b)
    return raw


def _normalize(spec: BucketSpec, raw: dict) -> dict:
    if raw["region"] is None:
        return {"bucket": {"name": spec.bucket, "exists": False, "region": None}, "versioning": None,
                "encryption": None, "public_access_block": None, "policy": {}, "lifecycle": {}, "tags": {}}
    pab = (raw["public_access_block"] or {}).get("PublicAccessBlockConfiguration")
    policy = json.loads(raw["policy"]["Policy"]) if raw["policy"] else None
    return {
        "bucket": {"name": spec.bucket, "exists": True, "region": raw["region"]},
        "versioning": raw["versioning"].get("Status"),
        "encryption": _norm_encryption((raw["encryption"] or {}).get("ServerSideEncryptionConfiguration")),
        "public_access_block": {k: bool(pab.get(k)) for k in PUBLIC_ACCESS_BLOCKS} if pab else None,
        "policy": {sid: _norm_statement(st) for sid, st in _statements_by_sid(policy).items()},
        "lifecycle": {r.get("ID") or f"#{i}": _norm_rule(r)
                      for i, r in enumerate((raw["lifecycle"] or {}).get("Rules") or [])},
        "tags": {t["Key"]: t["Value"] for t in (raw["tags"] or {}).get("TagSet") or []},
    }


def actual_state(client, spec: BucketSpec) -> dict:
    """What the bucket is, in the same normalized form as :func:`desired_state` (settings never
    set, and a missing bucket's, are None or empty)."""
    return _normalize(spec, _read(client, spec))


# -- comparing --------------------------------------------------------------------------------------
def _describe_encryption(enc: dict | None) -> str:
    if not enc:
        return "unset"
    if enc["SSEAlgorithm"] == "AES256":
        return "SSE-S3"
    return (f"SSE-KMS key {enc.get('KMSMasterKeyID') or '(aws/s3)'}, bucket key "
            f"{'on' if enc.get('BucketKeyEnabled') else 'off'}") if enc["SSEAlgorithm"] == "aws:kms" \
        else str(enc["SSEAlgorithm"])


def _days(n) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _describe_rule(rule: dict | None) -> str:
    if not rule:
        return "no rule"
    parts = []
    for t in rule.get("Transitions", []):
        parts.append(f"to {t.get('StorageClass')} after {_days(t['Days']) if 'Days' in t else t.get('Date')}")
    exp = rule.get("Expiration", {})
    if "Days" in exp:
        parts.append(f"expire after {_days(exp['Days'])}")
    if exp.get("ExpiredObjectDeleteMarker"):
        parts.append("expired delete markers removed")
    if "NoncurrentVersionExpiration" in rule:
        parts.append(f"old versions expire after {_days(rule['NoncurrentVersionExpiration'].get('NoncurrentDays'))}")
    if "AbortIncompleteMultipartUpload" in rule:
        parts.append("incomplete multipart uploads aborted after "
                     + _days(rule["AbortIncompleteMultipartUpload"].get("DaysAfterInitiation")))
    for other in ("NoncurrentVersionTransitions",):
        if other in rule:
            parts.append(f"{other} {rule[other]}")
    head = f"prefix {rule['Filter'].get('Prefix', rule['Filter'])!r}"
    if rule.get("Status") != "Enabled":
        head += f", {rule.get('Status')}"
    return f"{head}: {', '.join(parts) or 'nothing'}"


def _diff_bucket(d: dict, a: dict) -> list[str]:
    want, have = d["bucket"], a["bucket"]
    if not have["exists"]:
        return [f"bucket {want['name']}: missing (to be created in {want['region']})"]
    if have["region"] != want["region"]:
        return [f"bucket {want['name']}: in {have['region']}, declared in {want['region']} "
                "(a bucket cannot move: set AWS_REGION to its region, or use another bucket)"]
    return []


def _diff_versioning(d: dict, a: dict) -> list[str]:
    if d["versioning"] != a["versioning"]:
        return [f"versioning: want {d['versioning']}, have {a['versioning'] or 'unset'}"]
    return []


def _diff_encryption(d: dict, a: dict) -> list[str]:
    if d["encryption"] != a["encryption"]:
        return [f"default encryption: want {_describe_encryption(d['encryption'])}, "
                f"have {_describe_encryption(a['encryption'])}"]
    return []


def _diff_public_access_block(d: dict, a: dict) -> list[str]:
    have = a["public_access_block"]
    if have == d["public_access_block"]:
        return []
    off = "unset" if have is None else ", ".join(f"{k} off" for k in PUBLIC_ACCESS_BLOCKS if not have.get(k))
    return [f"public access block: want all four on, have {off}"]


def _diff_owned(section: str, d: dict, a: dict, describe) -> list[str]:
    """Our items of a merged section: missing or different ones, and ours no longer declared."""
    lines = []
    for key, want in d[section].items():
        have = a[section].get(key)
        if have != want:
            lines.append(f"{section} {key}: want {describe(want)}; have {describe(have)}")
    owner = d.get("owned", {}).get(section)
    for key in a[section]:
        if owner and key.startswith(owner) and key not in d[section]:
            lines.append(f"{section} {key}: no longer declared (removed on apply)")
    return lines


def _describe_statement(st: dict | None) -> str:
    return json.dumps(st, sort_keys=True) if st else "no statement"


def _diff_policy(d: dict, a: dict) -> list[str]:
    return _diff_owned("policy", d, a, _describe_statement)


def _diff_lifecycle(d: dict, a: dict) -> list[str]:
    return _diff_owned("lifecycle", d, a, _describe_rule)


def _diff_tags(d: dict, a: dict) -> list[str]:
    return [f"tag {k}: want {v!r}, have {a['tags'][k]!r}" if k in a["tags"] else f"tag {k}: want {v!r}, have unset"
            for k, v in d["tags"].items() if a["tags"].get(k) != v]


#: Sections in the order apply writes them: public access blocked before anything else, the TLS
#: policy last (on moto, once it is on, object requests are refused).
_SECTIONS = (("bucket", _diff_bucket), ("public_access_block", _diff_public_access_block),
             ("versioning", _diff_versioning), ("encryption", _diff_encryption),
             ("lifecycle", _diff_lifecycle), ("tags", _diff_tags), ("policy", _diff_policy))


def diff(desired: dict, actual: dict) -> list[str]:
    """One human-readable line per setting that differs (empty: the bucket is as declared)."""
    return [line for _, section in _SECTIONS for line in section(desired, actual)]


# -- applying ---------------------------------------------------------------------------------------
def apply(client, spec: BucketSpec) -> list[str]:
    """Make the bucket as declared; returns what it changed (nothing, the second time).

    Only sections that differ are written. Lifecycle rules, policy statements and tags are
    merged: what is not this lake's stays as S3 returned it.
    """
    desired = desired_state(spec)
    raw = _read(client, spec)
    actual = _normalize(spec, raw)
    changes: list[str] = []
    b = spec.bucket
    for name, section in _SECTIONS:
        lines = section(desired, actual)
        if not lines:
            continue
        if name == "bucket":
            if actual["bucket"]["exists"]:
                raise ProvisionError(lines[0])
            kw = {} if spec.region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": spec.region}}
            client.create_bucket(Bucket=b, **kw)
        elif name == "public_access_block":
            client.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=dict(
                desired["public_access_block"]))
        elif name == "versioning":
            client.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
        elif name == "encryption":
            client.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration=_encryption(spec))
        elif name == "lifecycle":
            ours = _lifecycle_rules(spec)
            kept = [r for r in (raw.get("lifecycle") or {}).get("Rules") or []
                    if not str(r.get("ID", "")).startswith(spec.rule_id_prefix)]
            client.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": kept + ours})
        elif name == "tags":
            tags = {t["Key"]: t["Value"] for t in (raw.get("tags") or {}).get("TagSet") or []}
            tags.update(spec.tags)
            client.put_bucket_tagging(Bucket=b, Tagging={"TagSet": [{"Key": k, "Value": v}
                                                                    for k, v in sorted(tags.items())]})
        elif name == "policy":
            current = json.loads(raw["policy"]["Policy"]) if raw.get("policy") else {}
            kept = [st for sid, st in _statements_by_sid(current).items() if not sid.startswith(POLICY_SID_PREFIX)]
            statements = kept + _policy_statements(spec)
            if statements:
                client.put_bucket_policy(Bucket=b, Policy=json.dumps(
                    {"Version": current.get("Version", "2012-10-17"), "Statement": statements}))
            else:
                client.delete_bucket_policy(Bucket=b)
        changes += lines
    return changes


# -- the least-privilege IAM policy -----------------------------------------------------------------
def iam_policy(spec: BucketSpec) -> dict:
    """An IAM policy document for the pipeline's role, from the zone layout.

    Why per zone: the pipeline never needs to delete an archive (the source of truth) or write
    raw files (sources do; ``lake generate`` is a demo tool run with other credentials), so a bug
    or a stolen key of the pipeline cannot do either. What the code does, zone by zone:

    * read-delete (raw/): ingestion reads each file and deletes it once archived. Arrow's S3
      filesystem re-creates the parent folder marker (``raw/<format>/``, or ``raw/`` itself for
      a stray file, a key ending in ``/``) after deleting the last file of a folder, so
      PutObject is granted on such keys only.
    * write-once (archives): written (a server-side copy is a PutObject), read back (orders'
      validation, the catalog), never deleted.
    * read-write (everything else): written, overwritten, deleted by rebuilds and cleanups.

    Listing is limited to the zones with ``s3:prefix``: S3 also evaluates a HEAD of a missing
    key against it (with the key as the prefix), so "does this exist?" still answers 404.
    Multipart uploads (large files) need AbortMultipartUpload where objects are written.
    """
    arn = spec.bucket_arn

    def objects(zones: list[Zone], suffix: str = "*") -> list[str]:
        return [f"{arn}/{spec.key_prefix(z.prefix)}{suffix}" for z in zones]

    by_access = {a: [z for z in spec.zones if z.access == a] for a in ACCESS}
    statements: list[dict] = [{
        "Sid": "LakeList",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": [arn],
        "Condition": {"StringLike": {"s3:prefix": sorted(
            p for z in spec.zones for p in (spec.key_prefix(z.prefix).rstrip("/"), spec.key_prefix(z.prefix) + "*"))}},
    }]
    if by_access["read-write"]:
        statements.append({"Sid": "LakeReadWrite", "Effect": "Allow",
                           "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject",
                                      "s3:ListMultipartUploadParts", "s3:PutObject"],
                           "Resource": objects(by_access["read-write"])})
    if by_access["write-once"]:
        statements.append({"Sid": "LakeWriteOnce", "Effect": "Allow",
                           "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:ListMultipartUploadParts",
                                      "s3:PutObject"],
                           "Resource": objects(by_access["write-once"])})
    if by_access["read-delete"]:
        statements.append({"Sid": "LakeReadDelete", "Effect": "Allow",
                           "Action": ["s3:DeleteObject", "s3:GetObject"],
                           "Resource": objects(by_access["read-delete"])})
        statements.append({"Sid": "LakeFolderMarkers", "Effect": "Allow", "Action": ["s3:PutObject"],
                           "Resource": objects(by_access["read-delete"], "") +
                                       objects(by_access["read-delete"], "*/")})
    if spec.sse == "kms":
        key = spec.kms_key_id or ""
        key_arn = key if key.startswith("arn:") else f"arn:{spec.partition}:kms:{spec.region}:*:key/{key}"
        statements.append({"Sid": "LakeKms", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                           "Resource": [key_arn],
                           "Condition": {"StringEquals": {"kms:ViaService": f"s3.{spec.region}.amazonaws.com"}}})
    return {"Version": "2012-10-17", "Statement": statements}


# -- the command ------------------------------------------------------------------------------------
EXIT_OK, EXIT_ERROR, EXIT_DIFFERS = 0, 1, 2


def add_provision_command(subparsers) -> argparse.ArgumentParser:
    """Add ``lake provision`` to an argparse subparsers object (``args.func(args)`` runs it)."""
    p = subparsers.add_parser(
        "provision", help="plan or apply the S3 bucket settings of an s3:// lake (exit 2: --plan found differences)",
        description="Compare the lake bucket's settings (versioning, encryption, public access block, TLS-only "
                    "policy, lifecycle per zone, tags) with those declared, and make them so. Settings: "
                    "AWS_REGION, LAKE_SSE (s3|kms), LAKE_KMS_KEY_ID, LAKE_QUARANTINE_RETENTION_DAYS, "
                    "LAKE_BUCKET_TAGS (k=v,...), LAKE_REQUIRE_TLS.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--plan", dest="mode", action="store_const", const="plan",
                      help="print what differs (default); exit 2 when anything does")
    mode.add_argument("--apply", dest="mode", action="store_const", const="apply",
                      help="change what differs (idempotent)")
    mode.add_argument("--iam-policy", dest="mode", action="store_const", const="iam-policy",
                      help="print a least-privilege IAM policy (JSON) for the pipeline's role")
    p.set_defaults(func=cmd_provision, mode="plan")
    return p


def cmd_provision(args: argparse.Namespace) -> int:
    """``lake provision``: plan (exit 2 on differences), apply, or print the IAM policy."""
    from botocore.exceptions import BotoCoreError, ClientError

    mode = getattr(args, "mode", None) or "plan"
    try:
        spec = BucketSpec.from_env()
    except NotAnS3Lake as exc:
        print(f"lake provision: {exc}", file=sys.stderr)
        return EXIT_DIFFERS
    except ValueError as exc:
        print(f"lake provision: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if mode == "iam-policy":
        print(json.dumps(iam_policy(spec), indent=2))
        return EXIT_OK
    client = s3_client(spec)
    try:
        if mode == "apply":
            changes = apply(client, spec)
            for line in changes:
                print(f"changed: {line}")
            print(f"lake provision: {spec.uri}: " + (f"{len(changes)} change(s) applied" if changes
                                                     else "already as declared, nothing changed"))
            return EXIT_OK
        lines = diff(desired_state(spec), actual_state(client, spec))
        for line in lines:
            print(f"differs: {line}")
        print(f"lake provision: {spec.uri}: " + (f"{len(lines)} difference(s); lake provision --apply makes it so"
                                                 if lines else "as declared, no differences"))
        return EXIT_DIFFERS if lines else EXIT_OK
    except (ProvisionError, ClientError, BotoCoreError) as exc:
        print(f"lake provision: {exc}", file=sys.stderr)
        return EXIT_ERROR
