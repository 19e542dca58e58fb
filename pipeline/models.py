"""Resolve the models a job names.

`tiny:llava` and `tiny:clip` are the offline tiny models, built on first use into
`models_cache`. A name that starts with /, ./, ../ or ~ is a local path and must exist. Anything
else (llava-hf/llava-1.5-7b-hf, ViT-L-14, openai) goes to transformers or open_clip unchanged.
"""
from __future__ import annotations

import dataclasses
import os

from pixcap.schemas import Job, JobError
from pixcap.schemas.job import local_model_path

# tiny reference -> the key of build_tiny_models' result, per job field
TINY_REFS = {
    ("caption.model", "tiny:llava"): "llava",
    ("clip.model", "tiny:clip"): "clip_config",
    ("clip.pretrained", "tiny:clip"): "clip_checkpoint",
}


def _resolve(key: str, name: str, cache: str) -> str:
    if name.startswith("tiny:"):
        if (key, name) not in TINY_REFS:
            raise JobError(f"{key}: unknown tiny model {name!r}")
        from .tiny_models import build_tiny_models

        return str(build_tiny_models(cache)[TINY_REFS[(key, name)]])
    return local_model_path(key, name)


def resolve_models(job: Job) -> Job:
    """A copy of the job whose model fields are local paths or hub names."""
    cache = os.path.expanduser(job.models_cache)
    caption = job.caption
    if caption.backend == "hf":
        caption = dataclasses.replace(caption, model=_resolve("caption.model", caption.model, cache))
    clip = dataclasses.replace(
        job.clip,
        model=_resolve("clip.model", job.clip.model, cache),
        pretrained=_resolve("clip.pretrained", job.clip.pretrained, cache),
    )
    return dataclasses.replace(job, caption=caption, clip=clip)
