"""CLIP through ClipStage as the pipeline runs it: open_clip ViT-L/14 (random weights: pretrained "" builds
it without loading any), the CPU's 224 crops, a caption and nouns per row, batches of shape.clip_batch.

Beside the stage's figure, the image tower's forward alone on model-ready bf16 tensors, with the weights
as ClipStage keeps them (fp32 under bf16 autocast) and cast to bf16: how far the stage is from its model."""
from __future__ import annotations

import tempfile

import numpy as np
import torch

from bench.device_timing import first, peak_gib, reset_peak, timed

NOUNS = "dog cat tree car house street sky cloud person bicycle mountain river".split()
CAPTION = "a dog and a cat under a tree near a car in the street, with mountains and a river behind them"


def clip_stage(shape, folder: str):
    from pixcap.schemas.stages import ClipConfig
    from pixcap.stages.clip import ClipStage

    if shape.clip_model:
        model, pretrained = shape.clip_model, ""
    else:  # the tiny test config, registered from its JSON file as the job would name it
        from pixcap.models.tiny_captioning import build_tiny_clip

        model, pretrained = (str(path) for path in build_tiny_clip(folder))
    torch.manual_seed(0)
    return ClipStage(ClipConfig(model=model, pretrained=pretrained, batch_size=shape.clip_batch))


def clip_batch(stage, rows: int) -> dict:
    from pixcap.schemas import batch as B

    rng = np.random.default_rng(0)
    side = stage.view.size
    crops = [stage.view.crop(rng.integers(0, 256, (side * 3 // 2, side * 9 // 4, 3), dtype=np.uint8))
             for _ in range(rows)]
    return {B.KEY: [f"k{i}" for i in range(rows)], B.REJECT_STAGE: [""] * rows, B.REJECT_REASON: [""] * rows,
            B.REJECT_ERROR: [""] * rows, B.CLIP_PIXELS: crops, B.CAPTION: [CAPTION] * rows,
            B.NOUNS: [NOUNS[: 6 + i % 6] for i in range(rows)]}


def forward_rate(stage, pixels: torch.Tensor, autocast: bool) -> float:
    """images/s of the image tower alone over model-ready tensors, best of three."""
    @torch.inference_mode()
    def forward():
        with torch.autocast(stage.device, dtype=torch.bfloat16, enabled=autocast and stage.device == "cuda"):
            stage.model.encode_image(pixels)

    forward()
    return len(pixels) / min(timed(forward)[0] for _ in range(3))


def run(shape, clock, note, context) -> dict:
    from pixcap.schemas import batch as B

    with tempfile.TemporaryDirectory() as folder:
        built, stage = timed(lambda: clip_stage(shape, folder))
        rows = shape.clip_batch * shape.clip_batches
        batch = clip_batch(stage, rows)
        reset_peak()
        stage(first(batch, shape.clip_batch))  # warm-up: kernels, the tokenizer's caches
        calls = [timed(lambda: stage(batch)) for _ in range(2)]
        seconds = min(s for s, _ in calls)
        out = calls[-1][1]
        if any(out[B.REJECT_REASON]):
            raise RuntimeError(f"ClipStage rejected rows: {sorted(set(out[B.REJECT_ERROR]))[:2]}")
        found = {"model": stage.label, "batch_size": shape.clip_batch, "images": rows, "build_s": built,
                 "seconds": seconds, "images_per_s": rows / seconds, "peak_gib": peak_gib(),
                 "weights_dtype": str(next(stage.model.parameters()).dtype)}
        note("ClipStage", found)
        dtype = torch.bfloat16 if stage.device == "cuda" else torch.float32
        pixels = stage.view.pixel_values(batch[B.CLIP_PIXELS][:shape.clip_batch], stage.device, dtype)
        found["forward_stage_weights_images_per_s"] = forward_rate(stage, pixels, autocast=True)
        if stage.device == "cuda":
            stage.model.to(torch.bfloat16)
            found["forward_bf16_weights_images_per_s"] = forward_rate(stage, pixels, autocast=False)
        note("forward", {k: v for k, v in found.items() if k.startswith("forward")})
        return found
