"""The Ray Data graph: read -> decode -> caption -> nouns -> clip -> fragments.

CPU stages without a model (read, decode, write) run as tasks that scale with the CPUs; stages
with a model (caption, nouns, clip) run as actor pools that load it once. GPU stages ask Ray for
GPUs when the job says so.
"""
from __future__ import annotations

import os

import numpy as np
import ray

from pixcap.schemas import Job
from pixcap.schemas import batch as B
from pixcap.schemas.manifest import FRAGMENTS_DIR, WORK_DIR
from pixcap.stages.caption import CaptionStage, SidecarCaptionStage
from pixcap.stages.clip import ClipStage
from pixcap.stages.decode import DecodeStage
from pixcap.stages.nouns import NounsStage
from pixcap.stages.read import ReadStage
from pixcap.stages.write import FragmentWriter

from . import failpoints

DECODE_BATCH = 16
# Ray Data coalesces a task's output into blocks of up to 128 MiB by default: 16,000 small images
# travelled as one block, held whole by every stage, and nothing was committed until the end.
# 8 MiB blocks (a dozen SA-1B photos, thousands of thumbnails) keep the graph streaming.
MAX_BLOCK_BYTES = 8 << 20
WRITE_BATCH = 8  # rows per fragment: what a crash can lose of finished work, per write task
# Model actors restart when their worker dies, and retry the batches it held. The differing
# remote args also keep Ray Data from fusing read and decode into a model actor, where they
# would run one batch at a time instead of on every CPU.
ACTOR_RESTARTS = {"max_restarts": -1, "max_task_retries": -1}


def _as_lists(batch: dict) -> dict:
    """Ray's numpy batches turn list columns (nouns) into object arrays of string arrays, which
    Arrow cannot take back and pickles instead; hand them back as lists of lists."""
    for column, values in batch.items():
        if isinstance(values, np.ndarray) and values.dtype == object and len(values) and isinstance(values[0], np.ndarray) and values[0].dtype.kind in "UO":
            batch[column] = [v.tolist() for v in values]
    return batch


def _counted(stage_cls, name: str, counter):
    """Wrap a stage class so each batch it finishes is reported to the progress counter."""

    class Counted:
        def __init__(self, *args, **kwargs):
            self.stage = stage_cls(*args, **kwargs)

        def __call__(self, batch):
            failpoints.reached(name)
            out = _as_lists(self.stage(batch))
            counter.add.remote(name, len(out[B.KEY]))
            return out

    Counted.__name__ = stage_cls.__name__
    return Counted


def _read(parts, shard_size, read_captions, max_file_bytes, counter):
    for rows in ReadStage(shard_size, read_captions, max_file_bytes)(parts):
        failpoints.reached("read")
        counter.add.remote("read", len(rows[B.KEY]))
        yield rows


def _decode(batch, config, counter):
    failpoints.reached("decode")
    out = DecodeStage(config)(batch)
    counter.add.remote("decode", len(out[B.KEY]))
    return out


def _write(batch, fragments_dir):
    failpoints.reached("write")
    return FragmentWriter(fragments_dir)(batch)


def build_dataset(parts: list, job: Job, counter) -> "ray.data.Dataset":
    """The dataset of fragment-ledger rows for the given parts (models already resolved)."""
    cpus = job.ray.cpus_per_task
    actor_cpus = job.ray.cpus_per_actor
    faults = failpoints.worker_env()  # {} unless a crash test set PIXCAP_KILL_AT
    ray.data.DataContext.get_current().target_max_block_size = MAX_BLOCK_BYTES
    ds = ray.data.from_items(parts, override_num_blocks=max(1, len(parts)))
    ds = ds.map_batches(
        _read, batch_size=1, fn_kwargs={"shard_size": job.shard_size, "read_captions": job.caption.backend == "sidecar",
                          "max_file_bytes": job.decode.max_file_bytes, "counter": counter},
        num_cpus=cpus, **faults,
    )
    ds = ds.map_batches(_decode, batch_size=DECODE_BATCH, fn_kwargs={"config": job.decode, "counter": counter}, num_cpus=cpus, **faults)
    caption_stage = CaptionStage if job.caption.backend == "hf" else SidecarCaptionStage
    caption_gpus = job.caption.gpus_per_actor if job.caption.backend == "hf" else 0
    for stage, name, config, gpus in (
        (caption_stage, "caption", job.caption, caption_gpus),
        (NounsStage, "nouns", job.nouns, 0),
        (ClipStage, "clip", job.clip, job.clip.gpus_per_actor),
    ):
        ds = ds.map_batches(
            _counted(stage, name, counter),
            fn_constructor_kwargs={"config": config},
            batch_size=config.batch_size,
            compute=ray.data.ActorPoolStrategy(size=config.actors),
            num_gpus=gpus,
            num_cpus=actor_cpus,
            **ACTOR_RESTARTS, **faults,
        )
    return ds.map_batches(_write, batch_size=WRITE_BATCH, fn_kwargs={"fragments_dir": os.path.join(job.output, WORK_DIR, FRAGMENTS_DIR)}, num_cpus=cpus, **faults)
