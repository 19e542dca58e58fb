"""Export a trained transformer as a diffusers PixArtAlphaPipeline folder, raw weights beside it.

OUT/transformer/ holds the EMA weights, which the pipeline samples with. OUT/transformer_raw/ holds the
raw (non-EMA) weights: PixArt starts each stage from the previous stage's raw weights (load_ema=False),
since an EMA at 0.9999 lags them by about 10,000 steps. diffusers ignores the extra folder.
OUT/train_job.json is the job the weights were trained with; `pixcap sample` reads clean_captions from it.
"""
from __future__ import annotations

import json
from pathlib import Path

from .components import load_component, unwrap
from .run_folder import RAW_TRANSFORMER, TRAIN_JOB

# PixArt-alpha's shipped scheduler, on the schedule it was trained with.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
    prediction_type="epsilon", algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
    lower_order_final=True, timestep_spacing="linspace", steps_offset=0, thresholding=False,
    use_karras_sigmas=False,
)


def assemble_pipeline(transformer, text_encoder_path, vae_path):
    """A PixArtAlphaPipeline around `transformer` with T5, its tokenizer, the VAE and a DPM-Solver scheduler."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtAlphaPipeline
    from transformers import AutoTokenizer, T5EncoderModel

    return PixArtAlphaPipeline(
        tokenizer=load_component(AutoTokenizer, text_encoder_path, "tokenizer"),
        # Kept in their stored dtype: T5-XXL is ~19 GB in float32.
        text_encoder=load_component(T5EncoderModel, text_encoder_path, "text_encoder", torch_dtype="auto"),
        vae=load_component(AutoencoderKL, vae_path, "vae"),
        transformer=unwrap(transformer),
        scheduler=DPMSolverMultistepScheduler(**SCHEDULER_CONFIG),
    )


def export_pipeline(transformer, text_encoder_path, vae_path, out_dir, raw_transformer=None,
                    train_job: dict | None = None) -> Path:
    """Save the pipeline around `transformer` (EMA; a model or its folder) to `out_dir`, with the raw weights
    and the train job beside it when given."""
    from diffusers import PixArtTransformer2DModel

    if isinstance(transformer, (str, Path)):
        transformer = load_component(PixArtTransformer2DModel, transformer, "transformer")
    out_dir = Path(out_dir)
    assemble_pipeline(transformer, text_encoder_path, vae_path).save_pretrained(out_dir)
    if raw_transformer is not None:
        unwrap(raw_transformer).save_pretrained(out_dir / RAW_TRANSFORMER)
    if train_job is not None:
        (out_dir / TRAIN_JOB).write_text(json.dumps(train_job, indent=2))
    return out_dir


def read_train_job(pipeline_dir) -> dict:
    """The train job exported beside a pipeline, or {} for a pipeline from elsewhere."""
    path = Path(pipeline_dir) / TRAIN_JOB
    return json.loads(path.read_text()) if path.exists() else {}
