"""A tiny, seeded, randomly initialised image classifier: a ViTForImageClassification with the labels of
Falconsai/nsfw_image_detection ("normal", "nsfw") and its ViTImageProcessor, saved with save_pretrained,
so tests load it through the same AutoModelForImageClassification code as the real one. Its scores are
noise; they only have to be probabilities."""
from __future__ import annotations

from pathlib import Path

import torch

NSFW_LABELS = ("normal", "nsfw")


def build_tiny_classifier(path, seed: int = 0, labels=NSFW_LABELS) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    folder = Path(path)
    config = ViTConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)},
        initializer_range=0.5,  # wide weights, so the probabilities differ from image to image
    )
    torch.manual_seed(seed)
    ViTForImageClassification(config).eval().save_pretrained(folder)
    # The real model's processor: resize to the square size (no crop), rescale, normalise with 0.5.
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder
