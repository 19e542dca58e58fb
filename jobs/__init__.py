"""The example jobs, shipped as package data so that `pip install` users have them too.

`pixcap run local` and `pixcap train train_tiny` find a job here by its bare name when no file of
that name exists; `pixcap jobs` lists them and `pixcap jobs NAME` prints one to copy and edit.
"""
from __future__ import annotations

import typing
from pathlib import Path

SUFFIX = ".yaml"
FOLDER = Path(__file__).resolve().parent  # installed as files (never zipped): a plain path


def shipped_jobs() -> typing.Dict[str, str]:
    """{name: path} of every shipped job, sorted by name."""
    return {path.stem: str(path) for path in sorted(FOLDER.glob(f"*{SUFFIX}"))}


def job_path(name: str) -> typing.Optional[str]:
    """The shipped job called `name` (a bare name such as `local`), or None."""
    return shipped_jobs().get(name) if name and "/" not in name and "\\" not in name else None


def summary(path: str) -> str:
    """A job's first comment line: what it is for."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                return line.lstrip("#").strip()
            if line.strip():
                break
    return ""
