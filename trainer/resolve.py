"""The models a train job names (text encoder, VAE, load_from), resolved before training starts."""
from __future__ import annotations

import dataclasses

from pixcap.models.resolve import resolve_model
from pixcap.schemas.train_job import TrainJob


def resolve_models(job: TrainJob) -> TrainJob:
    """A copy of the job whose text_encoder, vae and load_from are local paths or hub ids."""
    fields = {key: resolve_model(key, getattr(job, key), job.models_cache) for key in ("text_encoder", "vae")}
    if job.load_from is not None:
        fields["load_from"] = resolve_model("load_from", job.load_from, job.models_cache)
    return dataclasses.replace(job, **fields)
