"""The models a pipeline job names, resolved to local paths or hub names before the run starts."""
from __future__ import annotations

import dataclasses
import os

from pixcap.models.resolve import resolve_model
from pixcap.schemas import Job, JobError
from pixcap.schemas import stages as registry


def resolve_models(job: Job) -> Job:
    """A copy of the job whose model fields are local paths or hub names (tiny:* built first), for
    every stage of the registry that runs a model."""
    changes = {}
    for spec in registry.model_stages(job):
        config = spec.config_of(job)
        if not spec.runs_model(config):
            continue
        resolved = {}
        for model_key in spec.model_keys:
            key, name = f"{spec.name}.{model_key.key}", getattr(config, model_key.key)
            if model_key.kind == registry.SPACY:  # a package name, loaded by spaCy itself
                continue
            path = resolve_model(key, name, job.models_cache, checkpoint=model_key.kind == registry.OPEN_CLIP_CHECKPOINT)
            if model_key.kind == registry.WEIGHTS_FILE and not os.path.isfile(path):
                raise JobError(f"{key}: {name} is no weights file ({model_key.hint})")
            resolved[model_key.key] = path
        changes[spec.name] = dataclasses.replace(config, **resolved)
    return dataclasses.replace(job, **changes)
