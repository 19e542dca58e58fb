"""Sampling: images generated from a PixArt pipeline, during training and by `pixcap sample RUN_DIR`.

Prompts reach T5 as the training captions did: cleaned (PixArt's T5Embedder cleaning, captions.py) when
the run's clean_captions was on, read from the train job exported beside the pipeline. The scheduler is
DPM-Solver (the pipeline's own) or SA-Solver (samplers.py).
"""
from __future__ import annotations

import contextlib
import re
import typing
from pathlib import Path

import torch

from .captions import check_cleaning_available, prepare_captions
from .controlnet import control_latents
from .export import read_train_job
from .lora import load_lora
from .run_adapters import run_adapters
from .run_folder import PIPELINE_DIR, SAMPLING_DIR
from .samplers import DPM_SOLVER, default_steps, sampling_with


def load_pipeline(path, device=None, lora=None):
    """PixArtAlphaPipeline from a folder, on the GPU when there is one; with a LoRA adapter folder put onto
    its transformer when `lora` is given (peft's PeftModel.from_pretrained, as PixArt's LoRA script loads it)."""
    from diffusers import PixArtAlphaPipeline

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = PixArtAlphaPipeline.from_pretrained(str(path))
    if lora is not None:
        load_lora(pipe.transformer, lora)  # in place: the pipeline's transformer now carries the adapter
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def slug(text: str, n: int = 40) -> str:
    """A filename-safe prefix of a prompt."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:n] or "empty"


@torch.no_grad()
def sample_images(pipeline_dir_or_pipeline, prompts: typing.Sequence[str], out_dir, steps: int | None = None,
                  seed: int = 0, height: int | None = None, width: int | None = None, guidance_scale: float = 4.5,
                  clean_captions: bool = True, controlnet=None, controls=None,
                  scheduler: str = DPM_SOLVER) -> typing.List[Path]:
    """Generate one image per prompt (seeded) and write them as PNGs in `out_dir`; return their paths.

    With a ControlNet, `controls` gives the control image of each prompt (paths or PIL images; one serves all)."""
    if clean_captions:
        check_cleaning_available()  # diffusers would skip the cleaning without a word
    pipe = pipeline_dir_or_pipeline
    if isinstance(pipe, (str, Path)):
        pipe = load_pipeline(pipe)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    steering = contextlib.nullcontext()
    if controlnet is not None:
        latents = control_latents(pipe, controls, len(prompts), height, width)
        steering = controlnet.placed_like(pipe.transformer).steering(pipe.transformer, latents)
    with steering, sampling_with(pipe, scheduler):
        images = pipe(
            # Cleaned here as in training; the pipeline's own copy of the cleaning lacks one step (captions.py).
            prepare_captions(prompts, clean_captions), num_inference_steps=steps or default_steps(scheduler),
            guidance_scale=guidance_scale, generator=generator, height=height, width=width, clean_caption=False,
            # Sizes are the caller's; binning would snap them to PixArt's buckets (and fails on other sample sizes).
            use_resolution_binning=False,
        ).images
    paths = []
    for i, (prompt, image) in enumerate(zip(prompts, images)):
        path = out_dir / f"{i:03d}_{slug(prompt)}.png"
        image.save(path)
        paths.append(path)
    return paths


def sample_run(run_dir, prompts: typing.Sequence[str], out=None, steps: int | None = None, seed: int = 0,
               guidance_scale: float = 4.5, lora=None, controlnet=None, controls=None,
               scheduler: str = DPM_SOLVER) -> typing.List[Path]:
    """Images from RUN_DIR/pipeline into `out` (default RUN_DIR/sampling), prompts treated as in training.

    A LoRA run's adapter (RUN_DIR/lora) and a ControlNet run's ControlNet (RUN_DIR/controlnet) are used
    unless `lora` or `controlnet` names another folder; a ControlNet needs `controls`."""
    run_dir = Path(run_dir)
    pipeline_dir = run_dir / PIPELINE_DIR
    if not (pipeline_dir / "model_index.json").exists():
        raise FileNotFoundError(f"no exported pipeline at {pipeline_dir}")
    lora, controlnet = run_adapters(run_dir, lora, controlnet, controls)
    clean = read_train_job(pipeline_dir).get("clean_captions", True)  # True: diffusers' own default
    pipe = load_pipeline(pipeline_dir, lora=lora)
    return sample_images(pipe, prompts, Path(out or run_dir / SAMPLING_DIR), steps=steps, seed=seed,
                         guidance_scale=guidance_scale, clean_captions=clean, controlnet=controlnet, controls=controls,
                         scheduler=scheduler)
