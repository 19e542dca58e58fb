"""A tiny, seeded, randomly initialised aesthetic predictor: LAION's MLP on the tiny CLIP's
embedding, saved as LAION's release is (a torch state dict in a .pth), so tests load it through
the same code as `sac+logos+ava1-l14-linearMSE.pth`."""
from __future__ import annotations

from pathlib import Path

import torch

from .aesthetic_mlp import AestheticMLP
from .tiny_captioning import TINY_CLIP_CONFIG

AESTHETIC_FILE = "tiny-aesthetic.pth"


def build_tiny_aesthetic(path, seed: int = 0) -> Path:
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = AestheticMLP(TINY_CLIP_CONFIG["embed_dim"])
    weights = folder / AESTHETIC_FILE
    torch.save(model.state_dict(), weights)
    return weights
