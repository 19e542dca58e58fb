"""A sample's control map (KEY.<kind>.png, written by the pipeline's control stage) fitted to its training size.

The map is the stored image's size, so the same resize and crop that fit the image (or that `pixcap
encode` applied before storing its posterior) put every edge where its pixel went. It becomes RGB pixels
in [-1, 1], which the trainer encodes with the VAE, as PixArt's ControlNet takes its HED maps.
"""
from __future__ import annotations

import io

import torch
from PIL import Image

from pixcap.schemas.records import HEIGHT, WIDTH, control_ext
from pixcap.schemas.train_skips import CONTROL_SIZE, NO_CONTROL

from .buckets import fit_bucket, fit_square, to_pixels


def fit_control(sample: dict, record: dict, kind: str, mode: str, size) -> torch.Tensor | str:
    """Pixels [3, H, W] of the sample's `kind` control map fitted to `size`, or the reason it is skipped."""
    member = control_ext(kind)
    if member not in sample:
        return NO_CONTROL
    control = Image.open(io.BytesIO(sample[member]))
    if (control.height, control.width) != (record.get(HEIGHT), record.get(WIDTH)):
        return CONTROL_SIZE  # fitted alike, it would not line up with its image
    control = control.convert("RGB")
    fitted = fit_square(control, size[0]) if mode == "square" else fit_bucket(control, size)
    return torch.from_numpy(to_pixels(fitted))
