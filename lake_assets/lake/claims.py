"""Claims with a lease: how concurrent runs agree on who does a piece of work.

A claim on a name (a raw file's path, a domain's build) is an object under
``_lake/claims/<name>/<generation>.json``, created with
:meth:`~lake_assets.lake.LakeStorage.create_exclusive` (a hard link on a local
lake, ``If-None-Match: *`` on S3): of any number of runs racing for the same
generation, exactly one creates it. The claim holds until it is released or its
lease runs out; a run killed while holding one leaves it to expire, and the next
run takes the *next* generation (again exclusively), so a takeover can never be
won twice and no claim is ever overwritten. Releasing deletes every generation.

The lease is a promise to finish within ``lease`` seconds (``LAKE_CLAIM_LEASE_SECONDS``,
10 minutes by default); a holder working longer renews it (:meth:`Claim.renew`). A
holder on this machine whose process is gone (killed) is not waited for; one on
another machine is, until its lease runs out.
Clocks matter only to within the lease: a claim is expired when its ``expires_at``
(written by the holder, UTC) is in the past for the reader.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import time
from dataclasses import dataclass

from lake_assets.lake.layout import join
from lake_assets.lake.storage import LakeStorage

ZONE = "_lake/claims"
DEFAULT_LEASE_SECONDS = 600.0


def lease_seconds() -> float:
    return float(os.environ.get("LAKE_CLAIM_LEASE_SECONDS") or DEFAULT_LEASE_SECONDS)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: read from its object."""

    run_id: str
    host: str
    pid: int
    claimed_at: str
    expires_at: str
    generation: int

    @property
    def expired(self) -> bool:
        """The lease ran out, or the holder is a process on this machine that no longer runs
        (a run killed on this host need not be waited for: its claim is as good as expired)."""
        return dt.datetime.fromisoformat(self.expires_at) <= _now() or not self._alive()

    def _alive(self) -> bool:
        if self.host != socket.gethostname():
            return True  # another machine's process: only its lease says
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def __str__(self) -> str:
        return f"run {self.run_id} ({self.host} pid {self.pid}, until {self.expires_at})"


class Claim:
    """One name's claims in one lake."""

    def __init__(self, storage: LakeStorage, name: str, *, run_id: str, lease: float | None = None):
        self.storage, self.name, self.run_id = storage, name.strip("/"), run_id
        self.lease = lease if lease is not None else lease_seconds()
        self.generation: int | None = None

    @property
    def folder(self) -> str:
        return join(ZONE, self.name)

    def _path(self, generation: int) -> str:
        return join(self.folder, f"{generation:06d}.json")

    def holder(self) -> Holder | None:
        """The newest generation's holder (expired or not), or None when nobody has claimed."""
        files = sorted(f.path for f in self.storage.list_files(self.folder, hidden=True)
                       if f.path.endswith(".json"))
        for path in reversed(files):
            try:
                data = json.loads(self.storage.read_text(path))
            except (OSError, ValueError):  # released meanwhile (S3 says so as an OSError)
                continue
            return Holder(**data)
        return None

    def acquire(self) -> Holder | None:
        """Take the claim: None when this run holds it now, else who does (a live holder)."""
        while True:
            current = self.holder()
            if current is not None and current.run_id == self.run_id and not current.expired:
                self.generation = current.generation
                return None
            if current is not None and not current.expired:
                return current
            generation = 0 if current is None else current.generation + 1
            if self._write(generation, exclusive=True):
                self.generation = generation
                return None
            # Someone took that generation first: look again (theirs is live, or expired already).

    def _write(self, generation: int, *, exclusive: bool) -> bool:
        now = _now()
        body = json.dumps({"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "claimed_at": now.isoformat(),
                           "expires_at": (now + dt.timedelta(seconds=self.lease)).isoformat(),
                           "generation": generation}).encode()
        return self.storage.create_exclusive(self._path(generation), body)

    def renew(self) -> bool:
        """Extend the lease by taking the next generation; False if the claim was lost meanwhile."""
        current = self.holder()
        if current is None or current.run_id != self.run_id:
            return False
        if self._write(current.generation + 1, exclusive=True):
            self.generation = current.generation + 1
            return True
        return False

    @contextlib.contextmanager
    def renewed(self):
        """Keep the lease alive while the block runs (a renewal every third of the lease)."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease / 3):
                self.renew()

        thread = threading.Thread(target=renew, name=f"lease:{self.name}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def release(self) -> None:
        """Give the claim up (every generation goes: the next claimant starts afresh)."""
        for f in self.storage.list_files(self.folder, hidden=True):
            if f.path.endswith(".json"):
                self.storage.delete(f.path)
        if self.storage.is_local:  # an empty folder left behind is harmless; tidy it if it is empty
            with contextlib.suppress(OSError):
                os.rmdir(self.storage.local_path(self.folder))
        self.generation = None


def wait_for(claim: Claim, *, timeout: float, poll: float = 1.0,
             waiting=lambda holder: None) -> Holder | None:
    """Acquire ``claim``, waiting up to ``timeout`` seconds for a live holder to finish or expire.

    Returns None once held, or the holder still in the way when time ran out.
    ``waiting(holder)`` is called once when the wait begins (to say so).
    """
    deadline = time.monotonic() + timeout
    said = False
    while True:
        holder = claim.acquire()
        if holder is None:
            return None
        if time.monotonic() >= deadline:
            return holder
        if not said:
            waiting(holder)
            said = True
        time.sleep(poll)
