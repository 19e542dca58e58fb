"""One line from a Ray task error, for the user: which stage failed, and the root cause.

Ray keeps a task's exception only as text (with ANSI colours and Ray's own frames), so the
stage name and the user code's first exception line are read back from that text.
"""
from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b[^:]*: ")
_TASK_NAME = re.compile(r"ray::(\S+)\(\)")


def stage_failure(e: Exception) -> str:
    """'stage NAME failed: CAUSE; ...' from a RayError."""
    text = _ANSI.sub("", str(e))
    where = _TASK_NAME.search(text)
    causes = [line for line in text.splitlines() if _EXCEPTION_LINE.match(line)]
    cause = causes[0] if causes else f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
    return f"stage {where.group(1) if where else '?'} failed: {cause}; fix that and run again to continue"
