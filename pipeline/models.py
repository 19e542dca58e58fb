"""The models a pipeline job names, resolved to local paths or hub names before the run starts."""
from __future__ import annotations

import dataclasses
import os

from pixcap.models.resolve import resolve_model
from pixcap.schemas import Job, JobError
from pixcap.schemas import stages as registry


def resolve_models(job: Job) -> Job:
    """A copy of the job whose model fields are local paths or hub names (tiny:* built first), for
    every stage instance of the registry that runs a model; each stage's own check of its resolved
    model (a classifier's label) is made here, before anything runs."""
    changes = {}
    for found in registry.model_stages(job):
        spec, config = found.spec, found.config
        if not found.runs_model():
            continue
        resolved = {}
        for model_key in spec.model_keys:
            key, name = f"{found.name}.{model_key.key}", getattr(config, model_key.key)
            if model_key.kind == registry.SPACY:  # a package name, loaded by spaCy itself
                continue
            path = resolve_model(key, name, job.models_cache, checkpoint=model_key.kind == registry.OPEN_CLIP_CHECKPOINT)
            if model_key.kind == registry.WEIGHTS_FILE and not os.path.isfile(path):
                raise JobError(f"{key}: {name} is no weights file ({model_key.hint})")
            resolved[model_key.key] = path
        changes[found.name] = dataclasses.replace(config, **resolved)
    resolved_job = registry.with_configs(job, changes)
    for found in registry.model_stages(resolved_job):
        problem = registry.check(found) if found.runs_model() else ""
        if problem:
            raise JobError(problem)
    return resolved_job
