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
from pathlib import Path

from .tiny_aesthetic import AESTHETIC_FILE, build_tiny_aesthetic
from .tiny_captioning import CLIP_NAME, build_tiny_clip, build_tiny_llava
from .tiny_classifier import build_tiny_classifier
from .tiny_clip_nsfw import CLIP_NSFW_FILE, build_tiny_clip_nsfw
from .tiny_idefics3 import build_tiny_idefics3
from .tiny_qwen2vl import build_tiny_qwen2vl
from .tiny_diffusion import build_tiny_dit, build_tiny_t5, build_tiny_vae
from .tiny_eval import EVAL_BUILDERS

DONE_MARKER = ".pixcap-complete"  # written last: a folder without it was interrupted, and is rebuilt

# folder under the cache -> its builder (a function of (path, seed))
BUILDERS = {
    "tiny-llava": build_tiny_llava,
    "tiny-clip": build_tiny_clip,
    "tiny-t5": build_tiny_t5,
    "tiny-vae": build_tiny_vae,
    "tiny-dit": build_tiny_dit,
    "tiny-aesthetic": build_tiny_aesthetic,
    "tiny-nsfw": build_tiny_classifier,
    "tiny-qwen2vl": build_tiny_qwen2vl,
    "tiny-clip-nsfw": build_tiny_clip_nsfw,
    "tiny-idefics3": build_tiny_idefics3,
}


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
        # The eval's scorers are built on first use only, not with the rest (the Inception is 48 MB).
        with _quietly():
            (BUILDERS.get(folder_name) or EVAL_BUILDERS[folder_name])(folder, seed)
        (folder / DONE_MARKER).write_text(json.dumps({"seed": seed}))
    return folder


def build_tiny_models(root, seed: int = 0) -> dict:
    """All tiny models under root: {"llava", "clip_config", "clip_checkpoint", "t5", "vae", "dit", "aesthetic"} -> path."""
    folders = {name: build_tiny_model(root, name, seed) for name in BUILDERS}
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
