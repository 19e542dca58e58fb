"""One output, one configuration: the settings that change what an output holds.

A later run on the same output must have the same fingerprint; settings that change only how
fast the job runs (actors, batch sizes, ray.*, progress, where models are cached) may differ.
The resolved model revisions are part of it, so new weights under an old name are caught too.
"""
from __future__ import annotations

import dataclasses

from pixcap.schemas import Job
from pixcap.schemas import stages as registry
from pixcap.schemas.job import flatten

# Job keys (or dotted prefixes, ending in ".") that change speed or place, never content; each
# stage's own such keys are its config's speed_keys (schemas/stages.py).
# input_identity says how an input is recognised as unchanged, which decides what is refused, never
# what is written.
NOT_CONTENT = ("inputs", "output", "models_cache", "progress_seconds", "stall_seconds", "license", "input_identity",
               "storage_options", "storage_options.", "ray.")


def _is_content(key: str) -> bool:
    return not any(key == skip or (skip.endswith(".") and key.startswith(skip)) for skip in NOT_CONTENT)


def _stage_settings(job: Job) -> dict:
    """Each stage's content keys, under its instance's name (captioners.long.prompt)."""
    settings = {}
    for spec in registry.configured():
        for found in spec.instances(job):  # none for a stage that is off: an output made before it keeps its fingerprint
            later = getattr(spec.config, "added_later", {})
            settings.update({f"{found.name}.{key}": value for key, value in flatten(dataclasses.asdict(found.config)).items()
                             if key not in spec.config.speed_keys and not (key in later and later[key] == value)})
    return settings


def fingerprint(job: Job, revisions: dict) -> dict:
    """{dotted key: value} of every content setting, plus {"revision.STAGE": revision}."""
    stages = {spec.name for spec in registry.configured()}
    settings = {key: value for key, value in flatten(job.to_dict()).items()
                if key.partition(".")[0] not in stages and _is_content(key)}
    settings.update(_stage_settings(job))
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
