"""Which adapter a run samples with: a LoRA run's RUN_DIR/lora, a ControlNet run's RUN_DIR/controlnet, or
the folders a user names (`pixcap sample --lora`, `--controlnet`)."""
from __future__ import annotations

from pathlib import Path

from pixcap.schemas import JobError

from .controlnet import CONTROLNET_DIR, load_controlnet
from .lora import LORA_CONFIG, LORA_DIR


def run_adapters(run_dir, lora=None, controlnet=None, controls=None) -> tuple:
    """(LoRA folder or None, loaded ControlNet or None) for sampling a run: the ones named, else the run's own."""
    run_dir = Path(run_dir)
    if lora is None and (run_dir / LORA_DIR / LORA_CONFIG).exists():
        lora = run_dir / LORA_DIR
    if lora is not None and not (Path(lora) / LORA_CONFIG).exists():
        raise JobError(f"--lora: {lora} is not a LoRA adapter folder (no {LORA_CONFIG})")
    if controlnet is None and (run_dir / CONTROLNET_DIR / "config.json").exists():
        controlnet = run_dir / CONTROLNET_DIR
    if controlnet is None:
        if controls:
            raise JobError(f"--control: {run_dir} has no ControlNet; name one with --controlnet")
        return lora, None
    if not (Path(controlnet) / "config.json").exists():
        raise JobError(f"--controlnet: {controlnet} is not a ControlNet folder (no config.json)")
    if not controls:
        raise JobError("--control: a ControlNet samples from a control image; give --control IMAGE")
    return lora, load_controlnet(controlnet)
