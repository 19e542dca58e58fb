"""A tiny, seeded, randomly initialised aesthetic predictor: LAION's MLP on the tiny CLIP's
embedding, saved as LAION's release is (a torch state dict in a .pth), so tests load it through
the same code as `sac+logos+ava1-l14-linearMSE.pth`."""
from __future__ import annotations

from pathlib import Path

import torch

from .aesthetic_mlp import AestheticMLP
from .tiny import AESTHETIC_FILE
from .tiny_captioning import TINY_CLIP_CONFIG


def build_tiny_aesthetic(path, seed: int = 0) -> Path:
    return save_tiny_head(path, AESTHETIC_FILE, seed, AestheticMLP)


def save_tiny_head(path, file_name: str, seed: int, head_class, initialise=None) -> Path:
    """A head on the tiny CLIP's embedding (head_class(embed_dim)), seeded, initialise(model) applied, saved as
    a torch state dict in PATH/file_name, the format LAION releases its heads in."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = head_class(TINY_CLIP_CONFIG["embed_dim"])
    if initialise is not None:
        with torch.no_grad():
            initialise(model)
    weights = folder / file_name
    torch.save(model.state_dict(), weights)
    return weights
