"""Model-ready pixels made on the CPU, so that a GPU actor never waits for a resize.

LLaVA-1.5 and CLIP ViT-L-14 both see an image as its short side resized to N, the centre N x N,
then (x / 255 - mean) / std. The resize and crop are the CPU's work, done here in CPU tasks
beside decode; they produce N x N x 3 uint8 crops, a quarter of float32's bytes in Ray's object
store. The GPU actor stacks a batch of crops, moves it to the device and normalises it there:
one elementwise kernel. For LLaVA, whose chat prompt is the same for every image, the token
ids can be built once per actor, so no processor call is left on the GPU's path at all.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .pixels import square_crop

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class SquareView:
    """One model's eval view of an image: `crop` on the CPU, `pixel_values` on the model's device."""

    size: int
    mean: tuple = OPENAI_CLIP_MEAN
    std: tuple = OPENAI_CLIP_STD
    round_offsets: bool = True  # torchvision's centre crop (open_clip); transformers' truncates

    def crop(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 (decode's model image) -> size x size x 3 uint8."""
        return square_crop(image, self.size, self.round_offsets)

    def pixel_values(self, crops: list, device="cpu", dtype=torch.float32) -> torch.Tensor:
        """N crops -> the N x 3 x size x size tensor the vision tower takes, on `device`.

        uint8 crosses to the device, a quarter of the bytes of float32; rescaling and
        normalising there is in float32, as the models' own processors do it, then cast."""
        batch = torch.from_numpy(np.stack(crops)).to(device, non_blocking=True)
        pixels = batch.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        return pixels.sub_(mean).div_(std).to(dtype)


def llava_view(image_processor) -> SquareView:
    """The view a LLaVA-1.5 processor's CLIPImageProcessor takes (shortest_edge, then crop_size)."""
    side, crop = image_processor.size["shortest_edge"], image_processor.crop_size
    if not (image_processor.do_resize and image_processor.do_center_crop and crop["height"] == crop["width"] == side):
        # LLaVA-NeXT's tiling or a non-square crop is not one square view; refuse rather than differ.
        raise ValueError(f"not a square view: shortest_edge {side}, crop {crop['height']}x{crop['width']}")
    return SquareView(side, tuple(image_processor.image_mean), tuple(image_processor.image_std), round_offsets=False)


def clip_view(model) -> SquareView:
    """The eval view of a loaded open_clip model (its own image size, mean and std)."""
    import open_clip

    config = open_clip.get_model_preprocess_cfg(model)
    size = config["size"]
    size = size if isinstance(size, int) else size[0]
    if config.get("resize_mode", "shortest") != "shortest":
        raise ValueError(f"open_clip resize_mode {config['resize_mode']!r} is not a square view")
    return SquareView(size, tuple(config.get("mean", OPENAI_CLIP_MEAN)), tuple(config.get("std", OPENAI_CLIP_STD)))


def clip_view_of(name: str, pretrained: str = "") -> SquareView:
    """The same view from open_clip's registry alone (for a CPU task that loads no weights):
    the model config's image size and preprocess_cfg, overridden by the pretrained tag's, as
    open_clip.create_model merges them. `name` must be registered (see clip.resolve_model_name)."""
    import open_clip

    config = open_clip.get_model_config(name)
    if config is None:
        raise ValueError(f"open_clip knows no model {name!r}")
    merged = {**config.get("preprocess_cfg", {}), **(open_clip.get_pretrained_cfg(name, pretrained) or {})}
    if merged.get("resize_mode", "shortest") != "shortest":
        raise ValueError(f"open_clip resize_mode {merged['resize_mode']!r} is not a square view")
    size = config["vision_cfg"]["image_size"]
    size = size if isinstance(size, int) else size[0]
    return SquareView(size, tuple(merged.get("mean", OPENAI_CLIP_MEAN)), tuple(merged.get("std", OPENAI_CLIP_STD)))
