"""Resolve the model names a train job gives: tiny:t5 and tiny:vae are built on first use into models_cache.

A name that starts with /, ./, ../ or ~ is a local path and must exist; anything else (a hub id such as
PixArt-alpha/PixArt-XL-2-1024-MS) goes to transformers/diffusers unchanged.
"""
from __future__ import annotations

import dataclasses
import os

from pixcap.schemas import JobError
from pixcap.schemas.job import local_model_path
from pixcap.schemas.train_job import TrainJob

TINY_REFS = {"tiny:t5": "t5", "tiny:vae": "vae"}  # -> the key of build_tiny_trainer_models' result


def resolve_model(key: str, name: str, cache: str) -> str:
    """A local path or hub id for one job field."""
    if name.startswith("tiny:"):
        if name not in TINY_REFS:
            raise JobError(f"{key}: unknown tiny model {name!r}; known: {', '.join(TINY_REFS)}")
        from .tiny import build_tiny_trainer_models

        return str(build_tiny_trainer_models(os.path.expanduser(cache))[TINY_REFS[name]])
    return local_model_path(key, name)


def resolve_models(job: TrainJob) -> TrainJob:
    """A copy of the job whose text_encoder, vae and load_from are local paths or hub ids."""
    fields = {key: resolve_model(key, getattr(job, key), job.models_cache) for key in ("text_encoder", "vae")}
    if job.load_from is not None:
        fields["load_from"] = resolve_model("load_from", job.load_from, job.models_cache)
    return dataclasses.replace(job, **fields)
