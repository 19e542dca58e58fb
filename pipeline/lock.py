"""One run per output folder: a lock file holding the owner's host, pid and start time.

A lock whose process is gone (a killed run) is stale and is taken over; a live one refuses.
The lock file is created with its content in one step (a hard link of a written temp file),
and runs on one host take the lock one at a time (flock on the output folder, which the kernel
drops when a process dies), so two runs never both take over the same stale lock.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from typing import Optional

import psutil

LOCK_NAME = ".pixcap.lock"


class OutputInUse(Exception):
    """Another live run holds the output folder."""


def describe(owner: dict) -> str:
    """'pid 123 on host since 2024-05-01 10:00:00', or 'an unreadable lock'."""
    if not owner:
        return "an unreadable lock"
    since = owner.get("started")
    when = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if isinstance(since, (int, float)) else ""
    return f"pid {owner.get('pid')} on {owner.get('host')}{when}"


def owner_alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # cannot tell for another host; do not steal its lock
    try:
        process = psutil.Process(owner["pid"])
        return process.create_time() == owner.get("started") and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return False


class OutputLock:
    def __init__(self, out_dir: str):
        self.dir = out_dir
        self.path = os.path.join(out_dir, LOCK_NAME)
        self.me = None

    def owner(self) -> Optional[dict]:
        """The lock file's content: None when there is no lock, {} when it cannot be read."""
        try:
            with open(self.path) as f:
                owner = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return owner if isinstance(owner, dict) else {}

    def acquire(self) -> Optional[dict]:
        """Take the lock. Returns the owner of a stale lock that was taken over ({} for an
        unreadable one), None when there was no lock; raises OutputInUse when a live run holds it."""
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}
        guard = os.open(self.dir, os.O_RDONLY)
        try:
            try:
                fcntl.flock(guard, fcntl.LOCK_EX)
            except OSError:
                pass  # a file system without flock on folders (NFS): the lock file alone then
            stale = None
            while True:
                owner = self.owner()
                if owner is not None:
                    if owner and owner_alive(owner):
                        raise OutputInUse(
                            f"output {self.dir} is in use by another pixcap run: {describe(owner)}"
                            f" (remove {self.path} if that run is gone)"
                        )
                    stale = owner
                    try:
                        os.remove(self.path)
                    except FileNotFoundError:
                        pass
                if self._create(me):
                    self.me = me
                    return stale
        finally:
            os.close(guard)  # drops the flock

    def _create(self, me: dict) -> bool:
        """Create the lock file with its content at once; False when one appeared meanwhile."""
        tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "w") as f:
            json.dump(me, f)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: create, then write
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return True
        finally:
            os.remove(tmp)

    def release(self) -> None:
        """Remove the lock if it is still this run's."""
        if self.me is not None and self.owner() == self.me:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        self.me = None
