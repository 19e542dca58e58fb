"""Images from an exported PixArtAlphaPipeline, each from its own seed.

An image's seed depends only on the eval's seed, its prompt's id and its index, so two models
evaluated on one prompt set start every image from the same noise (a list of generators gives
each image of a batch its own latents, whatever else is in the batch).
"""
from __future__ import annotations

import hashlib
import os
from typing import List, Sequence

import torch

from pixcap.schemas import JobError
from pixcap.trainer.run_folder import PIPELINE_DIR as RUN_PIPELINE  # a training run exports RUN_DIR/pipeline


def quiet_loading() -> None:
    """No per-file progress bars while the models load: the command prints its own progress.
    Called where the models load, after the command line was checked: diffusers takes 2 s to
    import, which a mistyped folder should not wait for."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


MODEL_INDEX = "model_index.json"


def pipeline_folder(source: str) -> str:
    """A diffusers PixArt folder: SOURCE itself, or a training run's SOURCE/pipeline."""
    for folder in (source, os.path.join(source, RUN_PIPELINE)):
        if os.path.isfile(os.path.join(folder, MODEL_INDEX)):
            return os.path.abspath(folder)
    raise JobError(f"{source}: not a diffusers pipeline folder, nor a training run with {RUN_PIPELINE}/{MODEL_INDEX}")


def image_seed(seed: int, prompt_id: str, index: int) -> int:
    digest = hashlib.sha256(f"{seed}/{prompt_id}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class Generator:
    """Loads the pipeline once; `images(prompts, seeds)` returns PIL images."""

    def __init__(self, folder: str, steps: int, guidance_scale: float, height: int = 0, width: int = 0,
                 device: str = "cpu"):
        from pixcap.trainer.export import read_train_job
        from pixcap.trainer.sampling import load_pipeline

        self.pipe = load_pipeline(folder, device)
        # Prompts reach T5 as the run's captions did (`pixcap sample` does the same).
        self.clean_captions = read_train_job(folder).get("clean_captions", True)
        if self.clean_captions:
            from pixcap.trainer.captions import check_cleaning_available

            check_cleaning_available()
        size = self.pipe.transformer.config.sample_size * self.pipe.vae_scale_factor
        self.height, self.width = height or size, width or size
        self.steps, self.guidance_scale = steps, guidance_scale

    @torch.no_grad()
    def images(self, prompts: Sequence[str], seeds: Sequence[int]) -> List:
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        return self.pipe(list(prompts), num_inference_steps=self.steps, guidance_scale=self.guidance_scale,
                         generator=generators, height=self.height, width=self.width,
                         clean_caption=self.clean_captions, use_resolution_binning=False).images
