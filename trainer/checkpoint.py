"""Checkpoints that resume exactly: RUN_DIR/checkpoints/step-NNNNNNN/{state.pt, rng-rankR.pt}.

state.pt (rank 0) holds model, EMA, optimiser, LR scheduler and step; rng-rankR.pt holds each rank's
python, numpy, torch (CPU and CUDA) and training-generator states. The data position needs no state:
the stream is a function of (seed, rank, step) (see data.step_batches). A checkpoint is written
under a temporary name and renamed, so a crash never leaves a half-written one that looks finished.

Both files hold only tensors and plain python values and are read with torch.load(weights_only=True):
a checkpoint folder from elsewhere can hold a pickle that runs code when loaded, and that is refused.
"""
from __future__ import annotations

import os
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

CHECKPOINTS = "checkpoints"
STEP_DIR = re.compile(r"^step-(\d{7})$")


def step_dir(run_dir, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step-{step:07d}"


def latest_checkpoint(run_dir):
    """The finished checkpoint folder with the highest step, or None."""
    root = Path(run_dir) / CHECKPOINTS
    found = [(int(m.group(1)), p) for p in root.glob("step-*") if (m := STEP_DIR.match(p.name))]
    return max(found)[1] if found else None


def rng_state(generator: torch.Generator) -> dict:
    """Every RNG this rank draws from, as tensors and plain lists/ints/floats that weights_only loads."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def load_plain(path, **kwargs):
    """torch.load that refuses any pickle holding more than tensors and plain values (it could run code)."""
    try:
        return torch.load(path, weights_only=True, **kwargs)
    except pickle.UnpicklingError as e:
        # torch's message advises turning the check off; name the offending global instead.
        detail = next((line for line in str(e).splitlines() if "GLOBAL" in line), "not a plain checkpoint")
        raise RuntimeError(f"{path}: refused to load: {detail.strip()}") from e


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def save_checkpoint(run_dir, step: int, model, ema, optimizer, scheduler, generator, job: dict, rank: int) -> Path:
    """Write this step's checkpoint from every rank (each its RNG, rank 0 the rest); return its folder."""
    final = step_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save(rng_state(generator), tmp / f"rng-rank{rank}.pt")
    barrier()
    if rank == 0:
        state = {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "step": step, "job": job}
        torch.save(state, tmp / "state.pt")
        shutil.rmtree(final, ignore_errors=True)  # a rerun that re-reaches a step overwrites it
        os.replace(tmp, final)
    barrier()
    return final


def load_checkpoint(path, model, ema, optimizer, scheduler, generator, rank: int) -> int:
    """Restore everything save_checkpoint wrote; return the step to continue from."""
    path = Path(path)
    rng_path = path / f"rng-rank{rank}.pt"
    if not rng_path.exists():
        raise RuntimeError(f"{path} was written by fewer ranks; resume with the same number of ranks")
    state = load_plain(path / "state.pt", map_location="cpu")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(load_plain(rng_path), generator)
    return state["step"]
