"""Who made an output, when, with what: one entry per run, appended to the manifest's history."""
from __future__ import annotations

import datetime
import getpass
import importlib.metadata
import os
import platform
import shlex
import socket
import subprocess
from functools import lru_cache
from pathlib import Path


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return str(os.getuid())


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the checkout pixcap runs from, '+dirty' when it has changes; '' when installed."""
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return ""
    try:
        run = lambda *args: subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10)
        commit = run("rev-parse", "HEAD").stdout.strip()
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return commit + ("+dirty" if commit and dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def pixcap_version() -> str:
    try:
        return importlib.metadata.version("pixcap")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run_entry(command: list) -> dict:
    """The start of a run's history entry; the run adds what it did when it ends."""
    return {
        "started": utc_now(),
        "ended": None,
        "status": "running",
        "host": socket.gethostname(),
        "user": _user(),
        "command": shlex.join(command),
        "pixcap": pixcap_version(),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "os": platform.platform(),
    }
