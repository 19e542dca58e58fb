"""Checkpoints that resume exactly: RUN_DIR/checkpoints/step-NNNNNNN/{state.pt, rng-rankR.pt}.

state.pt (rank 0) holds model, EMA, optimiser, LR scheduler and step; rng-rankR.pt holds each rank's
python, numpy, torch (CPU and CUDA) and training-generator states, and its data state: the stream is a
function of (seed, rank, step) and of the ids of the samples carried in partly filled buckets into the
step's data segment, which the data state lists (see data.step_batches). A checkpoint is written
under a temporary name and renamed, so a crash never leaves a half-written one that looks finished.

Both files hold only tensors and plain python values and are read with torch.load(weights_only=True):
a checkpoint folder from elsewhere can hold a pickle that runs code when loaded, and that is refused.
"""
from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .run_folder import CHECKPOINTS, STATE, STEP_DIR, rng_file, step_name

DATA = "data"  # in rng-rankR.pt: the rank's data_state, the samples its data-loader workers carry into the next segment



def step_dir(run_dir, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / step_name(step)


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


def trained_names(model):
    """Names of the parameters being trained when part of the model is frozen (LoRA, ControlNet), else None."""
    params = dict(model.named_parameters())
    trained = {name for name, p in params.items() if p.requires_grad}
    return None if len(trained) == len(params) else trained


def trained_state(model, names) -> dict:
    """What a checkpoint keeps of a model: all of it, or only `names` when its base is frozen; the job
    rebuilds the base (load_from or the seed) exactly, and a LoRA checkpoint stays a few MB."""
    state = model.state_dict()
    return state if names is None else {k: v for k, v in state.items() if k in names}


def load_trained(model, state: dict, names, path) -> None:
    if names is None:
        model.load_state_dict(state)
        return
    if set(state) != names:
        raise RuntimeError(f"{path}: holds other weights than this job trains (another adapter or its settings?)")
    model.load_state_dict(state, strict=False)


def save_checkpoint(run_dir, step: int, model, ema, optimizer, scheduler, generator, job: dict, rank: int,
                    data_state: dict | None = None) -> Path:
    """Write this step's checkpoint from every rank (each its RNG and data_state, rank 0 the rest); return its folder."""
    final = step_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save({**rng_state(generator), DATA: data_state or {}}, tmp / rng_file(rank))
    barrier()
    if rank == 0:
        names = trained_names(model)
        state = {"model": trained_state(model, names), "ema": trained_state(ema, names), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "step": step, "job": job}
        torch.save(state, tmp / STATE)
        shutil.rmtree(final, ignore_errors=True)  # a rerun that re-reaches a step overwrites it
        os.replace(tmp, final)
    barrier()
    return final


def load_data_state(path, rank: int) -> dict:
    """This rank's data_state in a checkpoint (see data.step_batches); {} in one written before it was kept."""
    return load_plain(Path(path) / rng_file(rank)).get(DATA, {})


def load_checkpoint(path, model, ema, optimizer, scheduler, generator, rank: int) -> int:
    """Restore everything save_checkpoint wrote; return the step to continue from."""
    path = Path(path)
    rng_path = path / rng_file(rank)
    if not rng_path.exists():
        raise RuntimeError(f"{path} was written by fewer ranks; resume with the same number of ranks")
    state = load_plain(path / STATE, map_location="cpu")
    names = trained_names(model)
    load_trained(model, state["model"], names, path)
    load_trained(ema, state["ema"], names, path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(load_plain(rng_path), generator)
    return state["step"]
