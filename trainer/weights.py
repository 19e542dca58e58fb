"""Where a stage's starting weights come from (load_from), raw by default as PixArt's load_ema=False.

load_from may name
- a run's checkpoint folder (checkpoints/step-N): its state.pt holds "model" (raw) and "ema";
- a pipeline folder pixcap exported: transformer/ (EMA) and transformer_raw/ (raw);
- any other diffusers PixArt transformer or pipeline, a folder or a hub id: it holds one set of weights.
"""
from __future__ import annotations

import logging
import os

from .checkpoint import load_plain
from .components import load_component
from .run_folder import RAW_TRANSFORMER, STATE


def starting_weights(load_from: str, load_ema: bool) -> tuple:
    """(state_dict, config or None, which weights) of the transformer load_from names."""
    from diffusers import PixArtTransformer2DModel

    kind = "ema" if load_ema else "raw"
    if os.path.isfile(os.path.join(load_from, STATE)):
        state = load_plain(os.path.join(load_from, STATE), map_location="cpu")
        return state["ema" if load_ema else "model"], None, f"{kind} weights of checkpoint {load_from}"
    raw = os.path.join(load_from, RAW_TRANSFORMER)
    if not load_ema and os.path.isdir(raw):
        source = PixArtTransformer2DModel.from_pretrained(raw)
        return source.state_dict(), source.config, f"raw weights {raw}"
    source = load_component(PixArtTransformer2DModel, load_from, "transformer")
    if not load_ema and os.path.isdir(load_from) and os.path.isdir(os.path.join(load_from, "transformer")):
        # A pipeline pixcap did not export: its transformer/ is all there is (often an EMA).
        logging.getLogger(__name__).warning(f"load_from: {load_from} has no {RAW_TRANSFORMER}/; starting from its transformer/")
    return source.state_dict(), source.config, f"weights of {load_from}"
