"""Fault injection for the crash tests: `PIXCAP_KILL_AT=point:n[:action]` acts the n-th time a
process reaches `point`, so a test can fail a run at an exact place instead of racing a timer.

Actions: `self` (the default) SIGKILLs the process that reached the point (the driver, or the
Ray worker running a read/decode task or a model actor); `driver` SIGKILLs the driver from
wherever the point is reached (the driver hands its pid to its Ray workers, see `worker_env`);
`both` SIGKILLs the driver and then the process itself, as when the whole machine is lost;
`hold` writes the Ray node id of the process into the PIXCAP_KILL_ONCE file and sleeps, so a
test can remove that node while the point's work is under way;
`enospc` raises OSError(ENOSPC), a full disk. With `PIXCAP_KILL_ONCE=path` a point fires only
if it can create that file, so once across processes and restarts (else a restarted actor would
be killed again forever). Unset in normal runs, where a check is one dict lookup.

Several faults in one run: specs separated by commas (`caption:2,decode:1`), at most one per point;
each then has a marker of its own, `path.POINT` (`path` itself when there is one spec).

Points: read, decode, and each model stage by its name: caption, nouns, clip, captioners.NAME
(per batch, in Ray workers); fragment (the driver, per fragment it records); shard_tar (a commit task, once a shard's tar has its first 10 KB in
the temp file); shard_commit (a commit task, between a shard's rejects and its stats); subset_commit (select,
between a subset shard's tar and its stats).
"""
from __future__ import annotations

import errno
import os
import signal
import threading
import time

ENV = "PIXCAP_KILL_AT"
ONCE_ENV = "PIXCAP_KILL_ONCE"
DRIVER_ENV = "PIXCAP_DRIVER_PID"
HOLD_SECONDS = 120.0  # long enough for a test to remove the node; the removal ends the sleep
_counts = {}
_lock = threading.Lock()  # a driver without Ray commits shards on two threads


def worker_env() -> dict:
    """Ray remote args that give workers the driver's failpoint settings and pid ({} when unset):
    workers are started by the raylet, not by the driver, and do not inherit its environment."""
    if not os.environ.get(ENV):
        return {}
    env = {name: os.environ[name] for name in (ENV, ONCE_ENV) if os.environ.get(name)}
    return {"runtime_env": {"env_vars": {**env, DRIVER_ENV: str(os.getpid())}}}


def _specs(spec: str) -> dict:
    """point -> (n, action) of PIXCAP_KILL_AT's comma-separated specs."""
    found = {}
    for one in spec.split(","):
        name, _, rest = one.strip().partition(":")
        if name in found:
            raise ValueError(f"{ENV}={spec}: point {name!r} named twice")
        n, _, action = rest.partition(":")
        found[name] = (int(n or 1), action)
    return found


def _marker(point: str, several: bool) -> str:
    """The once-marker of `point`: PIXCAP_KILL_ONCE itself for one spec, PIXCAP_KILL_ONCE.POINT for several."""
    once = os.environ.get(ONCE_ENV)
    return f"{once}.{point}" if once and several else once


def reached(point: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    specs = _specs(spec)
    if point not in specs:
        return
    n, action = specs[point]
    with _lock:
        _counts[point] = _counts.get(point, 0) + 1
        if _counts[point] != n:
            return
        once = _marker(point, several=len(specs) > 1)
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
    if action not in ("", "self", "driver", "both", "hold", "enospc"):
        raise ValueError(f"{ENV}={spec}: unknown action {action!r}")
    if action == "hold":
        import ray

        with open(once, "w") as f:
            f.write(ray.get_runtime_context().get_node_id())
        time.sleep(HOLD_SECONDS)
        return
    if action == "enospc":
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected at {point})")
    if action in ("driver", "both"):  # "both": the whole machine is lost, driver and worker
        os.kill(int(os.environ.get(DRIVER_ENV, os.getpid())), signal.SIGKILL)
    if action != "driver":
        os.kill(os.getpid(), signal.SIGKILL)
