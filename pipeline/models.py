"""The models a pipeline job names, resolved to local paths or hub names before the run starts."""
from __future__ import annotations

import dataclasses

from pixcap.models.resolve import resolve_model
from pixcap.schemas import Job


def resolve_models(job: Job) -> Job:
    """A copy of the job whose model fields are local paths or hub names (tiny:* built first)."""
    cache = job.models_cache
    caption = job.caption
    if caption.backend != "sidecar":
        caption = dataclasses.replace(caption, model=resolve_model("caption.model", caption.model, cache))
    clip = dataclasses.replace(
        job.clip,
        model=resolve_model("clip.model", job.clip.model, cache),
        pretrained=resolve_model("clip.pretrained", job.clip.pretrained, cache, checkpoint=True),
    )
    return dataclasses.replace(job, caption=caption, clip=clip)
