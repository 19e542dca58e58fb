"""Resizing and cropping HxWx3 uint8 arrays, the way the models' own transforms do it.

torch's antialiased bicubic on uint8 channels-last tensors is PIL's bicubic filter (within one
or two levels) in SIMD code: about 1 ms for an SA-1B model image against PIL's 3-4 ms on one
core. It is also exactly what transformers' fast image processors run, so LLaVA's crops made
here on the CPU equal the processor's own.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """HxWx3 uint8 -> height x width x 3 uint8, antialiased bicubic; a new, writable array."""
    if image.shape[:2] == (height, width):
        return np.array(image)
    with warnings.catch_warnings():
        # PIL's arrays are read-only and torch warns on those; the tensor is only read here, and
        # copying a full-size photo first would cost more than the resize.
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.from_numpy(image)
    # A permuted HWC array is a channels-last NCHW tensor: the layout torch's uint8 kernels take.
    tensor = tensor.permute(2, 0, 1).unsqueeze(0)
    out = F.interpolate(tensor, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).contiguous().numpy()


def short_side_size(width: int, height: int, side: int) -> tuple:
    """(width, height) with the short side `side` and the ratio kept, the long side truncated as
    torchvision's Resize(int) and transformers' shortest_edge compute it."""
    if width <= height:
        return side, int(side * height / width)
    return int(side * width / height), side


def center_crop(image: np.ndarray, size: int, round_offsets: bool = True) -> np.ndarray:
    """The centred size x size window of an image at least that large on both sides.

    Where the margin is odd the libraries differ by a pixel: torchvision's CenterCrop (open_clip)
    rounds the offset, transformers' image processors truncate it."""
    height, width = image.shape[:2]
    offset = (lambda margin: int(round(margin / 2.0))) if round_offsets else (lambda margin: int(margin / 2.0))
    top, left = offset(height - size), offset(width - size)
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def square_crop(image: np.ndarray, size: int, round_offsets: bool = True) -> np.ndarray:
    """Short side resized to size, then the centre size x size: CLIP's and LLaVA-1.5's eval view."""
    height, width = image.shape[:2]
    return center_crop(resize(image, *short_side_size(width, height, size)), size, round_offsets)
