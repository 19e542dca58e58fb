"""Resolve a model name a job gives into what transformers, diffusers or open_clip load.

`tiny:*` names (schemas/models.py) are built on first use into the models cache. A name that
starts with /, ./, ../ or ~ is a local path and must exist. Anything else (a hub id such as
llava-hf/llava-1.5-7b-hf, an open_clip name or tag such as ViT-L-14 or openai) goes on unchanged.
"""
from __future__ import annotations

import os

from pixcap.schemas import JobError
from pixcap.schemas.job import local_model_path
from pixcap.schemas.models import TINY_AESTHETIC, TINY_CLIP, TINY_DIT, TINY_LLAVA, TINY_PREFIX, TINY_T5, TINY_VAE
from pixcap.schemas.models import TINY_DETECTOR, TINY_INCEPTION, TINY_NSFW, TINY_QWEN2VL, TINY_VQA, TINY_CLIP_NSFW
from pixcap.schemas.models import TINY_IDEFICS3

from .tiny import build_tiny_model
from .tiny_aesthetic import AESTHETIC_FILE
from .tiny_clip_nsfw import CLIP_NSFW_FILE
from .tiny_captioning import CLIP_NAME
from .tiny_eval import INCEPTION_FILE

# tiny name -> (folder in the cache, file in it or "" for the folder itself)
TINY_FOLDERS = {
    TINY_LLAVA: ("tiny-llava", ""),
    TINY_CLIP: ("tiny-clip", f"{CLIP_NAME}.json"),
    TINY_T5: ("tiny-t5", ""),
    TINY_VAE: ("tiny-vae", ""),
    TINY_DIT: ("tiny-dit", ""),
    TINY_AESTHETIC: ("tiny-aesthetic", AESTHETIC_FILE),
    TINY_NSFW: ("tiny-nsfw", ""),
    TINY_QWEN2VL: ("tiny-qwen2vl", ""),
    TINY_CLIP_NSFW: ("tiny-clip-nsfw", CLIP_NSFW_FILE),
    TINY_IDEFICS3: ("tiny-idefics3", ""),
    TINY_VQA: ("tiny-vqa", ""),
    TINY_DETECTOR: ("tiny-detector", ""),
    TINY_INCEPTION: ("tiny-inception", INCEPTION_FILE),
}
# open_clip takes a config and a checkpoint: `clip.pretrained: tiny:clip` names the checkpoint.
TINY_CHECKPOINTS = {TINY_CLIP: ("tiny-clip", f"{CLIP_NAME}.pt")}


def resolve_model(key: str, name: str, cache: str, checkpoint: bool = False) -> str:
    """A local path or a hub name for the model `name` that job key `key` gives.

    checkpoint: the key names weights for a model named elsewhere (open_clip's `pretrained`)."""
    if not name.startswith(TINY_PREFIX):
        return local_model_path(key, name)
    table = TINY_CHECKPOINTS if checkpoint else TINY_FOLDERS
    if name not in table:
        raise JobError(f"{key}: unknown tiny model {name!r}; known: {', '.join(table)}")
    folder_name, file_name = table[name]
    folder = build_tiny_model(os.path.expanduser(cache), folder_name)
    return str(folder / file_name) if file_name else str(folder)
