"""The models a pipeline job names, resolved to local paths or hub names before the run starts."""
from __future__ import annotations

import dataclasses
import os

from pixcap.models.resolve import resolve_model
from pixcap.schemas import Job, JobError


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
    aesthetic = job.aesthetic
    if aesthetic.model:  # "" is off
        aesthetic = dataclasses.replace(aesthetic, model=resolve_model("aesthetic.model", aesthetic.model, cache))
        if not os.path.isfile(aesthetic.model):
            raise JobError(f"aesthetic.model: {job.aesthetic.model} is no weights file (LAION's "
                           "sac+logos+ava1-l14-linearMSE.pth, a .safetensors state dict, or tiny:aesthetic)")
    return dataclasses.replace(job, caption=caption, clip=clip, aesthetic=aesthetic)
