"""Fault injection for the crash tests: `PIXCAP_KILL_AT=point:n` makes the process SIGKILL
itself the n-th time it reaches `point`, so a test can kill a run at an exact place instead of
racing a timer. Unset in normal runs, where a check is one dict lookup."""
from __future__ import annotations

import os
import signal

ENV = "PIXCAP_KILL_AT"
_counts = {}


def reached(point: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, n = spec.partition(":")
    if name != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] >= int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)
