"""One output, one configuration: the settings that change what an output holds.

A later run on the same output must have the same fingerprint; settings that change only how
fast the job runs (actors, batch sizes, ray.*, progress, where models are cached) may differ.
The resolved model revisions are part of it, so new weights under an old name are caught too.
"""
from __future__ import annotations

from pixcap.schemas import Job
from pixcap.schemas import stages as registry
from pixcap.schemas.job import flatten

# Job keys (or dotted prefixes, ending in ".") that change speed or place, never content; each
# stage's own such keys are its config's speed_keys (schemas/stages.py).
NOT_CONTENT = ("inputs", "output", "models_cache", "progress_seconds", "stall_seconds", "storage_options",
               "storage_options.", "ray.")


def _is_content(key: str, skipped) -> bool:
    return key not in skipped and not any(key == skip or (skip.endswith(".") and key.startswith(skip))
                                          for skip in NOT_CONTENT)


def fingerprint(job: Job, revisions: dict) -> dict:
    """{dotted key: value} of every content setting, plus {"revision.STAGE": revision}."""
    skipped = registry.speed_keys()
    settings = {key: value for key, value in flatten(job.to_dict()).items() if _is_content(key, skipped)}
    for spec in registry.configured():
        if not spec.enabled(job):  # an optional stage that is off: an output made before it existed keeps its fingerprint
            settings = {key: value for key, value in settings.items() if not key.startswith(f"{spec.name}.")}
    settings.update({f"revision.{stage}": revision for stage, revision in revisions.items()})
    return dict(sorted(settings.items()))


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def differences(recorded: dict, current: dict) -> list:
    """'key: recorded -> current' for every setting that differs."""
    keys = sorted(set(recorded) | set(current))
    return [f"{key}: {_short(recorded.get(key))} -> {_short(current.get(key))}"
            for key in keys if recorded.get(key) != current.get(key)]
