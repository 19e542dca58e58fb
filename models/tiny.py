"""Build every tiny model into one cache, once: one folder per model, complete or rebuilt.

The tiny models load through the same code as the real ones (LLaVA through transformers,
ViT through open_clip, T5, the VAE and DiT through transformers and diffusers), so tests and the
local job exercise the loading path of the 7B job. Nothing is downloaded.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from pixcap.schemas.models import (
    TINY_AESTHETIC, TINY_CLIP, TINY_CLIP_NSFW, TINY_DETECTOR, TINY_DIT, TINY_IDEFICS3, TINY_INCEPTION, TINY_LLAVA,
    TINY_NSFW, TINY_QWEN2VL, TINY_T5, TINY_VAE, TINY_VQA,
)
from pixcap.schemas.stages import imported

DONE_MARKER = ".pixcap-complete"  # written last: a folder without it was interrupted, and is rebuilt

# The files of the tiny models that a job's key names (their builders write them under these names).
CLIP_NAME = "tiny-clip"  # open_clip takes the config file's stem as the model name
AESTHETIC_FILE = "tiny-aesthetic.pth"
CLIP_NSFW_FILE = "tiny-clip-nsfw.pth"
INCEPTION_FILE = "tiny-inception.pth"


@dataclass(frozen=True)
class TinyModel:
    folder: str  # its folder under the models cache
    # "module:function" of build(folder, seed), which writes it there in its real format: imported only
    # to build (the builders import torch, transformers and open_clip; resolving a name needs none).
    build: str
    file: str = ""  # the file in the folder that the job's key names; "" names the folder itself
    # The file a checkpoint key names, for a model given as a config and weights apart (open_clip:
    # `clip.pretrained: tiny:clip` names the .pt beside the config JSON); "" where it has none.
    checkpoint: str = ""
    # Built with the rest by build_tiny_models (`pixcap tiny-models`); the eval's scorers are built on
    # first use only (the Inception is 48 MB).
    with_all: bool = True


# Every tiny model: its `tiny:` name (schemas/models.py) -> where it lives and how it is built.
TINY_MODELS = {
    TINY_LLAVA: TinyModel("tiny-llava", "pixcap.models.tiny_captioning:build_tiny_llava"),
    TINY_CLIP: TinyModel("tiny-clip", "pixcap.models.tiny_captioning:build_tiny_clip", f"{CLIP_NAME}.json",
                         checkpoint=f"{CLIP_NAME}.pt"),
    TINY_T5: TinyModel("tiny-t5", "pixcap.models.tiny_diffusion:build_tiny_t5"),
    TINY_VAE: TinyModel("tiny-vae", "pixcap.models.tiny_diffusion:build_tiny_vae"),
    TINY_DIT: TinyModel("tiny-dit", "pixcap.models.tiny_diffusion:build_tiny_dit"),
    TINY_AESTHETIC: TinyModel("tiny-aesthetic", "pixcap.models.tiny_aesthetic:build_tiny_aesthetic", AESTHETIC_FILE),
    TINY_NSFW: TinyModel("tiny-nsfw", "pixcap.models.tiny_classifier:build_tiny_classifier"),
    TINY_QWEN2VL: TinyModel("tiny-qwen2vl", "pixcap.models.tiny_qwen2vl:build_tiny_qwen2vl"),
    TINY_CLIP_NSFW: TinyModel("tiny-clip-nsfw", "pixcap.models.tiny_clip_nsfw:build_tiny_clip_nsfw", CLIP_NSFW_FILE),
    TINY_IDEFICS3: TinyModel("tiny-idefics3", "pixcap.models.tiny_idefics3:build_tiny_idefics3"),
    TINY_VQA: TinyModel("tiny-vqa", "pixcap.models.tiny_eval:build_tiny_vqa", with_all=False),
    TINY_DETECTOR: TinyModel("tiny-detector", "pixcap.models.tiny_eval:build_tiny_detector", with_all=False),
    TINY_INCEPTION: TinyModel("tiny-inception", "pixcap.models.tiny_eval:build_tiny_inception", INCEPTION_FILE,
                              with_all=False),
}
BY_FOLDER = {model.folder: model for model in TINY_MODELS.values()}


@contextlib.contextmanager
def _quietly():
    """Building a tiny model is set-up, not news: transformers' "Writing model shards" bar and
    open_clip's "No pretrained weights loaded" warning (on the root logger) stay off the console."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    root = logging.getLogger()
    hold = None if root.handlers else logging.NullHandler()  # so logging.warning() does not basicConfig() the root
    if hold is not None:
        root.addHandler(hold)
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        if hold is not None:
            root.removeHandler(hold)
        if bars:
            hf_logging.enable_progress_bar()


def build_tiny_model(root, folder_name: str, seed: int = 0) -> Path:
    """One tiny model's folder under root, built unless a complete one is there."""
    folder = Path(root).expanduser() / folder_name
    if not (folder / DONE_MARKER).is_file():
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        with _quietly():
            imported(BY_FOLDER[folder_name].build)(folder, seed)
        (folder / DONE_MARKER).write_text(json.dumps({"seed": seed}))
    return folder


def build_tiny_models(root, seed: int = 0) -> dict:
    """All tiny models under root: {"llava", "clip_config", "clip_checkpoint", "t5", "vae", "dit", "aesthetic"} -> path."""
    folders = {model.folder: build_tiny_model(root, model.folder, seed) for model in TINY_MODELS.values()
               if model.with_all}
    clip = folders["tiny-clip"]
    return {
        "llava": folders["tiny-llava"],
        "clip_config": clip / f"{CLIP_NAME}.json",
        "clip_checkpoint": clip / f"{CLIP_NAME}.pt",
        "t5": folders["tiny-t5"],
        "vae": folders["tiny-vae"],
        "dit": folders["tiny-dit"],
        "aesthetic": folders["tiny-aesthetic"] / AESTHETIC_FILE,
        "nsfw": folders["tiny-nsfw"],
        "qwen2vl": folders["tiny-qwen2vl"],
        "clip_nsfw": folders["tiny-clip-nsfw"] / CLIP_NSFW_FILE,
        "idefics3": folders["tiny-idefics3"],
    }
