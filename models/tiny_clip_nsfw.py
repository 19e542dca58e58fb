"""A tiny, seeded, randomly initialised CLIP-based NSFW head: LAION's NSFWModel_L14 on the tiny CLIP's
embedding, saved as LAION's PyTorch port is (a state dict in a .pth), so tests load it through the same
code as `clip_ViT-L-14_openai_binary_nsfw_head.pth`. Its normalisation statistics are random too, so a
test sees them applied."""
from __future__ import annotations

from pathlib import Path

from .clip_nsfw_head import ClipNsfwHead
from .tiny_aesthetic import save_tiny_head
from .tiny import CLIP_NSFW_FILE


def _random_statistics(model: ClipNsfwHead) -> None:
    model.norm.mean.normal_(0.0, 0.05)
    model.norm.variance.uniform_(0.001, 0.01)  # unit embeddings' per-dimension spread is small


def build_tiny_clip_nsfw(path, seed: int = 0) -> Path:
    return save_tiny_head(path, CLIP_NSFW_FILE, seed, ClipNsfwHead, _random_statistics)
