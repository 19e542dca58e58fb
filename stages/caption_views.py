"""How a captioner sees the image (its config's `view`), as the CPU prepares it in model_inputs.

- crop: the processor's short-side resize and centre crop (llava-hf's CLIPImageProcessor), made here.
- pad: the image padded to a square with the processor's mean colour first, then resized: the original
  LLaVA-1.5's `expand2square` (image_aspect_ratio: pad), which keeps the whole image in view.
- native: no CPU view; the model's own processor takes decode's model image whole (Qwen2-VL's dynamic
  resolution, Idefics3's tiles), in the captioning actor.
crop and pad need a processor with one fixed square size (llava_view refuses others).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .preprocess import SquareView, llava_view

CROP, PAD, NATIVE = "crop", "pad", "native"


def expand_to_square(image: np.ndarray, colour) -> np.ndarray:
    """HxWx3 uint8 centred on a square of the long side, the margins filled with colour (0..255)."""
    height, width = image.shape[:2]
    side = max(height, width)
    if height == width:
        return image
    square = np.empty((side, side, 3), np.uint8)
    square[...] = np.asarray(colour, dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top:top + height, left:left + width] = image
    return square


@dataclass(frozen=True)
class PaddedView:
    """A SquareView of the image padded to a square with the view's mean colour."""
    square: SquareView

    @property
    def size(self) -> int:
        return self.square.size

    def crop(self, image: np.ndarray) -> np.ndarray:
        colour = [int(m * 255) for m in self.square.mean]  # LLaVA: tuple(int(x * 255) for x in image_mean)
        return self.square.crop(expand_to_square(image, colour))

    def pixel_values(self, crops: list, device="cpu", dtype=None):
        return self.square.pixel_values(crops, device, dtype) if dtype is not None else self.square.pixel_values(crops, device)


def view_of(image_processor, view: str):
    """The CPU view for a captioner's processor, or None for native."""
    if view == NATIVE:
        return None
    square = llava_view(image_processor)
    return PaddedView(square) if view == PAD else square
