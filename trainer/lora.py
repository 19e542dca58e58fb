"""LoRA: peft adapters on the PixArt transformer's projections; the base weights stay frozen.

The export is the format PixArt's official LoRA script (train_pixart_lora_hf.py) saves and loads
back: peft's adapter folder (adapter_config.json, adapter_model.safetensors), put onto a pipeline's
transformer with peft's PeftModel.from_pretrained. diffusers has no other way for PixArt-alpha:
PixArtAlphaPipeline has no LoRA loader mixin (no load_lora_weights) and PixArtTransformer2DModel
no load_lora_adapter (diffusers 0.42).
"""
from __future__ import annotations

import torch
from torch import nn

from pixcap.schemas import JobError
from pixcap.schemas.train_job import LoraSettings

LORA_DIR = "lora"  # RUN_DIR/lora: the EMA adapter, which sampling uses
LORA_RAW_DIR = "lora_raw"  # RUN_DIR/lora_raw: the raw adapter, to continue training from
LORA_CONFIG = "adapter_config.json"  # what makes a folder peft's adapter folder
LORA_MARK = "lora_"  # every parameter peft adds has it in its name (lora_A, lora_B, ...)


def check_targets(transformer: nn.Module, targets) -> None:
    """Refuse a target that names no linear layer, as peft matches it (the whole name or its last parts)."""
    names = [name for name, module in transformer.named_modules() if isinstance(module, nn.Linear)]
    for target in targets:
        if not any(name == target or name.endswith("." + target) for name in names):
            raise JobError(f"lora.targets: {target!r} names no linear layer of the transformer "
                           f"(e.g. to_q, to_k, to_v, to_out.0, ff.net.0.proj, ff.net.2)")


def add_lora(transformer: nn.Module, settings: LoraSettings, seed: int = 0):
    """The transformer, frozen, with fresh LoRA adapters on settings.targets (a peft PeftModel)."""
    from peft import LoraConfig, get_peft_model

    check_targets(transformer, settings.targets)
    transformer.requires_grad_(False)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, target_modules=list(settings.targets),
                        lora_dropout=settings.dropout,
                        init_lora_weights="gaussian" if settings.init == "gaussian" else True)
    with torch.random.fork_rng(devices=[]):  # the adapters' draws, seeded, leave the global RNG as it was
        torch.manual_seed(seed)
        return get_peft_model(transformer, config)


def is_lora(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def base_state(model) -> dict:
    """The frozen base transformer's own state dict (PixArtTransformer2DModel's keys), without the adapters."""
    state = model.get_base_model().state_dict()
    return {key.replace(".base_layer.", "."): value for key, value in state.items() if LORA_MARK not in key}


def base_transformer(model):
    """A plain PixArtTransformer2DModel holding the base weights of a LoRA model (for export)."""
    from diffusers import PixArtTransformer2DModel

    plain = PixArtTransformer2DModel.from_config(model.get_base_model().config)
    plain.load_state_dict(base_state(model), strict=True)
    return plain


def save_lora(model, out_dir) -> None:
    """peft's adapter folder: adapter_config.json and adapter_model.safetensors."""
    model.save_pretrained(str(out_dir))


def load_lora(transformer, path):
    """Put the adapter at `path` onto `transformer` in place (and return peft's wrapper around it)."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(transformer, str(path))
    except ValueError as e:
        raise JobError(f"{path}: not a LoRA adapter for this transformer: {str(e).splitlines()[0]}") from e
