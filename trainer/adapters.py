"""What a train job trains (`adapter`: none, lora, controlnet): the model the loop steps, and what it exports.

none: every weight of the transformer; RUN_DIR/pipeline holds the EMA weights, transformer_raw/ the raw.
lora: peft adapters on the frozen base (lora.py); RUN_DIR/pipeline holds the base unchanged, and
RUN_DIR/lora (EMA) and RUN_DIR/lora_raw the adapters in peft's folder format.
controlnet: PixArt's ControlNet-Transformer beside the frozen base (controlnet.py); RUN_DIR/pipeline holds
the base, RUN_DIR/controlnet (EMA) and RUN_DIR/controlnet_raw the ControlNet as diffusers model folders.
"""
from __future__ import annotations

from pathlib import Path

from pixcap.schemas.train_job import TrainJob

from .components import unwrap
from .controlnet import CONTROLNET_DIR, CONTROLNET_RAW_DIR, ControlledTransformer, add_controlnet
from .export import export_pipeline
from .lora import LORA_DIR, LORA_RAW_DIR, add_lora, base_transformer, is_lora, save_lora
from .run_adapters import run_adapters
from .run_folder import PIPELINE_DIR
from .sampling import load_pipeline


def adapt(job: TrainJob, transformer):
    """The model the loop trains, around `transformer` (returned as is for full training)."""
    if job.adapter == "lora":
        return add_lora(transformer, job.lora, seed=job.seed)
    if job.adapter == "controlnet":
        return add_controlnet(transformer, job.controlnet.blocks)
    return transformer


def trainable_parameters(model) -> list:
    """The parameters the optimiser steps: all for full training, the adapter's otherwise."""
    return [p for p in model.parameters() if p.requires_grad]


def sampling_transformer(model):
    """The transformer a pipeline samples with: the LoRA-carrying base, or a ControlNet's base (steered by it)."""
    model = unwrap(model)
    if is_lora(model):
        return model.get_base_model()
    if isinstance(model, ControlledTransformer):
        return model.transformer
    return model


def sampling_controlnet(model):
    model = unwrap(model)
    return model.controlnet if isinstance(model, ControlledTransformer) else None


def export_trained(job: TrainJob, model, ema, run_dir) -> Path:
    """Write RUN_DIR/pipeline, and the adapter's folders for LoRA and ControlNet; return the pipeline's folder."""
    run_dir = Path(run_dir)
    model, ema = unwrap(model), unwrap(ema)
    pipeline_dir = run_dir / PIPELINE_DIR
    if is_lora(model):
        export_pipeline(base_transformer(model), job.text_encoder, job.vae, pipeline_dir, train_job=job.to_dict())
        save_lora(ema, run_dir / LORA_DIR)
        save_lora(model, run_dir / LORA_RAW_DIR)
    elif isinstance(model, ControlledTransformer):
        export_pipeline(model.transformer, job.text_encoder, job.vae, pipeline_dir, train_job=job.to_dict())
        ema.controlnet.save_pretrained(run_dir / CONTROLNET_DIR)
        model.controlnet.save_pretrained(run_dir / CONTROLNET_RAW_DIR)
    else:
        export_pipeline(ema, job.text_encoder, job.vae, pipeline_dir, raw_transformer=model, train_job=job.to_dict())
    return pipeline_dir


def exported_pipeline(job: TrainJob, run_dir) -> tuple:
    """(pipeline, ControlNet or None) read back from what export_trained wrote, for the final samples."""
    lora, controlnet = run_adapters(run_dir, controls=job.controlnet.sampling_controls)
    return load_pipeline(Path(run_dir) / PIPELINE_DIR, lora=lora), controlnet
