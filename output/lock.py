"""One run per output: a lock file with a lease, on any Storage (local disk, NFS, S3).

The lock holds its owner's host, pid, start time, a token, and when its lease ends. The holder
renews the lease on a background thread every third of its length. Another run refuses while
the holder lives: on the same host, while its process lives (whatever the lease says); from
another host, while the lease runs. A dead holder's lock on the same host, and any lock whose
lease has ended, is taken over, safely:

- the lock is only ever created by `create_exclusive` (a hard link locally, a conditional put on
  S3), so of two runs that find no lock, one creates it;
- a taker first claims the stale lock by creating `LOCK.takeover-<digest of its content>`
  exclusively, so of two runs taking over the same stale lock, one proceeds; only the claim's
  holder deletes the stale lock, then creates its own, waits a moment and reads it back;
- a holder whose lock was claimed, replaced or removed stops renewing, and `check()` raises.
A holder that stalls longer than its lease (a suspended process, a partitioned host) can lose
the lock; the one race left is its renewal landing after a taker read its new lock back.

Locally, runs on one host also take the lock one at a time under flock on the output folder.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from typing import Optional, Union

import psutil

from pixcap.schemas.manifest import LOCK_NAME  # noqa: F401 (re-exported for callers and tests)

from .storage import Storage

LEASE_SECONDS = 60.0  # another host takes over a lock not renewed for this long
ATTEMPTS = 20  # reads of a lock that keeps changing before giving up
CONFIRM_SECONDS = 0.5  # a taker reads its new lock back after this, past a stalled holder's last write


class OutputInUse(Exception):
    """Another live run holds the output folder."""


class LockLost(RuntimeError):
    """This run's lease ended and another run took the output over."""


def describe(owner: dict) -> str:
    """'pid 123 on host since 2024-05-01 10:00:00', or 'an unreadable lock'."""
    if not owner:
        return "an unreadable lock"
    since = owner.get("started")
    when = f" since {_clock(since)}" if isinstance(since, (int, float)) else ""
    return f"pid {owner.get('pid')} on {owner.get('host')}{when}"


def _clock(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def owner_alive(owner: dict) -> bool:
    """Whether the owner's process runs; for another host, True (see lease_running)."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        process = psutil.Process(owner["pid"])
        return process.create_time() == owner.get("started") and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return False


def holds(owner: dict, now: float) -> bool:
    """Whether a lock's owner still holds it. The same host asks the process table (a live
    process is never taken over, a dead one at once); another host's lease must have ended.
    A lock without a lease (an older pixcap) from another host is never taken over."""
    if not owner:
        return False
    if owner.get("host") == socket.gethostname():
        return owner_alive(owner)
    expires = owner.get("expires")
    return not isinstance(expires, (int, float)) or now < expires


def _claim_name(raw: bytes) -> str:
    return f"{LOCK_NAME}.takeover-{hashlib.sha256(raw).hexdigest()[:16]}"


class OutputLock:
    def __init__(self, storage: Union[Storage, str], lease_seconds: float = LEASE_SECONDS):
        self.storage = storage if isinstance(storage, Storage) else Storage(storage)
        self.path = self.storage.url(LOCK_NAME)
        self.lease = lease_seconds
        self.me = None  # our lock's content, while we hold it
        self.raw = b""  # ... as written
        self.claim = None  # the takeover claim we hold while replacing a stale lock
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._renewer = None

    # -- reading ---------------------------------------------------------------------------
    def _read(self) -> tuple:
        """(raw bytes, owner): (None, None) when there is no lock, owner {} when unreadable."""
        try:
            raw = self.storage.read_bytes(LOCK_NAME)
        except FileNotFoundError:
            return None, None
        try:
            owner = json.loads(raw)
        except ValueError:
            return raw, {}
        return raw, owner if isinstance(owner, dict) else {}

    def owner(self) -> Optional[dict]:
        """The lock file's content: None when there is no lock, {} when it cannot be read."""
        return self._read()[1]

    # -- taking ----------------------------------------------------------------------------
    def acquire(self) -> Optional[dict]:
        """Take the lock. Returns the owner of a stale lock that was taken over ({} for an
        unreadable one), None when there was no lock; raises OutputInUse when a live run holds it."""
        with self._same_host_turn():
            stale = None
            for _ in range(ATTEMPTS):
                raw, owner = self._read()
                if raw is not None:
                    if holds(owner, time.time()):
                        raise OutputInUse(self._in_use(owner))
                    if not self._take_over(raw, owner):
                        continue  # it changed under us: judge it again
                    stale = owner
                if self._create():
                    self._start_renewing()
                    self._remove_dead_claims()
                    return stale
        raise OutputInUse(f"output {self.storage.url()}: its lock kept changing while this run tried to take it; "
                          "another run is starting there")

    @contextlib.contextmanager
    def _same_host_turn(self):
        """Runs on one host take the lock one at a time (flock, dropped by the kernel when a
        process dies). Other hosts and object stores rely on the claims alone."""
        if not self.storage.local:
            yield
            return
        guard = os.open(self.storage.path(), os.O_RDONLY)
        try:
            with contextlib.suppress(OSError):  # a file system without flock on folders (some NFS)
                fcntl.flock(guard, fcntl.LOCK_EX)
            yield
        finally:
            os.close(guard)

    def _in_use(self, owner: dict) -> str:
        message = f"output {self.storage.url()} is in use by another pixcap run: {describe(owner)}"
        expires = owner.get("expires")
        if owner.get("host") != socket.gethostname() and isinstance(expires, (int, float)):
            return f"{message} (its lease runs to {_clock(expires)}; an unrenewed lease is taken over then)"
        return f"{message} (remove {self.path} if that run is gone)"

    def _take_over(self, raw: bytes, owner: dict) -> bool:
        """Remove a stale lock, if this run is the one that claims it. False when the lock
        changed meanwhile; OutputInUse when another run is taking it over."""
        claim = _claim_name(raw)
        if not self.storage.create_exclusive(claim, json.dumps(self._content()).encode()):
            claimant = self._read_claim(claim)
            if claimant and holds(claimant, time.time()):
                raise OutputInUse(f"output {self.storage.url()} is being taken over by another pixcap run: "
                                  f"{describe(claimant)}")
            self._remove_claim_of(claim, claimant)  # a taker that died: try again
            return False
        if self._read()[0] != raw:  # taken over (or renewed) between our read and our claim
            self.storage.remove(claim)
            return False
        self.storage.remove(LOCK_NAME)
        self.claim = claim
        return True

    def _remove_claim_of(self, claim: str, claimant: dict) -> None:
        """Remove a claim if it still holds what was judged dead (not a claim made since)."""
        if self._read_claim(claim) == claimant:
            self.storage.remove(claim)

    def _remove_dead_claims(self) -> None:
        """Claims left by takers that died part-way, once this run holds the lock."""
        prefix = f"{LOCK_NAME}.takeover-"
        for name in self.storage.listdir(""):
            if name.startswith(prefix) and name != self.claim:
                claimant = self._read_claim(name)
                if not holds(claimant, time.time()):
                    self._remove_claim_of(name, claimant)

    def _read_claim(self, claim: str) -> dict:
        try:
            owner = json.loads(self.storage.read_bytes(claim))
        except (FileNotFoundError, ValueError):
            return {}
        return owner if isinstance(owner, dict) else {}

    def _content(self) -> dict:
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}
        return {**me, "token": uuid.uuid4().hex, "lease_seconds": self.lease, "expires": time.time() + self.lease}

    def _create(self) -> bool:
        """Create our lock, and read it back after a moment: a stalled holder's last renewal may
        land just after our create, and then it keeps the lock."""
        me = self._content()
        raw = json.dumps(me).encode()
        if not self.storage.create_exclusive(LOCK_NAME, raw):
            self._drop_claim()
            return False
        if self.claim is not None:
            time.sleep(CONFIRM_SECONDS)
        if self._read()[0] != raw:
            self._drop_claim()
            return False
        self.me, self.raw = me, raw
        # The claim has done its work: a later claimant of the old lock reads ours and stands down.
        self._drop_claim()
        return True

    def _drop_claim(self) -> None:
        if self.claim is not None:
            self.storage.remove(self.claim)
            self.claim = None

    # -- holding ---------------------------------------------------------------------------
    def _start_renewing(self) -> None:
        self._stop.clear()
        self.lost.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="pixcap-lock-lease", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                if not self.renew():
                    self.lost.set()
                    return
            except Exception:  # a store that failed once: try again next time, while the lease lasts
                if time.time() >= self.me["expires"]:
                    self.lost.set()
                    return

    def renew(self) -> bool:
        """Extend the lease; False when the lock is no longer ours (replaced, removed, or
        claimed by a run that found it expired)."""
        if self._read()[0] != self.raw or self.storage.exists(_claim_name(self.raw)):
            return False
        me = {**self.me, "expires": time.time() + self.lease}
        raw = json.dumps(me).encode()
        self.storage.write_bytes(LOCK_NAME, raw)
        self.me, self.raw = me, raw
        return True

    def check(self) -> None:
        """Raise LockLost when this run's lease was lost (call it before writing anything)."""
        if self.lost.is_set():
            raise LockLost(f"output {self.storage.url()}: this run's lock lease ran out and another run may have "
                           "taken the output over; stopped")

    def release(self) -> None:
        """Stop renewing, and remove the lock if it is still this run's."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        if self.me is not None and self._read()[0] == self.raw:
            self.storage.remove(LOCK_NAME)
        self._drop_claim()
        self.me, self.raw = None, b""


def take_lock(storage: Storage, stream, what: str) -> OutputLock:
    """The lock of an output, taken for a run: a live holder is a JobError (exit code 2), a
    stale one is taken over with one line on stream."""
    from pixcap.schemas import JobError

    lock = OutputLock(storage)
    try:
        stale = lock.acquire()
    except OutputInUse as e:
        raise JobError(str(e)) from None
    if stale is not None:
        print(f"pixcap: took over the stale lock of a run that is gone ({describe(stale)}); resuming its {what}",
              file=stream)
    return lock
