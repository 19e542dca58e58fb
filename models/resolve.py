"""Resolve a model name a job gives into what transformers, diffusers or open_clip load.

`tiny:*` names (schemas/models.py) are built on first use into the models cache. A name that
starts with /, ./, ../ or ~ is a local path and must exist. Anything else (a hub id such as
llava-hf/llava-1.5-7b-hf, an open_clip name or tag such as ViT-L-14 or openai) goes on unchanged.
"""
from __future__ import annotations

import os

from pixcap.schemas import JobError
from pixcap.schemas.job import local_model_path
from pixcap.schemas.models import TINY_PREFIX

from .tiny import TINY_MODELS, build_tiny_model


def resolve_model(key: str, name: str, cache: str, checkpoint: bool = False) -> str:
    """A local path or a hub name for the model `name` that job key `key` gives.

    checkpoint: the key names weights for a model named elsewhere (open_clip's `pretrained`)."""
    if not name.startswith(TINY_PREFIX):
        return local_model_path(key, name)
    known = [known for known, model in TINY_MODELS.items() if model.checkpoint or not checkpoint]
    if name not in known:
        raise JobError(f"{key}: unknown tiny model {name!r}; known: {', '.join(known)}")
    model = TINY_MODELS[name]
    folder = build_tiny_model(os.path.expanduser(cache), model.folder)
    file = model.checkpoint if checkpoint else model.file
    return str(folder / file) if file else str(folder)
