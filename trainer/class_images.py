"""DreamBooth's class images: the base model's own pictures of the class ("a photo of a dog").

`pixcap class-images PIPELINE --prompt P --count N --output DIR` writes DIR/class_NNNNN.png, each with
its caption sidecar DIR/class_NNNNN.txt (the prompt), so `pixcap run` with the sidecar caption backend
makes a pixcap output of them: checked, accounted for and sharded like any input, and the trainer reads
them as prior.class_shards. Image i is seeded by (seed, i) alone, so a rerun (after a kill, or with a
larger count) writes only the images missing, and every image is the same whichever run wrote it.
An image appears under its final name whole (written in the sibling folder DIR.partial, then renamed),
then its sidecar; a rerun writes a sidecar that a kill left missing.
"""
from __future__ import annotations

import os
import typing
from pathlib import Path

import torch

from pixcap.schemas import JobError

from .captions import prepare_captions
from .sampling import load_pipeline

CLASS_IMAGE = "class_{:05d}"


def class_images(pipeline, prompt: str, count: int, out_dir, steps: int = 20, seed: int = 0,
                 guidance_scale: float = 4.5, batch_size: int = 4, resolution: int | None = None,
                 clean_captions: bool = True) -> typing.List[Path]:
    """Generate the `count` class images not yet in out_dir; return the paths of all `count`."""
    if not prompt.strip():
        raise JobError("--prompt: the class prompt is empty")
    if count < 1 or batch_size < 1 or steps < 1:
        raise JobError("--count, --batch-size and --steps: must be positive")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / (CLASS_IMAGE.format(i) + ".png") for i in range(count)]
    for path in paths:
        if path.exists() and not path.with_suffix(".txt").exists():
            path.with_suffix(".txt").write_text(prompt + "\n", encoding="utf-8")
    missing = [i for i, path in enumerate(paths) if not path.exists()]
    if not missing:
        return paths
    partial_dir = out_dir.with_name(out_dir.name + ".partial")  # outside the folder pixcap run reads
    partial_dir.mkdir(exist_ok=True)
    pipe = load_pipeline(pipeline) if isinstance(pipeline, (str, Path)) else pipeline
    for start in range(0, len(missing), batch_size):
        chunk = missing[start:start + batch_size]
        # One generator per image: image i is the same in any batch, in any run.
        generators = [torch.Generator("cpu").manual_seed(seed * 1_000_003 + i) for i in chunk]
        # The prompt reaches T5 as the base's training captions did (captions.py), as in `pixcap sample`.
        images = pipe(prepare_captions([prompt], clean_captions) * len(chunk), num_inference_steps=steps,
                      guidance_scale=guidance_scale, generator=generators, height=resolution, width=resolution,
                      clean_caption=False, use_resolution_binning=False).images
        for i, image in zip(chunk, images):
            partial = partial_dir / paths[i].name
            image.save(partial, format="PNG")
            os.replace(partial, paths[i])
            paths[i].with_suffix(".txt").write_text(prompt + "\n", encoding="utf-8")
    partial_dir.rmdir()
    return paths
