"""LakeStorage on a local folder and on S3 (moto's server), checked against the disk and the bucket.

Every outcome is read back independently of the code under test: ``os`` for a
local lake, boto3 (``s3_keys``/``s3_client``) for a bucket.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile

import pytest

from lake_assets.lake import LakeFile, LakeStorage


# -- helpers -----------------------------------------------------------------
@pytest.fixture(params=["local", "s3", "s3_kms"])
def lake(request):
    """A fresh lake, local or S3 (``s3_kms``: with ``LAKE_SSE=kms``, whose writes and deletes take
    boto3's path); ``lake.kind`` and ``lake.test_root`` tell the tests which."""
    if request.param == "local":
        storage, root = request.getfixturevalue("local_lake"), request.getfixturevalue("lake_root")
    else:
        root = request.getfixturevalue("s3_lake_root")
        storage = LakeStorage(root, endpoint_url=request.getfixturevalue("moto_server"),
                              kms_key_id="lake-key-1" if request.param == "s3_kms" else None)
    storage.kind = "local" if request.param == "local" else "s3"
    storage.test_root = root
    return storage


@pytest.fixture
def listing(request):
    """``listing(lake, prefix="")``: every file under a lake prefix (hidden ones too),
    relative to the root, listed with os or boto3.

    On S3 the empty ``folder/`` marker objects Arrow leaves behind when it deletes
    a folder's last file are not files, and are left out."""

    def _list(lake: LakeStorage, prefix: str = "") -> list[str]:
        if lake.kind == "s3":
            keys = request.getfixturevalue("s3_keys")(lake.test_root, prefix)
            return [k for k in keys if not k.endswith("/")]
        out = []
        base = lake.test_root
        for dirpath, _, files in os.walk(os.path.join(base, prefix) if prefix else base):
            out += [os.path.relpath(os.path.join(dirpath, f), base).replace(os.sep, "/") for f in files]
        return sorted(out)

    return _list


@pytest.fixture
def read_back(request):
    """``read_back(lake, rel)``: an object's bytes, read with open() or boto3."""

    def _read(lake: LakeStorage, rel: str) -> bytes:
        if lake.kind == "s3":
            bucket, _, base = lake.test_root[len("s3://"):].partition("/")
            client = request.getfixturevalue("s3_client")
            return client.get_object(Bucket=bucket, Key=f"{base}/{rel}")["Body"].read()
        with open(os.path.join(lake.test_root, rel), "rb") as f:
            return f.read()

    return _read


def _bucket_and_base(root: str) -> tuple[str, str]:
    bucket, _, base = root[len("s3://"):].partition("/")
    return bucket, base


# -- reading and writing -------------------------------------------------------
def test_write_and_read_bytes_round_trip(lake, listing, read_back):
    payload = bytes(range(256)) * 100
    lake.write_bytes("raw/ndjson/a.bin", payload)
    lake.write_text("raw/ndjson/b.txt", "héllo\nwörld ✓")

    assert read_back(lake, "raw/ndjson/a.bin") == payload
    assert read_back(lake, "raw/ndjson/b.txt") == "héllo\nwörld ✓".encode("utf-8")
    assert lake.read_bytes("raw/ndjson/a.bin") == payload
    assert lake.read_text("raw/ndjson/b.txt") == "héllo\nwörld ✓"
    assert listing(lake) == ["raw/ndjson/a.bin", "raw/ndjson/b.txt"]
    assert lake.exists("raw/ndjson/a.bin") and lake.is_file("raw/ndjson/a.bin")
    assert not lake.exists("raw/ndjson/missing") and not lake.is_file("raw/ndjson/missing")
    assert not lake.is_file("raw/ndjson")  # a folder (a common prefix on S3) is not a file

    lake.write_bytes("raw/ndjson/a.bin", b"second")
    assert read_back(lake, "raw/ndjson/a.bin") == b"second"
    assert listing(lake) == ["raw/ndjson/a.bin", "raw/ndjson/b.txt"]


def test_read_missing_file_raises_file_not_found(lake):
    with pytest.raises(FileNotFoundError):
        lake.read_bytes("raw/nothing/here.json")


def test_open_random_seeks_and_download_copies(lake, tmp_path):
    lake.write_bytes("data/part-0.parquet", b"0123456789PAR1")
    with lake.open_random("data/part-0.parquet") as f:
        assert f.size() == 14
        f.seek(10)
        assert f.read(4) == b"PAR1"
        f.seek(2)
        assert f.read(3) == b"234"
    with lake.open_read("data/part-0.parquet") as f:
        assert f.read(4) == b"0123"
        assert f.read() == b"456789PAR1"

    target = tmp_path / "dl" / "nested" / "copy.parquet"
    lake.download("data/part-0.parquet", str(target))
    assert target.read_bytes() == b"0123456789PAR1"


# -- listing -------------------------------------------------------------------
def test_list_files_recursive_sorted_sizes_and_hidden(lake, listing):
    files = {
        "raw/ndjson/b.ndjson": b"bb",
        "raw/ndjson/a.ndjson": b"a",
        "raw/ndjson/sub/deep/c.ndjson": b"ccc",
        "raw/ndjson/_staging/x.ndjson": b"xxxx",
        "raw/ndjson/.part-0": b"partial",
        "raw/ndjson/sub/_SUCCESS": b"",
        "raw/ndjson2/not-under-prefix.ndjson": b"z",
        "raw/json_gzip/d.json.gz": b"dddd",
    }
    for rel, data in files.items():
        lake.write_bytes(rel, data)
    assert listing(lake) == sorted(files)  # everything really is there

    got = lake.list_files("raw/ndjson")
    assert [f.path for f in got] == ["raw/ndjson/a.ndjson", "raw/ndjson/b.ndjson", "raw/ndjson/sub/deep/c.ndjson"]
    assert [f.size for f in got] == [1, 2, 3]
    assert [f.name for f in got] == ["a.ndjson", "b.ndjson", "c.ndjson"]
    assert all(isinstance(f, LakeFile) and f.mtime_ns > 0 for f in got)

    # A trailing slash names the same folder.
    assert lake.list_files("raw/ndjson/") == got

    hidden = lake.list_files("raw/ndjson", hidden=True)
    assert [f.path for f in hidden] == sorted([
        "raw/ndjson/.part-0", "raw/ndjson/_staging/x.ndjson", "raw/ndjson/a.ndjson",
        "raw/ndjson/b.ndjson", "raw/ndjson/sub/_SUCCESS", "raw/ndjson/sub/deep/c.ndjson",
    ])

    flat = lake.list_files("raw/ndjson", recursive=False)
    assert [f.path for f in flat] == ["raw/ndjson/a.ndjson", "raw/ndjson/b.ndjson"]

    everything = [f.path for f in lake.list_files("raw")]
    assert everything == sorted(everything)
    assert everything == ["raw/json_gzip/d.json.gz", "raw/ndjson/a.ndjson", "raw/ndjson/b.ndjson",
                          "raw/ndjson/sub/deep/c.ndjson", "raw/ndjson2/not-under-prefix.ndjson"]
    # Listing from the root works too.
    assert [f.path for f in lake.list_files("")] == everything


def test_list_files_inside_a_hidden_prefix_shows_its_files(lake):
    lake.write_bytes("validated/_manifests/ndjson/abc.json", b"{}")
    lake.write_bytes("validated/_manifests/ndjson/.tmp-1", b"{")
    assert lake.list_files("validated") == []
    assert [f.path for f in lake.list_files("validated/_manifests/ndjson")] == [
        "validated/_manifests/ndjson/abc.json"]


def test_list_files_of_a_missing_prefix_is_empty(lake):
    assert lake.list_files("raw/never") == []


# -- atomic writes -------------------------------------------------------------
def test_open_write_publishes_whole_file(lake, listing, read_back):
    with lake.open_write("processed/x/part-0.bin") as f:
        f.write(b"first half ")
        # Nothing visible at the target until the block ends.
        assert not lake.exists("processed/x/part-0.bin")
        f.write(b"second half")
    assert read_back(lake, "processed/x/part-0.bin") == b"first half second half"
    assert listing(lake) == ["processed/x/part-0.bin"]


def test_failing_open_write_keeps_old_content_and_leaves_no_temp_file(lake, listing, read_back, tmp_path,
                                                                       monkeypatch):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where an S3 upload spools
    lake.write_bytes("processed/x/part-0.bin", b"old content")

    with pytest.raises(RuntimeError, match="disk on fire"):
        with lake.open_write("processed/x/part-0.bin") as f:
            f.write(b"new content that never ")
            f.flush()
            raise RuntimeError("disk on fire")

    assert read_back(lake, "processed/x/part-0.bin") == b"old content"
    assert listing(lake) == ["processed/x/part-0.bin"]  # no .tmp-* beside it, no extra key
    if lake.kind == "local":
        assert os.listdir(os.path.join(lake.test_root, "processed", "x")) == ["part-0.bin"]
    assert os.listdir(spool) == []


def test_failing_open_write_of_new_file_creates_nothing(lake, listing, tmp_path, monkeypatch):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    with pytest.raises(ValueError):
        with lake.open_write("processed/y/part-0.bin") as f:
            f.write(b"partial")
            raise ValueError("boom")
    assert not lake.exists("processed/y/part-0.bin")
    assert listing(lake) == []
    assert os.listdir(spool) == []


def test_s3_open_write_removes_its_spool_file_on_success(s3_lake, s3_lake_root, s3_keys, tmp_path, monkeypatch):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    with s3_lake.open_write("a/b.bin") as f:
        f.write(b"x" * 1000)
    assert s3_keys(s3_lake_root) == ["a/b.bin"]
    assert os.listdir(spool) == []


def test_with_a_kms_key_every_s3_write_names_it(s3_lake_root, moto_server, s3_encryption, tmp_path, monkeypatch):
    """LAKE_SSE=kms: every way the lake writes an object (bytes, a streamed file, an upload big enough
    to go multipart, a copy, a move, an exclusive create) sends SSE-KMS with the key; without the
    setting nothing is asked for (the bucket's default applies)."""
    from lake_assets.lake import LakeStorage

    monkeypatch.setenv("LAKE_SSE", "kms")
    monkeypatch.setenv("LAKE_KMS_KEY_ID", "lake-key-1")
    lake = LakeStorage(s3_lake_root, endpoint_url=moto_server)
    lake.write_bytes("a/bytes.bin", b"1")
    with lake.open_write("a/streamed.bin") as f:
        f.write(b"2" * 1000)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 * 1024 * 1024))  # above the 8 MB multipart threshold
    lake.put_file(str(big), "a/big.bin")
    lake.copy("a/bytes.bin", "b/copied.bin")
    lake.move("a/streamed.bin", "b/moved.bin")
    assert lake.create_exclusive("c/claim.json", b"{}")
    assert s3_encryption(s3_lake_root) == {k: ("aws:kms", "lake-key-1") for k in (
        "a/bytes.bin", "a/big.bin", "b/copied.bin", "b/moved.bin", "c/claim.json")}
    assert lake.read_bytes("a/big.bin") == big.read_bytes()

    monkeypatch.delenv("LAKE_SSE")
    plain = LakeStorage(s3_lake_root, endpoint_url=moto_server)
    plain.write_bytes("d/plain.bin", b"3")
    assert s3_encryption(s3_lake_root, "d/")["d/plain.bin"][1] is None


def test_kms_without_a_key_is_refused_naming_the_setting(s3_lake_root, monkeypatch):
    from lake_assets.lake import LakeStorage
    from lake_assets.settings import SettingError

    monkeypatch.setenv("LAKE_SSE", "kms")
    monkeypatch.delenv("LAKE_KMS_KEY_ID", raising=False)
    with pytest.raises(SettingError, match="LAKE_SSE=kms needs LAKE_KMS_KEY_ID"):
        LakeStorage(s3_lake_root)
    monkeypatch.setenv("LAKE_SSE", "aes")
    with pytest.raises(SettingError, match="LAKE_SSE='aes'"):
        LakeStorage(s3_lake_root)


def test_put_file_replaces_existing_content(lake, listing, read_back, tmp_path):
    lake.write_bytes("validated/ndjson/f.ndjson", b"old\n")
    src = tmp_path / "src.ndjson"
    src.write_bytes(b"new\nnew\n")

    lake.put_file(str(src), "validated/ndjson/f.ndjson")
    assert read_back(lake, "validated/ndjson/f.ndjson") == b"new\nnew\n"
    assert src.exists()  # not moved
    assert listing(lake) == ["validated/ndjson/f.ndjson"]

    src2 = tmp_path / "src2.ndjson"
    src2.write_bytes(b"moved\n")
    lake.put_file(str(src2), "validated/ndjson/f.ndjson", move=True)
    assert read_back(lake, "validated/ndjson/f.ndjson") == b"moved\n"
    assert not src2.exists()
    assert listing(lake) == ["validated/ndjson/f.ndjson"]
    if lake.kind == "local":
        assert os.listdir(os.path.join(lake.test_root, "validated", "ndjson")) == ["f.ndjson"]


def _failing_copyfile(src, dst, *a, **kw):
    """shutil.copyfile that runs out of disk half way."""
    with open(src, "rb") as s, open(dst, "wb") as d:
        d.write(s.read(3))
    raise OSError(errno.ENOSPC, "No space left on device")


def test_put_file_failing_copy_keeps_old_content(local_lake, lake_root, tmp_path, monkeypatch):
    local_lake.write_bytes("validated/f", b"old content")
    src = tmp_path / "src"
    src.write_bytes(b"new content")
    monkeypatch.setattr(shutil, "copyfile", _failing_copyfile)
    with pytest.raises(OSError):
        local_lake.put_file(str(src), "validated/f")
    monkeypatch.undo()
    with open(os.path.join(lake_root, "validated", "f"), "rb") as f:
        assert f.read() == b"old content"
    assert [f.path for f in local_lake.list_files("validated")] == ["validated/f"]


def test_put_file_failing_copy_leaves_no_temp_file(local_lake, lake_root, tmp_path, monkeypatch):
    local_lake.write_bytes("validated/f", b"old content")
    src = tmp_path / "src"
    src.write_bytes(b"new content")
    monkeypatch.setattr(shutil, "copyfile", _failing_copyfile)
    with pytest.raises(OSError):
        local_lake.put_file(str(src), "validated/f")
    monkeypatch.undo()
    assert os.listdir(os.path.join(lake_root, "validated")) == ["f"]


def test_copy_onto_a_folder_fails_without_leaving_a_temp_file(local_lake, lake_root):
    local_lake.write_bytes("a/src", b"x")
    os.makedirs(os.path.join(lake_root, "b", "target"))
    with pytest.raises(OSError):
        local_lake.copy("a/src", "b/target")
    assert os.listdir(os.path.join(lake_root, "b")) == ["target"]


# -- copy, move, delete ----------------------------------------------------------
def test_copy_is_repeatable_and_keeps_the_source(lake, listing, read_back):
    lake.write_bytes("raw/ndjson/f.ndjson", b'{"a":1}\n')
    lake.copy("raw/ndjson/f.ndjson", "archive/validated/ndjson/f_1")
    lake.copy("raw/ndjson/f.ndjson", "archive/validated/ndjson/f_1")  # a retry
    assert listing(lake) == ["archive/validated/ndjson/f_1", "raw/ndjson/f.ndjson"]
    assert read_back(lake, "archive/validated/ndjson/f_1") == b'{"a":1}\n'
    assert read_back(lake, "raw/ndjson/f.ndjson") == b'{"a":1}\n'

    # Copying over an existing object replaces it.
    lake.write_bytes("raw/ndjson/g.ndjson", b"other")
    lake.copy("raw/ndjson/g.ndjson", "archive/validated/ndjson/f_1")
    assert read_back(lake, "archive/validated/ndjson/f_1") == b"other"


def test_copy_of_missing_source_raises_and_writes_nothing(lake, listing):
    with pytest.raises(OSError):  # FileNotFoundError locally, an S3 NoSuchKey error on S3
        lake.copy("raw/none", "archive/none")
    assert listing(lake) == []


def test_move_replaces_target_and_removes_source(lake, listing, read_back):
    lake.write_bytes("a/src", b"new")
    lake.write_bytes("b/dst", b"old")
    lake.move("a/src", "b/dst")
    assert listing(lake) == ["b/dst"]
    assert read_back(lake, "b/dst") == b"new"
    assert not lake.exists("a/src")


def test_delete_is_idempotent(lake, listing):
    lake.write_bytes("raw/ndjson/f", b"x")
    lake.write_bytes("raw/ndjson/keep", b"y")
    lake.delete("raw/ndjson/f")
    assert listing(lake) == ["raw/ndjson/keep"]
    lake.delete("raw/ndjson/f")  # already gone: fine
    lake.delete("never/existed/at/all")  # nor its folder: fine
    assert listing(lake) == ["raw/ndjson/keep"]


def test_delete_dir_removes_everything_below(lake, listing):
    lake.write_bytes("processed/p/a", b"1")
    lake.write_bytes("processed/p/sub/b", b"2")
    lake.write_bytes("processed/q/c", b"3")
    lake.delete_dir("processed/p")
    assert listing(lake) == ["processed/q/c"]
    lake.delete_dir("processed/p")  # again: fine
    assert listing(lake) == ["processed/q/c"]


# -- paths and roots -----------------------------------------------------------
@pytest.mark.parametrize("rel", ["../outside", "raw/../../outside", "raw/..", "a/../b", "/../etc/passwd"])
def test_paths_escaping_the_root_are_refused(lake, listing, rel):
    with pytest.raises(ValueError, match="escapes"):
        lake.write_bytes(rel, b"x")
    with pytest.raises(ValueError, match="escapes"):
        lake.read_bytes(rel)
    with pytest.raises(ValueError, match="escapes"):
        lake.delete(rel)
    with pytest.raises(ValueError, match="escapes"):
        lake.list_files(rel)
    with pytest.raises(ValueError, match="escapes"):
        lake.exists(rel)
    with pytest.raises(ValueError, match="escapes"):
        with lake.open_write(rel) as f:
            f.write(b"x")
    lake.write_bytes("in/file", b"x")
    with pytest.raises(ValueError, match="escapes"):
        lake.copy("in/file", rel)
    with pytest.raises(ValueError, match="escapes"):
        lake.move(rel, "in/other")
    assert listing(lake) == ["in/file"]


def test_names_with_dots_are_not_escapes(lake, read_back):
    lake.write_bytes("raw/a..b/..hidden..json", b"ok")
    assert read_back(lake, "raw/a..b/..hidden..json") == b"ok"


def test_nothing_escapes_a_local_root(tmp_path):
    root = tmp_path / "lake"
    root.mkdir()
    storage = LakeStorage(str(root))
    with pytest.raises(ValueError):
        storage.write_bytes("../sibling", b"x")
    assert sorted(os.listdir(tmp_path)) == ["lake"]


@pytest.mark.parametrize("root", ["s3://", "s3:///", "s3:///prefix/only"])
def test_s3_root_without_bucket_is_refused(root):
    with pytest.raises(ValueError, match="bucket"):
        LakeStorage(root)


@pytest.mark.parametrize("root", ["gs://bucket/lake", "hdfs://namenode/lake", "http://example.com/lake",
                                  "s3a://bucket/lake"])
def test_unsupported_scheme_is_refused(root):
    with pytest.raises(ValueError, match="unsupported scheme"):
        LakeStorage(root)


def test_local_roots_and_uris(tmp_path):
    root = tmp_path / "lake"
    root.mkdir()
    plain = LakeStorage(str(root))
    assert plain.is_local
    assert plain.uri() == str(root)
    assert plain.uri("raw/ndjson/x.ndjson") == f"{root}/raw/ndjson/x.ndjson"
    assert plain.uri("/raw/ndjson/") == f"{root}/raw/ndjson"
    assert plain.local_path("raw/x") == f"{root}/raw/x"
    assert plain.spark_direct and plain.spark_uri("processed/logs") == f"{root}/processed/logs"

    # A trailing slash and a file:// URI name the same root.
    for other in (LakeStorage(str(root) + "/"), LakeStorage(f"file://{root}")):
        assert other.uri() == str(root)
        other.write_bytes("raw/f", b"same place")
    assert (root / "raw" / "f").read_bytes() == b"same place"

    # A relative root is made absolute.
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert LakeStorage("lake").uri("x") == f"{root}/x"
    finally:
        os.chdir(cwd)


def test_s3_uris_and_spark_uri(s3_lake_root, moto_server):
    bucket, base = _bucket_and_base(s3_lake_root)
    storage = LakeStorage(s3_lake_root + "/", endpoint_url=moto_server)
    assert not storage.is_local
    assert storage.uri() == s3_lake_root
    assert storage.uri("processed/logs/x.parquet") == f"{s3_lake_root}/processed/logs/x.parquet"
    assert not storage.spark_direct
    with pytest.raises(ValueError):
        storage.spark_uri("processed/logs")
    with pytest.raises(ValueError):
        storage.local_path("processed/logs")

    s3a = LakeStorage(s3_lake_root, endpoint_url=moto_server, spark_s3_scheme="s3a")
    assert s3a.spark_direct
    assert s3a.spark_uri("processed/logs") == f"s3a://{bucket}/{base}/processed/logs"
    with pytest.raises(ValueError, match="escapes"):
        s3a.spark_uri("../x")


def test_s3_root_without_prefix_writes_at_bucket_top(s3_client, moto_server):
    import uuid

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    storage = LakeStorage(f"s3://{bucket}", endpoint_url=moto_server)
    storage.write_bytes("raw/ndjson/f", b"top")
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["raw/ndjson/f"]
    assert [f.path for f in storage.list_files("raw")] == ["raw/ndjson/f"]


def test_s3_keys_land_under_the_root_prefix(s3_lake, s3_lake_root, s3_client):
    bucket, base = _bucket_and_base(s3_lake_root)
    s3_lake.write_bytes("raw/ndjson/f.ndjson", b"x")
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == [f"{base}/raw/ndjson/f.ndjson"]


# -- endpoint configuration ------------------------------------------------------
def test_aws_endpoint_url_is_honoured(s3_lake_root, s3_client, moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    bucket, base = _bucket_and_base(s3_lake_root)
    s3_client.put_object(Bucket=bucket, Key=f"{base}/raw/ndjson/from-boto3.ndjson", Body=b'{"via":"boto3"}\n')

    storage = LakeStorage(s3_lake_root)  # no endpoint_url: the environment names moto
    assert storage.read_bytes("raw/ndjson/from-boto3.ndjson") == b'{"via":"boto3"}\n'
    assert [f.path for f in storage.list_files("raw")] == ["raw/ndjson/from-boto3.ndjson"]

    storage.write_bytes("validated/x", b"from arrow")
    assert s3_client.get_object(Bucket=bucket, Key=f"{base}/validated/x")["Body"].read() == b"from arrow"


def test_explicit_endpoint_url_wins_over_the_environment(s3_lake_root, s3_client, moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    bucket, base = _bucket_and_base(s3_lake_root)
    s3_client.put_object(Bucket=bucket, Key=f"{base}/k", Body=b"v")
    assert LakeStorage(s3_lake_root, endpoint_url=moto_server).read_bytes("k") == b"v"


@pytest.mark.parametrize("name", ["raw/json_gzip/a.json.gz", "x/b.zst", "y/c.bz2"])
def test_bytes_are_stored_as_given_whatever_the_extension(lake, read_back, tmp_path, name):
    """Arrow guesses compression from extensions; the lake must never (re)compress or inflate."""
    import gzip as _gzip

    data = _gzip.compress(b'{"a":1}\n')
    lake.write_bytes(name, data)
    assert read_back(lake, name) == data
    assert lake.read_bytes(name) == data
    with lake.open_read(name) as f:
        assert f.read() == data
    lake.download(name, str(tmp_path / "copy"))
    assert (tmp_path / "copy").read_bytes() == data


def test_a_small_s3_write_is_one_put_and_a_big_one_still_arrives_whole(s3_lake_root, moto_server, faulty_proxy,
                                                                       s3_keys):
    """An upload starts at its first part: a small object (metrics, manifests, claims) is one PutObject, not
    a multipart upload's three requests; a big one still goes up in parts and appears whole; a write to a
    bucket that does not exist still fails in the write."""
    bucket, prefix = s3_lake_root[len("s3://"):].split("/", 1)
    with faulty_proxy(moto_server, every=10**9, drop_every=10**9) as proxy:
        lake = LakeStorage(s3_lake_root, endpoint_url=proxy.url)
        lake.write_text("metrics/a/run.csv", "metric,value\nrows,3\n")
        assert proxy.requests == [("PUT", f"/{bucket}/{prefix}/metrics/a/run.csv")]
        proxy.requests.clear()
        big = os.urandom(12 * 1024 * 1024)  # above Arrow's 10 MB part
        with lake.open_write("data/big.bin") as f:
            f.write(big)
        assert [m for m, p in proxy.requests if "uploads" in p or "uploadId" in p] == ["POST", "PUT", "PUT", "POST"]
        assert lake.read_bytes("metrics/a/run.csv") == b"metric,value\nrows,3\n"
    assert LakeStorage(s3_lake_root, endpoint_url=moto_server).read_bytes("data/big.bin") == big
    assert s3_keys(s3_lake_root) == ["data/big.bin", "metrics/a/run.csv"]
    nowhere = LakeStorage("s3://no-such-bucket-here/lake", endpoint_url=moto_server)
    with pytest.raises(OSError, match="no-such-bucket-here|NoSuchBucket"):
        nowhere.write_bytes("a.csv", b"x")
