"""Claims with a lease, on a folder and on S3 (moto's server): exactly one winner among racing
processes, a live holder respected, an expired or dead one taken over by the next generation."""
from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from lake_assets.lake import LakeStorage
from lake_assets.lake import claims
from lake_assets.lake.claims import Claim


def _race(args) -> bool:
    root, endpoint, key, i = args
    storage = LakeStorage(root, endpoint_url=endpoint)
    return storage.create_exclusive(key, f"writer {i}".encode())


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "lake"), None
    return request.getfixturevalue("s3_lake_root"), request.getfixturevalue("moto_server")


def test_create_exclusive_has_exactly_one_winner_among_racing_processes(lake):
    root, endpoint = lake
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        won = pool.map(_race, [(root, endpoint, "_lake/claims/x/000000.json", i) for i in range(12)])
    assert won.count(True) == 1
    storage = LakeStorage(root, endpoint_url=endpoint)
    assert storage.read_text("_lake/claims/x/000000.json") == f"writer {won.index(True)}"
    assert storage.create_exclusive("_lake/claims/x/000000.json", b"again") is False


def test_a_live_holder_is_respected_an_expired_one_taken_over_and_release_clears(lake, monkeypatch):
    root, endpoint = lake
    storage = LakeStorage(root, endpoint_url=endpoint)
    first = Claim(storage, "raw/a/f.csv", run_id="run-1", lease=60)
    assert first.acquire() is None and first.generation == 0
    assert first.acquire() is None  # its own claim: held already
    second = Claim(storage, "raw/a/f.csv", run_id="run-2", lease=60)
    holder = second.acquire()
    assert holder is not None and holder.run_id == "run-1" and not holder.expired

    # The first holder's lease ran out (its clock says so): the next generation goes to run-2.
    path = "_lake/claims/raw/a/f.csv/000000.json"
    data = json.loads(storage.read_text(path))
    storage.write_text(path, json.dumps({**data, "expires_at": "2000-01-01T00:00:00+00:00"}))
    assert second.acquire() is None and second.generation == 1
    assert first.acquire().run_id == "run-2"  # and run-1 now sees run-2 holding it
    assert second.renew() and second.generation == 2 and second.holder().run_id == "run-2"

    second.release()
    assert storage.list_files("_lake/claims/raw/a", hidden=True) == []
    assert Claim(storage, "raw/a/f.csv", run_id="run-3").acquire() is None


def test_a_holder_whose_process_is_gone_is_not_waited_for(tmp_path, monkeypatch):
    storage = LakeStorage(str(tmp_path))
    dead = Claim(storage, "build/logs", run_id="killed", lease=3600)
    monkeypatch.setattr(claims.os, "getpid", lambda: 2 ** 22 + 12345)  # no such process
    assert dead.acquire() is None
    monkeypatch.undo()
    holder = Claim(storage, "build/logs", run_id="next").holder()
    assert holder.run_id == "killed" and holder.expired  # lease far off, but nobody holds it
    assert Claim(storage, "build/logs", run_id="next").acquire() is None
    # A live process on this machine (this one) is waited for.
    live = Claim(storage, "build/commerce", run_id="me", lease=3600)
    assert live.acquire() is None
    assert not Claim(storage, "build/commerce", run_id="other").holder().expired
    assert os.getpid() == json.loads(storage.read_text("_lake/claims/build/commerce/000000.json"))["pid"]
