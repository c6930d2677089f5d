"""``lake provision`` against moto's S3 server: every setting is read back with boto3.

The command is run through its own argparse parser (``add_provision_command`` on a fresh
``ArgumentParser``), as ``lake`` runs it. moto ignores policy conditions: once the TLS-only
policy is on a moto bucket it refuses every object request, so no test makes an object
request on a bucket carrying it (bucket-level requests still work there, and are all that
plan and apply make).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import uuid

import pytest
from botocore.exceptions import ClientError

from lake_assets.provision import (
    ABORT_MULTIPART_DAYS,
    ARCHIVE_TRANSITION_DAYS,
    NONCURRENT_DAYS,
    TLS_SID,
    BucketSpec,
    add_provision_command,
    zone_layout,
)

_SETTINGS = ("LAKE_SSE", "LAKE_KMS_KEY_ID", "LAKE_QUARANTINE_RETENTION_DAYS", "LAKE_BUCKET_TAGS", "LAKE_REQUIRE_TLS")


def provision(*argv: str) -> int:
    """``lake provision ...`` through the command's own parser; returns its exit code."""
    parser = argparse.ArgumentParser(prog="lake")
    add_provision_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["provision", *argv])
    return args.func(args)


@pytest.fixture(autouse=True)
def _no_provision_settings(monkeypatch):
    """Each test starts from the defaults, whatever the shell running pytest exports."""
    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def missing_root(moto_server, monkeypatch) -> str:
    """LAKE_ROOT on a bucket nobody has created yet (lake under a prefix, as in production)."""
    root = f"s3://lake-{uuid.uuid4().hex[:12]}/lake"
    monkeypatch.setenv("LAKE_ROOT", root)
    return root


def _bucket(root: str) -> str:
    return root[len("s3://"):].split("/", 1)[0]


def _differs(out: str) -> list[str]:
    return [line[len("differs: "):] for line in out.splitlines() if line.startswith("differs: ")]


def _rules(s3_client, bucket: str) -> dict[str, dict]:
    """The bucket's lifecycle rules by key prefix, read with boto3."""
    return {r["Filter"]["Prefix"]: r for r in s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}


def _settings(s3_client, bucket: str) -> dict:
    """Every setting provision manages, as S3 returns it (to compare before and after)."""
    out = {}
    for method in ("get_bucket_versioning", "get_bucket_encryption", "get_public_access_block",
                   "get_bucket_lifecycle_configuration", "get_bucket_tagging", "get_bucket_policy"):
        resp = getattr(s3_client, method)(Bucket=bucket)
        resp.pop("ResponseMetadata")
        out[method] = resp
    return out


def test_plan_on_a_missing_bucket_lists_everything_and_changes_nothing(missing_root, s3_client, capsys):
    """A plan names the missing bucket and every setting, one line each, exits 2 for CI, and creates nothing."""
    assert provision("--plan") == 2
    lines = _differs(capsys.readouterr().out)
    bucket = _bucket(missing_root)
    assert lines[0] == f"bucket {bucket}: missing (to be created in us-east-1)"
    assert any(line.startswith("versioning: want Enabled, have unset") for line in lines)
    assert "default encryption: want SSE-S3, have unset" in lines
    assert "public access block: want all four on, have unset" in lines
    assert any(line.startswith(f"policy {TLS_SID}: want ") for line in lines)
    assert "tag lake: want 'lake_assets', have unset" in lines
    zones = zone_layout()
    lifecycle = [line for line in lines if line.startswith("lifecycle ")]
    assert len(lifecycle) == len(zones) + 1  # one rule per zone, and the multipart one
    for z in zones:
        assert any(f"prefix 'lake/{z.prefix}/'" in line for line in lifecycle), z.prefix
    with pytest.raises(ClientError):
        s3_client.head_bucket(Bucket=bucket)
    # The default mode is the plan.
    assert provision() == 2


def test_apply_creates_the_bucket_as_declared_and_a_second_run_changes_nothing(missing_root, s3_client, capsys,
                                                                              monkeypatch):
    """Apply creates the bucket with each setting (read back with boto3); then plan finds nothing and a second
    apply writes nothing."""
    monkeypatch.setenv("LAKE_BUCKET_TAGS", "team=data, cost-center=42")
    monkeypatch.setenv("LAKE_QUARANTINE_RETENTION_DAYS", "200")
    bucket = _bucket(missing_root)
    assert provision("--apply") == 0
    out = capsys.readouterr().out
    assert f"changed: bucket {bucket}: missing" in out

    assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    enc = s3_client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert enc[0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert s3_client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    tags = {t["Key"]: t["Value"] for t in s3_client.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"lake": "lake_assets", "team": "data", "cost-center": "42"}

    rules = _rules(s3_client, bucket)
    assert all(r["Status"] == "Enabled" for r in rules.values())
    assert rules["lake/"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": ABORT_MULTIPART_DAYS}
    # Archives nobody reads go cold; orders' archive (read by validation, a catalog table) stays instant.
    for prefix in ("lake/archive/validated/", "lake/bronze/events/", "lake/bronze/users/",
                   "lake/bronze/transactions/"):
        assert rules[prefix]["Transitions"] == [{"Days": ARCHIVE_TRANSITION_DAYS, "StorageClass": "GLACIER"}]
        assert "NoncurrentVersionExpiration" not in rules[prefix] and "Expiration" not in rules[prefix]
    assert rules["lake/archive/orders/"]["Transitions"] == [{"Days": 90, "StorageClass": "GLACIER_IR"}]
    # Rebuilt zones keep their current files; overwritten or deleted versions go after 30 days.
    for zone in ("silver", "gold", "processed", "analytics", "metrics", "validated", "bronze/_records",
                 "bronze/_manifests", "bronze/landing", "raw", "_lake"):
        rule = rules[f"lake/{zone}/"]
        assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": NONCURRENT_DAYS}, zone
        assert "Days" not in rule.get("Expiration", {}) and "Transitions" not in rule, zone
    # Quarantined, rejected and discarded rows and files: kept for the configured retention.
    for zone in ("quarantine", "rejected", "discarded"):
        assert rules[f"lake/{zone}/"]["Expiration"] == {"Days": 200}, zone
    assert rules["lake/_staging/"]["Expiration"] == {"Days": 7}
    assert len(rules) == len(zone_layout()) + 1

    before = _settings(s3_client, bucket)
    assert provision("--plan") == 0
    assert "as declared, no differences" in capsys.readouterr().out
    assert provision("--apply") == 0
    out = capsys.readouterr().out
    assert "changed:" not in out and "nothing changed" in out
    assert _settings(s3_client, bucket) == before


def test_lifecycle_covers_every_zone_the_code_writes(monkeypatch):
    """Derived from the code's layout: each table's location, and each landing zone's folders, fall under
    exactly one zone rule, of the kind its zone calls for."""
    from lake_assets.definitions import registry
    from lake_assets.domains import DOMAINS

    zones = zone_layout()

    def zone_of(path: str):
        found = [z for z in zones if path == z.prefix or path.startswith(z.prefix + "/")]
        assert len(found) == 1, (path, found)
        return found[0]

    expected = {"archive": "archive-read", "quarantine": "retained", "rejected": "retained",
                "discarded": "retained", "silver": "rebuilt", "gold": "rebuilt", "processed": "rebuilt",
                "analytics": "rebuilt", "bronze": "rebuilt", "ml": "rebuilt", "curated": "rebuilt"}
    for t in registry():
        assert zone_of(t.location).kind == expected[t.zone], t.qualified_name
    for d in DOMAINS.values():
        if d.landing:
            spec = d.landing()
            assert zone_of(spec.zones.raw).access == "read-delete"
            for fmt in spec.formats:
                assert zone_of(spec.zones.archive_dir(fmt)).kind == "archive", (d.name, fmt)
                assert zone_of(spec.zones.validated_dir(fmt)).kind == "rebuilt", (d.name, fmt)
                assert zone_of(spec.zones.rejected_dir(fmt)).kind == "retained", (d.name, fmt)
    assert zone_of("metrics/x/y.csv").kind == "rebuilt"
    assert zone_of("_lake/claims/raw/x/1.json").kind == "rebuilt"
    # No two rules of this lake overlap (S3 would apply both).
    prefixes = [z.prefix + "/" for z in zones]
    assert not [(p, q) for p in prefixes for q in prefixes if p != q and p.startswith(q)]


def test_sse_kms_with_a_key_id_and_bucket_key(missing_root, s3_client, capsys, monkeypatch):
    """LAKE_SSE=kms puts SSE-KMS with the key id and a bucket key; going back to SSE-S3 is a difference;
    kms without a key id is refused before anything is touched."""
    key = "1234abcd-12ab-34cd-56ef-1234567890ab"
    monkeypatch.setenv("LAKE_SSE", "kms")
    monkeypatch.setenv("LAKE_KMS_KEY_ID", key)
    bucket = _bucket(missing_root)
    assert provision("--apply") == 0
    rule = s3_client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    assert rule["BucketKeyEnabled"] is True
    capsys.readouterr()
    assert provision("--plan") == 0
    # The same key named by its ARN (as S3 may answer it) is no difference.
    arn = f"arn:aws:kms:us-east-1:123456789012:key/{key}"
    s3_client.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": arn},
        "BucketKeyEnabled": True}]})
    assert provision("--plan") == 0

    policy = json.loads(_run_out(capsys, "--iam-policy"))
    kms = [s for s in policy["Statement"] if s["Sid"] == "LakeKms"][0]
    assert kms["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert kms["Resource"] == [f"arn:aws:kms:us-east-1:*:key/{key}"]

    monkeypatch.setenv("LAKE_SSE", "s3")
    assert provision("--plan") == 2
    assert _differs(capsys.readouterr().out) == [
        f"default encryption: want SSE-S3, have SSE-KMS key {key}, bucket key on"]

    monkeypatch.setenv("LAKE_SSE", "kms")
    monkeypatch.delenv("LAKE_KMS_KEY_ID")
    assert provision("--apply") == 1
    assert "LAKE_KMS_KEY_ID" in capsys.readouterr().err
    rule = s3_client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == arn  # untouched


def test_tls_policy_on_its_own_bucket_merged_with_what_else_the_bucket_has(s3_lake_root, s3_client, capsys,
                                                                          monkeypatch):
    """The TLS-only statement is added beside another team's policy statement, lifecycle rule and tag, which
    stay; a rule of this lake no longer in the layout goes. (No object request on this bucket afterwards.)"""
    monkeypatch.setenv("LAKE_ROOT", s3_lake_root)
    bucket = _bucket(s3_lake_root)
    theirs = {"Sid": "OtherTeamNoDeleteBucket", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket",
              "Resource": f"arn:aws:s3:::{bucket}"}
    s3_client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs]}))
    their_rule = {"ID": "other-team", "Filter": {"Prefix": "other/"}, "Status": "Enabled", "Expiration": {"Days": 3}}
    stale = {"ID": "lake_assets[lake] old-zone/ (rebuilt)", "Filter": {"Prefix": "lake/old-zone/"},
             "Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}
    s3_client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [their_rule, stale]})
    s3_client.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "owner", "Value": "other-team"}]})

    assert provision("--plan") == 2
    lines = _differs(capsys.readouterr().out)
    assert "lifecycle lake_assets[lake] old-zone/ (rebuilt): no longer declared (removed on apply)" in lines
    assert not any("other-team" in line or "OtherTeam" in line for line in lines)

    assert provision("--apply") == 0
    policy = json.loads(s3_client.get_bucket_policy(Bucket=bucket)["Policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["OtherTeamNoDeleteBucket"] == theirs
    tls = statements[TLS_SID]
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert sorted(tls["Resource"]) == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    rules = {r["ID"]: r for r in s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["other-team"]["Filter"] == {"Prefix": "other/"} and rules["other-team"]["Expiration"] == {"Days": 3}
    assert stale["ID"] not in rules
    tags = {t["Key"]: t["Value"] for t in s3_client.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"owner": "other-team", "lake": "lake_assets"}
    capsys.readouterr()
    assert provision("--plan") == 0


def test_drift_by_hand_is_named_and_put_back(missing_root, s3_client, capsys):
    """Versioning suspended by hand: the plan names that one setting (exit 2); apply puts it back alone."""
    bucket = _bucket(missing_root)
    assert provision("--apply") == 0
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    capsys.readouterr()
    assert provision("--plan") == 2
    assert _differs(capsys.readouterr().out) == ["versioning: want Enabled, have Suspended"]
    assert provision("--apply") == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("changed:")] == [
        "changed: versioning: want Enabled, have Suspended"]
    assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    # A lifecycle rule edited by hand is named by its zone.
    rules = s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    for r in rules:
        if r["Filter"]["Prefix"] == "lake/quarantine/":
            r["Expiration"] = {"Days": 1}
    s3_client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    assert provision("--plan") == 2
    (line,) = _differs(capsys.readouterr().out)
    assert line.startswith("lifecycle lake_assets[lake] quarantine/ (retained): want prefix 'lake/quarantine/': "
                           "expire after 365 days")
    assert "have prefix 'lake/quarantine/': expire after 1 day," in line


def test_a_bucket_in_another_region_is_named_and_never_changed(missing_root, s3_client, capsys, monkeypatch):
    """A missing bucket is created in AWS_REGION; a bucket found elsewhere is a difference apply refuses
    (a bucket cannot move), without touching any of its settings."""
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    bucket = _bucket(missing_root)
    assert provision("--apply") == 0
    assert s3_client.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})

    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    capsys.readouterr()
    assert provision("--plan") == 2
    assert _differs(capsys.readouterr().out)[0].startswith(f"bucket {bucket}: in eu-west-1, declared in us-east-1")
    assert provision("--apply") == 1
    assert "cannot move" in capsys.readouterr().err
    assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"


def test_without_the_tls_policy_the_lake_writes_versioned_objects(missing_root, s3_client, moto_server, capsys,
                                                                 monkeypatch):
    """LAKE_REQUIRE_TLS=false (an http-only S3-compatible server) declares no policy; the provisioned lake
    then takes the pipeline's writes, and an overwrite keeps the old version (versioning is on)."""
    from lake_assets.lake import LakeStorage

    monkeypatch.setenv("LAKE_REQUIRE_TLS", "false")
    bucket = _bucket(missing_root)
    assert provision("--apply") == 0
    with pytest.raises(ClientError) as exc:
        s3_client.get_bucket_policy(Bucket=bucket)
    assert exc.value.response["Error"]["Code"] == "NoSuchBucketPolicy"
    assert provision("--plan") == 0

    storage = LakeStorage(missing_root, endpoint_url=moto_server)
    storage.write_text("gold/mart/t/part-00000.parquet", "v1")
    storage.write_text("gold/mart/t/part-00000.parquet", "v2")
    assert storage.read_text("gold/mart/t/part-00000.parquet") == "v2"
    versions = s3_client.list_object_versions(Bucket=bucket, Prefix="lake/gold/mart/t/part-00000.parquet")
    assert len(versions["Versions"]) == 2


def _run_out(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert provision(*argv) == 0
    return capsys.readouterr().out


def _allowed(policy: dict, key: str) -> set[str]:
    """The object actions the policy allows on ``key`` (IAM's ``*`` matches across ``/``, as fnmatch's does)."""
    out: set[str] = set()
    for st in policy["Statement"]:
        if st["Effect"] == "Allow" and any(fnmatch.fnmatchcase(key, r) for r in st["Resource"]):
            out.update(st["Action"])
    return out


def test_iam_policy_is_least_privilege_per_zone(monkeypatch, capsys):
    """--iam-policy names only the lake prefix's zones: raw is read and deleted (Put only on folder markers),
    archives are never deleted, derived zones are read-write; listing is limited to the zones."""
    from lake_assets.definitions import registry

    monkeypatch.setenv("LAKE_ROOT", "s3://acme-lake/prod/lake")
    policy = json.loads(_run_out(capsys, "--iam-policy"))
    assert policy["Version"] == "2012-10-17"
    arn = "arn:aws:s3:::acme-lake"
    for st in policy["Statement"]:
        for r in st["Resource"]:
            assert r == arn or r.startswith(f"{arn}/prod/lake/"), r
    (listing,) = [s for s in policy["Statement"] if "s3:ListBucket" in s["Action"]]
    assert listing["Resource"] == [arn]
    prefixes = listing["Condition"]["StringLike"]["s3:prefix"]
    assert "prod/lake/silver/*" in prefixes and "prod/lake/raw/*" in prefixes
    assert all(p.startswith("prod/lake/") for p in prefixes)

    def on(path: str) -> set[str]:
        return _allowed(policy, f"{arn}/prod/lake/{path}")

    assert on("raw/ndjson/web-1.ndjson") == {"s3:GetObject", "s3:DeleteObject"}
    # Folder markers Arrow leaves after deleting a folder's last file; no other raw key is writable.
    assert on("raw/ndjson/") == on("raw/") == {"s3:GetObject", "s3:DeleteObject", "s3:PutObject"}
    for archived in ("archive/validated/ndjson/a.ndjson", "bronze/events/e.csv", "archive/orders/s/_manifest.json"):
        assert {"s3:GetObject", "s3:PutObject"} <= on(archived) and "s3:DeleteObject" not in on(archived)
    for t in registry():
        allowed = on(f"{t.location}/part-00000.parquet")
        assert {"s3:GetObject", "s3:PutObject"} <= allowed, t.qualified_name
        assert ("s3:DeleteObject" in allowed) == (t.zone != "archive"), t.qualified_name
    for path in ("_lake/claims/raw/x/1.json", "metrics/d/a/event_date=2024-01-01/r.csv",
                 "validated/_manifests/ndjson/abc.json", "bronze/landing/orders/s/_manifest.json"):
        assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= on(path), path
    assert on("elsewhere/x") == set() and _allowed(policy, f"{arn}/other/x") == set()
    assert not any(s["Sid"] == "LakeKms" for s in policy["Statement"])


def test_a_local_lake_has_nothing_to_provision(tmp_path, monkeypatch, capsys):
    """A folder LAKE_ROOT: one line saying why, exit 2, for plan, apply and the IAM policy alike."""
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    for mode in ("--plan", "--apply", "--iam-policy"):
        assert provision(mode) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert len(captured.err.strip().splitlines()) == 1 and "s3://" in captured.err


def test_spec_reads_its_settings_when_built(monkeypatch):
    """Settings are read when the spec is built (not at import) and bad ones are refused by name."""
    monkeypatch.setenv("LAKE_BUCKET_TAGS", "lake=mine,env=prod")
    spec = BucketSpec.from_env("s3://b-1/p/q", zones=())
    assert (spec.bucket, spec.prefix, spec.region) == ("b-1", "p/q", "us-east-1")
    assert dict(spec.tags) == {"lake": "mine", "env": "prod"}
    assert spec.key_prefix("gold") == "p/q/gold/" and BucketSpec.from_env("s3://b-1", zones=()).key_prefix() == ""
    monkeypatch.setenv("LAKE_BUCKET_TAGS", "novalue")
    with pytest.raises(ValueError, match="LAKE_BUCKET_TAGS"):
        BucketSpec.from_env("s3://b-1/p", zones=())
    monkeypatch.delenv("LAKE_BUCKET_TAGS")
    monkeypatch.setenv("LAKE_QUARANTINE_RETENTION_DAYS", "a year")
    with pytest.raises(ValueError, match="LAKE_QUARANTINE_RETENTION_DAYS"):
        BucketSpec.from_env("s3://b-1/p", zones=())


#: Run in its own process: moto's IAM enforcement (INITIAL_NO_AUTH_ACTION_COUNT) is process-wide and
#: would lock out every other test sharing the session's moto server.
_IAM_SCRIPT = r'''
import json, os, sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
endpoint = f"http://{host}:{port}"
import boto3
admin = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
# The six requests moto lets through unauthenticated (INITIAL_NO_AUTH_ACTION_COUNT=6): the setup.
admin.create_bucket(Bucket="acme-lake")
admin.put_object(Bucket="acme-lake", Key="lake/raw/ndjson/a.ndjson", Body=b"x")
admin.put_object(Bucket="acme-lake", Key="lake/raw/stray.txt", Body=b"x")
from lake_assets.provision import BucketSpec, iam_policy
iam.create_user(UserName="pipeline")
iam.put_user_policy(UserName="pipeline", PolicyName="lake",
                    PolicyDocument=json.dumps(iam_policy(BucketSpec.from_env("s3://acme-lake/lake"))))
key = iam.create_access_key(UserName="pipeline")["AccessKey"]
os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = key["AccessKeyId"], key["SecretAccessKey"]
boto3.DEFAULT_SESSION = None
from lake_assets.lake import LakeStorage
st = LakeStorage("s3://acme-lake/lake", endpoint_url=endpoint)
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
ops = {
    "list raw": lambda: st.list_files("raw"),
    "read raw": lambda: st.read_text("raw/ndjson/a.ndjson"),
    "probe a missing key": lambda: st.exists("silver/events/none.parquet"),
    "write validated": lambda: st.write_text("validated/ndjson/year=2024/month=01/day=01/a.ndjson", "x"),
    "archive raw (server-side copy)": lambda: st.copy("raw/ndjson/a.ndjson", "archive/validated/ndjson/a_1"),
    "delete raw once archived": lambda: st.delete("raw/ndjson/a.ndjson"),
    "delete a stray raw file": lambda: st.delete("raw/stray.txt"),
    "claim": lambda: st.create_exclusive("_lake/claims/raw/x/1.json", b"{}"),
    "release claim": lambda: st.delete("_lake/claims/raw/x/1.json"),
    "write gold": lambda: st.write_text("gold/mart/daily_revenue/date=2024-01-01/part-00000.parquet", "x"),
    "delete gold": lambda: st.delete("gold/mart/daily_revenue/date=2024-01-01/part-00000.parquet"),
    "write orders landing": lambda: st.write_text("bronze/landing/orders/s1/_manifest.json", "{}"),
    "write metrics": lambda: st.write_text("metrics/d/a/event_date=2024-01-01/r.csv", "x"),
    "write raw": lambda: st.write_text("raw/ndjson/new.ndjson", "x"),
    "delete an archive": lambda: st.fs.delete_file("acme-lake/lake/archive/validated/ndjson/a_1"),
    "write outside the zones": lambda: s3.put_object(Bucket="acme-lake", Key="lake/elsewhere/x", Body=b"1"),
    "read outside the lake": lambda: s3.get_object(Bucket="acme-lake", Key="other/x"),
}
out = {}
for name, op in ops.items():
    try:
        op()
        out[name] = "allowed"
    except Exception as exc:
        out[name] = "denied" if "denied" in str(exc).lower() or "ACCESS_DENIED" in str(exc) else repr(exc)
server.stop()
print(json.dumps(out))
'''


def test_iam_policy_lets_the_pipelines_storage_calls_through_under_moto_iam(tmp_path):
    """The generated policy, enforced by moto's IAM (which checks actions and resources, not conditions),
    allows what the pipeline's storage layer does zone by zone and refuses writing raw, deleting an archive
    and anything outside the zones. (Folder deletes are left out: moto checks a multi-object delete against
    the bucket's ARN, where AWS checks each key.)"""
    import os
    import subprocess
    import sys

    script = tmp_path / "iam_check.py"
    script.write_text(_IAM_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "LAKE_"))}
    env.update(INITIAL_NO_AUTH_ACTION_COUNT="6", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    refused = {"write raw", "delete an archive", "write outside the zones", "read outside the lake"}
    assert {k for k, v in result.items() if v == "denied"} == refused, result
    assert all(v == "allowed" for k, v in result.items() if k not in refused), result
