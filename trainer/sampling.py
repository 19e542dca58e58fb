"""Sample images from an exported PixArt pipeline (`pixcap sample RUN_DIR --prompt ...`)."""
from __future__ import annotations

import re
from pathlib import Path

import torch

PIPELINE_DIR = "pipeline"  # the training loop exports RUN_DIR/pipeline


def load_pipeline(path, device=None):
    """PixArtAlphaPipeline from a folder, on the GPU when there is one."""
    from diffusers import PixArtAlphaPipeline

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = PixArtAlphaPipeline.from_pretrained(str(path))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def slug(text: str, n: int = 40) -> str:
    """A filename-safe prefix of a prompt."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:n] or "empty"


@torch.no_grad()
def sample_images(pipeline_dir_or_pipeline, prompts: list[str], out_dir, steps: int = 20, seed: int = 0,
                  height: int | None = None, width: int | None = None, guidance_scale: float = 4.5) -> list[Path]:
    """Generate one image per prompt (seeded) and write them as PNGs in `out_dir`; return their paths."""
    pipe = pipeline_dir_or_pipeline
    if isinstance(pipe, (str, Path)):
        pipe = load_pipeline(pipe)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    images = pipe(
        list(prompts), num_inference_steps=steps, guidance_scale=guidance_scale, generator=generator,
        height=height, width=width,
        # Sizes are the caller's; binning would snap them to PixArt's buckets (and fails on other sample sizes).
        use_resolution_binning=False, clean_caption=False,
    ).images
    paths = []
    for i, (prompt, image) in enumerate(zip(prompts, images)):
        path = out_dir / f"{i:03d}_{slug(prompt)}.png"
        image.save(path)
        paths.append(path)
    return paths



def sample_command(args) -> int:
    """`pixcap sample RUN_DIR --prompt ... [--steps] [--seed] [--out]`."""
    run_dir = Path(args.run_dir)
    pipeline_dir = run_dir / PIPELINE_DIR
    if not (pipeline_dir / "model_index.json").exists():
        print(f"no exported pipeline at {pipeline_dir}")
        return 1
    prompts = args.prompt if isinstance(args.prompt, list) else [args.prompt]
    out = Path(getattr(args, "out", None) or run_dir / "samples")
    paths = sample_images(pipeline_dir, prompts, out, steps=getattr(args, "steps", 20), seed=getattr(args, "seed", 0),
                          guidance_scale=getattr(args, "guidance_scale", 4.5))
    for path in paths:
        print(path)
    return 0
