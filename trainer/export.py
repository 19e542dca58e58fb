"""Export a trained transformer as a diffusers PixArtAlphaPipeline folder."""
from __future__ import annotations

from pathlib import Path

from .model import load_component, unwrap

# PixArt-alpha's shipped scheduler, on the schedule it was trained with.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
    prediction_type="epsilon", algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
    lower_order_final=True, timestep_spacing="linspace", steps_offset=0, thresholding=False,
    use_karras_sigmas=False,
)


def export_pipeline(transformer, text_encoder_path, vae_path, out_dir) -> Path:
    """Save transformer (a model or its folder) with T5, tokenizer, VAE and a DPM-Solver scheduler to `out_dir`."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from transformers import AutoTokenizer, T5EncoderModel

    if isinstance(transformer, (str, Path)):
        transformer = load_component(PixArtTransformer2DModel, transformer, "transformer")
    pipe = PixArtAlphaPipeline(
        tokenizer=load_component(AutoTokenizer, text_encoder_path, "tokenizer"),
        # Kept in their stored dtype: T5-XXL is ~19 GB in float32.
        text_encoder=load_component(T5EncoderModel, text_encoder_path, "text_encoder", torch_dtype="auto"),
        vae=load_component(AutoencoderKL, vae_path, "vae"),
        transformer=unwrap(transformer),
        scheduler=DPMSolverMultistepScheduler(**SCHEDULER_CONFIG),
    )
    out_dir = Path(out_dir)
    pipe.save_pretrained(out_dir)  # writes model_index.json and one folder per component
    return out_dir
