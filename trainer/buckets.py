"""Fitting an image to its training size, as PixArt's own transforms do, on PIL images.

Square mode (PixArt's 256 px stages, `default_train`): the short side resized to the resolution,
bilinear, then a centred square crop. Aspect mode (the multi-scale stages, `InternalDataMS`): resized,
bicubic, to cover the nearest-ratio bucket, then a centred crop to it. Both keep torchvision's
arithmetic (sizes truncated by int(), crop offsets round()ed), so every pixel lands where the
official transforms put it. Neither is given an image it would have to enlarge: data.py skips those.

The bucket tables and the assignment rule are a contract shared with the analyst's report:
they live in schemas/buckets.py.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from pixcap.schemas.buckets import BUCKETS, Size, covers, nearest_bucket  # noqa: F401  (re-exported)


def center_crop(image: Image.Image, size: Size) -> Image.Image:
    """The centred (height, width) crop, offsets rounded as torchvision's center_crop."""
    height, width = size
    top, left = int(round((image.height - height) / 2.0)), int(round((image.width - width) / 2.0))
    return image.crop((left, top, left + width, top + height))


def fit_square(image: Image.Image, side: int) -> Image.Image:
    """PixArt's default_train: T.Resize(side) (short side, bilinear) then T.CenterCrop(side)."""
    short, long = sorted(image.size)
    new_long = int(side * long / short)
    new_size = (side, new_long) if image.width <= image.height else (new_long, side)  # (width, height)
    return center_crop(image.resize(new_size, Image.BILINEAR, reducing_gap=None), (side, side))


def fit_bucket(image: Image.Image, size: Size) -> Image.Image:
    """InternalDataMS: resize (bicubic) so the image covers (height, width) at its own ratio, then centre-crop."""
    height, width = size
    if height / image.height > width / image.width:
        new_h, new_w = height, int(image.width * height / image.height)
    else:
        new_h, new_w = int(image.height * width / image.width), width
    # max(): float rounding must never leave the image a pixel short, where torchvision would pad black.
    new_h, new_w = max(new_h, height), max(new_w, width)
    return center_crop(image.resize((new_w, new_h), Image.BICUBIC, reducing_gap=None), size)


def to_pixels(image: Image.Image) -> np.ndarray:
    """RGB image -> float32 [3, H, W] in [-1, 1], as the VAE takes it (T.ToTensor, T.Normalize(.5, .5))."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return array.transpose(2, 0, 1) / 127.5 - 1.0
