"""One run per output folder: a lock file holding the owner's host and pid.

A lock whose process is gone (a killed run) is stale and is taken over; a live one refuses.
"""
from __future__ import annotations

import json
import os
import socket

import psutil

LOCK_NAME = ".pixcap.lock"


class OutputInUse(Exception):
    """Another live run holds the output folder."""


class OutputLock:
    def __init__(self, out_dir: str):
        self.path = os.path.join(out_dir, LOCK_NAME)

    def _owner_alive(self, owner: dict) -> bool:
        if owner.get("host") != socket.gethostname():
            return True  # cannot tell for another host; do not steal its lock
        try:
            return psutil.Process(owner["pid"]).create_time() == owner.get("started")
        except (psutil.NoSuchProcess, KeyError, TypeError):
            return False

    def acquire(self) -> bool:
        """Take the lock; returns True when a stale lock was taken over."""
        stale = False
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    with open(self.path) as f:
                        owner = json.load(f)
                except (OSError, ValueError):
                    owner = {}
                if owner and self._owner_alive(owner):
                    raise OutputInUse(
                        f"output {os.path.dirname(self.path)} is in use by pid {owner.get('pid')} on {owner.get('host')}"
                        f" (remove {self.path} if that run is gone)"
                    ) from None
                os.remove(self.path)
                stale = True
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return stale

    def release(self) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
