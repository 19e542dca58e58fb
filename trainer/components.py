"""Loading one part of a model (T5, its tokenizer, the VAE, a transformer) and unwrapping a trained model.

Every trainer module that loads a part or saves a trained model uses these two, so they sit below
all of them: this module imports nothing of the trainer's.
"""
from __future__ import annotations

import os


def load_component(cls, path: str, subfolder: str, **kwargs):
    """cls.from_pretrained(path, subfolder=...) when `path` is a pipeline holding `subfolder`, else from `path` itself.

    Never runs a folder's own python: transformers would import the files its auto_map names if asked
    (or if a user answers its prompt), so it is told no; diffusers never imports them for a model class.
    """
    path = str(path)
    if cls.__module__.startswith("transformers"):
        kwargs["trust_remote_code"] = False
    if os.path.isdir(path):
        if os.path.isdir(os.path.join(path, subfolder)):
            return cls.from_pretrained(path, subfolder=subfolder, **kwargs)
        return cls.from_pretrained(path, **kwargs)
    try:  # a hub id: pipeline repos (PixArt-alpha/...) keep each part in a subfolder, model repos do not
        return cls.from_pretrained(path, subfolder=subfolder, **kwargs)
    except (OSError, ValueError):
        return cls.from_pretrained(path, **kwargs)


def unwrap(model):
    """The bare model inside DDP (.module) and torch.compile (._orig_mod) wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = model.module if hasattr(model, "module") else model._orig_mod
    return model
