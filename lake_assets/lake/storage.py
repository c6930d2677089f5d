"""One object-store layer for the whole lake: a local folder or ``s3://bucket/prefix``.

Built on ``pyarrow.fs`` (no botocore pins, streaming reads and multipart uploads),
so ingestion, sensors, rejects, archives and the Spark IO manager share one code
path whatever the root. Paths handed to this class are *relative to the lake root*
(``processed/logs/...``); only :meth:`uri` and :meth:`spark_uri` speak absolute.

Atomicity: every write becomes visible whole or not at all. Locally a file is
written beside its target under a hidden name and ``os.replace``d into place; on
S3 an object appears only when its (multipart) upload completes, so a reader
never sees a half-written object.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import IO, Iterator
from urllib.parse import urlparse

import pyarrow.fs as pafs

#: Files whose name starts with one of these are staging or bookkeeping: Spark,
#: Arrow and Athena skip them, and so do listings of data.
HIDDEN_PREFIXES = ("_", ".")


@dataclass(frozen=True)
class LakeFile:
    """A file in the lake: its path relative to the root, size and modification time."""

    path: str
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _s3_location(region: str | None, endpoint_url: str | None) -> tuple[str | None, str | None]:
    """Region and endpoint as given, else from the standard AWS variables (Arrow's and boto3's alike)."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return region, endpoint_url


def _s3_filesystem(region: str | None, endpoint_url: str | None) -> pafs.S3FileSystem:
    """An S3 filesystem honouring the standard AWS variables, ``AWS_ENDPOINT_URL`` included."""
    kwargs: dict = {}
    region, endpoint_url = _s3_location(region, endpoint_url)
    if region:
        kwargs["region"] = region
    if endpoint_url:
        parsed = urlparse(endpoint_url)
        if parsed.scheme:
            kwargs["scheme"] = parsed.scheme
            kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
        else:
            kwargs["endpoint_override"] = endpoint_url
        # MinIO, moto and LocalStack serve buckets by path, not by virtual host.
        kwargs["force_virtual_addressing"] = False
    # Transient failures (5xx, SlowDown, resets, timeouts) are retried with exponential backoff
    # and jitter by the AWS SDK; permanent ones (403, no such bucket or key) fail at once.
    kwargs["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=s3_max_attempts())
    kwargs["connect_timeout"] = 10
    kwargs["request_timeout"] = 120
    # An output stream starts its upload at its first part, not when opened: an object smaller than a
    # part (metrics, manifests, claims, most small writes) is then one PutObject instead of a multipart
    # upload's three requests. Still whole or nothing; an error such as a missing bucket is raised
    # when the stream is written or closed, inside the same ``with`` block.
    kwargs["allow_delayed_open"] = True
    return pafs.S3FileSystem(**kwargs)


def s3_max_attempts() -> int:
    """Attempts per S3 request (``LAKE_S3_MAX_ATTEMPTS``, 5): the SDKs' standard retry mode."""
    return int(os.environ.get("LAKE_S3_MAX_ATTEMPTS") or 5)


def configured_sse() -> tuple[str, str | None]:
    """The lake's S3 encryption as configured: (``LAKE_SSE``: ``s3`` or ``kms``, ``LAKE_KMS_KEY_ID``).

    Read by ``lake provision`` (the bucket's default encryption) and by every S3 write. With
    ``s3`` (the default) writes send no header: S3 encrypts every new object with SSE-S3
    whatever the request says. A bucket whose policy requires SSE-KMS with a given key
    refuses a PUT without the headers, so with ``kms`` every write names the key.
    """
    from lake_assets.settings import SettingError

    sse = (os.environ.get("LAKE_SSE") or "s3").strip().lower()
    if sse not in ("s3", "kms"):
        raise SettingError(f"LAKE_SSE={sse!r}: use s3 (SSE-S3, the default) or kms (with LAKE_KMS_KEY_ID)")
    key = os.environ.get("LAKE_KMS_KEY_ID") or None
    if sse == "kms" and key is None:
        raise SettingError("LAKE_SSE=kms needs LAKE_KMS_KEY_ID (a key id or ARN)")
    return sse, key if sse == "kms" else None


class LakeStorage:
    """The lake root and every operation the pipeline performs on it."""

    def __init__(
        self,
        root: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        spark_s3_scheme: str | None = None,
        kms_key_id: str | None = None,
    ) -> None:
        root = root.rstrip("/")
        parsed = urlparse(root)
        if parsed.scheme == "s3":
            if not parsed.netloc:
                raise ValueError(f"LAKE_ROOT {root!r} names no bucket: use s3://bucket/prefix")
            self.is_local = False
            self._s3_args = (region, endpoint_url)
            self.fs: pafs.FileSystem = _s3_filesystem(region, endpoint_url)
            self._base = f"{parsed.netloc}{parsed.path}".rstrip("/")
            self.root_uri = f"s3://{self._base}"
            # Arrow's S3 filesystem cannot send SSE-KMS headers: with a key, writes go through boto3.
            self.kms_key_id = kms_key_id or configured_sse()[1]
        elif parsed.scheme in ("", "file"):
            path = parsed.path if parsed.scheme == "file" else root
            self.is_local = True
            self.fs = pafs.LocalFileSystem()
            self.kms_key_id = None
            self._base = os.path.abspath(os.path.expanduser(path))
            self.root_uri = self._base
        else:
            raise ValueError(
                f"LAKE_ROOT {root!r}: unsupported scheme {parsed.scheme!r} (use a folder or s3://)"
            )
        # With s3a/EMRFS on the Spark classpath, Spark reads and writes S3 itself
        # ("s3a" or "s3"); without, data crosses through Arrow (see spark.py).
        self.spark_s3_scheme = spark_s3_scheme

    def __repr__(self) -> str:
        return f"LakeStorage({self.root_uri!r})"

    def __getstate__(self) -> dict:
        # Sent to ingestion's worker processes: a boto3 client does not travel, each makes its own.
        return {k: v for k, v in self.__dict__.items() if k != "_client"}

    # -- paths -------------------------------------------------------------
    def _p(self, rel: str) -> str:
        rel = rel.strip("/")
        if ".." in rel.split("/"):
            raise ValueError(f"lake path {rel!r} escapes the lake root")
        return f"{self._base}/{rel}" if rel else self._base

    def uri(self, rel: str = "") -> str:
        """The absolute URI of a lake path, for people and metadata."""
        rel = rel.strip("/")
        return f"{self.root_uri}/{rel}" if rel else self.root_uri

    def local_path(self, rel: str) -> str:
        """The filesystem path of a lake path on a local lake."""
        if not self.is_local:
            raise ValueError(f"{self.root_uri} is not a local lake")
        return self._p(rel)

    @property
    def spark_direct(self) -> bool:
        """Whether Spark can read and write the lake's own paths."""
        return self.is_local or bool(self.spark_s3_scheme)

    def spark_uri(self, rel: str) -> str:
        """The path Spark uses for a lake path when :attr:`spark_direct` holds."""
        if self.is_local:
            return self._p(rel)
        if not self.spark_s3_scheme:
            raise ValueError("Spark has no S3 filesystem here; stage through Arrow instead")
        return f"{self.spark_s3_scheme}://{self._p(rel)}"

    # -- reading -----------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self._p(rel)).type != pafs.FileType.NotFound

    def is_file(self, rel: str) -> bool:
        return self.fs.get_file_info(self._p(rel)).type == pafs.FileType.File

    def list_files(self, prefix: str, *, recursive: bool = True, hidden: bool = False) -> list[LakeFile]:
        """Files under a prefix, sorted by path; hidden (``_``/``.``) ones only when asked."""
        selector = pafs.FileSelector(self._p(prefix), allow_not_found=True, recursive=recursive)
        base_len = len(self._base) + 1
        out = []
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            rel = info.path[base_len:]
            below = rel[len(prefix.strip("/")) :].strip("/")
            if not hidden and any(part.startswith(HIDDEN_PREFIXES) for part in below.split("/")):
                continue
            out.append(LakeFile(rel, info.size or 0, info.mtime_ns or 0))
        return sorted(out, key=lambda f: f.path)

    def sizes(self, rels: list[str]) -> list[int]:
        """Sizes of files (one listing call for all of them; 0 for a missing one)."""
        if not rels:
            return []
        return [info.size or 0 for info in self.fs.get_file_info([self._p(r) for r in rels])]

    def open_read(self, rel: str) -> IO[bytes]:
        """A streaming reader: memory stays bounded whatever the object's size."""
        return self.fs.open_input_stream(self._p(rel), compression=None)

    def open_random(self, rel: str):
        """A seekable reader, for formats read from the end (Parquet footers)."""
        return self.fs.open_input_file(self._p(rel))

    def read_bytes(self, rel: str) -> bytes:
        with self.open_read(rel) as f:
            return f.read()

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def download(self, rel: str, local_path: str) -> None:
        os.makedirs(os.path.dirname(local_path) or ".", exist_ok=True)
        pafs.copy_files(self._p(rel), local_path, source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())

    # -- writing (every write is atomic) -----------------------------------
    @contextlib.contextmanager
    def open_write(self, rel: str) -> Iterator[IO[bytes]]:
        """Write a file that appears whole on success and not at all on error."""
        if self.is_local:
            target = self._p(rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = os.path.join(os.path.dirname(target), f".tmp-{uuid.uuid4().hex}")
            try:
                with open(tmp, "wb") as f:
                    yield f
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        else:
            # Spool locally, then upload: an exception never completes a half upload.
            import tempfile

            with tempfile.NamedTemporaryFile(prefix="lake-upload-", delete=False) as f:
                tmp = f.name
                try:
                    yield f
                except BaseException:
                    f.close()
                    os.remove(tmp)
                    raise
            try:
                self.put_file(tmp, rel)
            finally:
                os.remove(tmp)

    def write_bytes(self, rel: str, data: bytes) -> None:
        if self.is_local:
            with self.open_write(rel) as f:
                f.write(data)
        elif self.kms_key_id:
            bucket, key = self._bucket_key(rel)
            self._s3_client().put_object(Bucket=bucket, Key=key, Body=data, **self._sse_args())
        else:
            with self.fs.open_output_stream(self._p(rel), compression=None) as out:
                out.write(data)

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode("utf-8"))

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` holding ``data`` only if nothing is there; True when this call created it.

        Atomic however many processes or machines race for the name, which is what claims
        and locks are built on: on a local lake a finished temp file is hard-linked to the
        name (``link`` fails if it exists), on S3 a conditional PUT (``If-None-Match: *``,
        answered 412 when the key exists). Readers see the whole content or nothing.
        """
        if self.is_local:
            target = self._p(rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = os.path.join(os.path.dirname(target), f".tmp-{uuid.uuid4().hex}")
            with open(tmp, "wb") as f:
                f.write(data)
            try:
                os.link(tmp, target)
                return True
            except FileExistsError:
                return False
            finally:
                with contextlib.suppress(FileNotFoundError):  # a release may have swept the folder
                    os.remove(tmp)
        from botocore.exceptions import ClientError

        bucket, key = self._bucket_key(rel)
        try:
            self._s3_client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*", **self._sse_args())
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") \
                    or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                return False
            raise

    def _bucket_key(self, rel: str) -> tuple[str, str]:
        """An S3 lake path as boto3 names it: (bucket, key)."""
        bucket, _, key = self._p(rel).partition("/")
        return bucket, key

    def _sse_args(self) -> dict:
        """The encryption every S3 write names: SSE-KMS with the configured key; nothing without a key
        (the bucket's default, SSE-S3, applies). Whether an S3 bucket key cuts the KMS requests is
        the bucket's default setting (``lake provision`` turns it on), which such writes follow."""
        if not self.kms_key_id:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}

    def _s3_client(self):
        """A boto3 S3 client for what Arrow's filesystem cannot say (conditional writes, SSE-KMS)."""
        client = getattr(self, "_client", None)
        if client is None:
            import boto3

            region, endpoint_url = _s3_location(*self._s3_args)
            from botocore.config import Config

            client = self._client = boto3.client("s3", region_name=region, endpoint_url=endpoint_url, config=Config(
                retries={"mode": "standard", "max_attempts": s3_max_attempts()}, connect_timeout=10))
        return client

    def put_file(self, local_path: str, rel: str, *, move: bool = False) -> None:
        """Publish a finished local file at ``rel``, replacing what was there atomically."""
        if self.is_local:
            target = self._p(rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if move and os.stat(local_path).st_dev == os.stat(os.path.dirname(target)).st_dev:
                os.replace(local_path, target)
                return
            tmp = os.path.join(os.path.dirname(target), f".tmp-{uuid.uuid4().hex}")
            try:
                shutil.copyfile(local_path, tmp)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            if move:
                os.remove(local_path)
        else:
            if self.kms_key_id:  # boto3's managed upload: multipart above 8 MB, complete or nothing
                bucket, key = self._bucket_key(rel)
                self._s3_client().upload_file(local_path, bucket, key, ExtraArgs=self._sse_args())
            else:
                pafs.copy_files(local_path, self._p(rel), source_filesystem=pafs.LocalFileSystem(),
                                destination_filesystem=self.fs)
            if move:
                os.remove(local_path)

    def copy(self, src: str, dst: str) -> None:
        """Copy within the lake (server side on S3), atomically at the destination."""
        if self.is_local:
            self.put_file(self._p(src), dst)
        elif self.kms_key_id:  # a copy is a new object: it names the key too
            bucket, key = self._bucket_key(dst)
            src_bucket, src_key = self._bucket_key(src)
            from botocore.exceptions import ClientError

            try:
                self._s3_client().copy({"Bucket": src_bucket, "Key": src_key}, bucket, key,
                                       ExtraArgs=self._sse_args())
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    raise FileNotFoundError(f"{self.uri(src)} does not exist") from exc
                raise
        else:
            self.fs.copy_file(self._p(src), self._p(dst))

    def move(self, src: str, dst: str) -> None:
        if self.is_local:
            self.put_file(self._p(src), dst, move=True)
        else:
            self.copy(src, dst)
            self.delete(src)

    def delete(self, rel: str) -> None:
        """Delete a file; a file already gone is not an error (retries stay idempotent)."""
        if self.kms_key_id:
            bucket, key = self._bucket_key(rel)
            self._s3_client().delete_object(Bucket=bucket, Key=key)  # no error when already gone
            return
        try:
            self.fs.delete_file(self._p(rel))
        except FileNotFoundError:
            pass

    def delete_dir(self, rel: str) -> None:
        """Delete everything below a prefix."""
        if self.kms_key_id:
            # Arrow's deletes put an empty folder marker back, a write without the key that a bucket
            # requiring SSE-KMS refuses: with a key, deletes go through boto3 and leave no marker.
            bucket, prefix = self._bucket_key(rel)
            client = self._s3_client()
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    failed = client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True}).get("Errors")
                    if failed:
                        raise OSError(f"could not delete {len(failed)} object(s) under {self.uri(rel)}: "
                                      f"{failed[0].get('Code')} {failed[0].get('Message')}")
            return
        try:
            self.fs.delete_dir(self._p(rel))
        except FileNotFoundError:
            pass
