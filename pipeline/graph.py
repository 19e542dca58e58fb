"""The Ray Data graph: read -> decode -> [control] -> model_inputs -> [classifiers] -> captioners -> nouns -> clip
-> [scorers] -> fragments.

Read, decode and model_inputs are one task per input part (a tar, or a chunk of a folder), so
parts spread over every CPU of the cluster; decode writes each image's stored bytes to the output
there (output/blobs.py), with what the registry's stored-image stages (control maps) make of them beside
them, and model_inputs makes the models' crops there, so the rows that go on
carry only model-ready crops and small columns. The stages with a model (caption, nouns, clip)
run as actor pools that load it once, on GPUs when the job asks for them; the write is a task.

The driver builds the graph without importing a stage: each stage's module is imported where it runs,
in the task or the actor (the stages import torch, transformers, spaCy and open_clip, 2-3 s of a
`pixcap run` that the driver need not spend, and the memory they hold).
"""
from __future__ import annotations

import numpy as np
import ray

from pixcap.schemas import Job
from pixcap.schemas import batch as B
from pixcap.schemas import stages as registry
from pixcap.schemas.fragments import fragment_schema

from pixcap.output import failpoints
from pixcap.output.blobs import BlobWriter
from pixcap.output.fragments import FragmentWriter
from .progress import PARTS_READ, PARTS_READ_BYTES, PARTS_READ_INPUTS
from .resources import actor_pools
from pixcap.output.storage import Storage

# Ray Data coalesces a task's output into blocks of up to 128 MiB by default: 16,000 small images
# travelled as one block, held whole by every stage, and nothing was committed until the end.
# 8 MiB blocks (a dozen SA-1B photos, thousands of thumbnails) keep the graph streaming.
MAX_BLOCK_BYTES = 8 << 20
WRITE_BATCH = 8  # rows per fragment: what a crash can lose of finished work, per write task
# Model actors restart when their worker dies and retry the batches it held: Ray Data's default
# for actor pools (max_restarts=-1, max_task_retries=-1). A runtime_env of their own keeps Ray Data
# from fusing read and decode into a model actor (it fuses a task stage into an actor stage with the
# same remote args), where they would run one batch at a time instead of on every CPU.
def _actor_env(stage: str, faults: dict) -> dict:
    env_vars = faults.get("runtime_env", {}).get("env_vars", {})
    return {"env_vars": {**env_vars, "PIXCAP_STAGE": stage}}


def _as_lists(batch: dict) -> dict:
    """Ray's numpy batches turn list columns (nouns) into object arrays of string arrays, which
    Arrow cannot take back and pickles instead; hand them back as lists of lists."""
    for column, values in batch.items():
        if isinstance(values, np.ndarray) and values.dtype == object and len(values) and isinstance(values[0], np.ndarray) and values[0].dtype.kind in "UO":
            batch[column] = [v.tolist() for v in values]
    return batch


def _counted(stage_path: str, name: str, counter):
    """Wrap a stage class ("module:Class", imported in the actor) so each batch it finishes is
    reported to the progress counter."""

    class Counted:
        def __init__(self, *args, **kwargs):
            self.stage = registry.imported(stage_path)(*args, **kwargs)

        def __call__(self, batch):
            failpoints.reached(name)
            out = _as_lists(self.stage(batch))
            counter.add.remote(name, len(out[B.KEY]))
            return out

    Counted.__name__ = stage_path.rpartition(":")[2]  # the actors' name: MapWorker(MapBatches(CaptionStage))
    return Counted


def _read(parts, shard_size, read_captions, max_file_bytes, storage_options, counter):
    from pixcap.stages.read import ReadStage

    for rows in ReadStage(shard_size, read_captions, max_file_bytes, storage_options)(parts):
        failpoints.reached("read")
        counter.add.remote("read", len(rows[B.KEY]))
        counter.add.remote("read_bytes", sum(len(data) for data in rows[B.DATA]))
        yield rows


def _decode(batch, config, storage, counter, stored_stages=(), members=None):
    """Decode, then each stored-image stage the job runs ((name, config): the control maps), then the stored
    bytes and the members made of them go to blobs: they stay here, on the output."""
    from pixcap.stages.decode import DecodeStage

    failpoints.reached("decode")
    out = DecodeStage(config)(batch)
    counter.add.remote("decode", len(out[B.KEY]))
    for name, stage_config in stored_stages:
        failpoints.reached(name)
        out = registry.BY_NAME[name].stage_class(stage_config)(stage_config)(out)
        counter.add.remote(name, len(out[B.KEY]))
    return BlobWriter(storage, members)(out)


# One ModelInputsStage per worker process and job configuration: Ray reuses task workers, and
# the stage reads the image processor's config from disk when it is built.
_MODEL_INPUTS: dict = {}


def _model_inputs(batch, captioners, clip, keep_image):
    from pixcap.stages.model_inputs import ModelInputsStage

    key = (repr(captioners), repr(clip), keep_image)
    if key not in _MODEL_INPUTS:
        _MODEL_INPUTS.clear()
        _MODEL_INPUTS[key] = ModelInputsStage(captioners, clip, keep_image)
    return _MODEL_INPUTS[key](batch)


def model_inputs_arguments(job: Job) -> dict:
    """What model_inputs makes for this job: each captioner's crop column with its config, and whether
    the model image goes on (a classifier or a native captioner takes it whole)."""
    caption_stages = (registry.CAPTION_STAGE, registry.CAPTIONERS_STAGE)
    captioners = [found for found in registry.model_stages(job) if found.spec.name in caption_stages]
    named = [(B.caption_pixels(getattr(found.config, "name", "")), found.config) for found in captioners]
    keep = bool(job.classifiers) or any(getattr(found.config, "view", "crop") == "native" for found in captioners)
    return dict(captioners=named, clip=job.clip, keep_image=keep)  # ModelInputsStage's arguments


def _read_part(parts, shard_size, read_captions, max_file_bytes, storage_options, decode, storage, captioners, clip,
               keep_image, counter, stored_stages=(), members=None):
    """One input part (a tar, or a chunk of a folder) per task: its members read, decoded and
    cropped for the models, a read batch at a time. One map_batches rather than three: Ray Data
    fuses the three anyway, and a fused task takes as many parts as its largest batch size, so
    16 tars were read, one after the other, by one task on one node."""
    inputs = 0
    for rows in _read(parts, shard_size, read_captions, max_file_bytes, storage_options, counter):
        inputs += len(rows[B.KEY])
        yield _model_inputs(_decode(rows, decode, storage, counter, stored_stages, members), captioners, clip,
                            keep_image)
    # A part read through gives the progress line its true count of inputs for its bytes (sidecars
    # and tar headers included), from which it estimates the parts not read yet.
    counter.add.remote(PARTS_READ, len(parts[B.PART_ID]))
    counter.add.remote(PARTS_READ_BYTES, int(sum(parts[B.PART_BYTES])))
    counter.add.remote(PARTS_READ_INPUTS, inputs)


def _write(batch, storage, schema):
    failpoints.reached("write")
    return FragmentWriter(storage, schema)(batch)


def build_dataset(parts: list, job: Job, storage: Storage, counter) -> "ray.data.Dataset":
    """The dataset of fragment-ledger rows for the given parts (models already resolved)."""
    cpus = job.ray.cpus_per_task
    actor_cpus = job.ray.cpus_per_actor
    faults = failpoints.worker_env()  # {} unless a crash test set PIXCAP_KILL_AT
    ray.data.DataContext.get_current().target_max_block_size = MAX_BLOCK_BYTES
    ds = ray.data.from_items(parts, override_num_blocks=max(1, len(parts)))
    ds = ds.map_batches(
        _read_part, batch_size=1,  # one part per task: a thousand tars spread over the cluster's CPUs
        fn_kwargs={"shard_size": job.shard_size, "read_captions": registry.reads_captions(job),
                   "max_file_bytes": job.decode.max_file_bytes, "storage_options": job.storage_options,
                   "decode": job.decode, "storage": storage, **model_inputs_arguments(job),
                   "counter": counter, "members": registry.blob_members(job),
                   "stored_stages": [(found.name, found.config) for found in registry.stored_image_stages(job)]},
        num_cpus=cpus, **faults,
    )
    for name, actors, gpus in actor_pools(job):  # the pools engine.start_ray checked and fitted
        found = registry.instance(job, name)
        config = found.config
        ds = ds.map_batches(
            _counted(found.stage_path(), name, counter),
            fn_constructor_kwargs={"config": config, **found.kwargs},
            batch_size=config.batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=gpus,
            num_cpus=actor_cpus,
            runtime_env=_actor_env(name, faults),
        )
    schema = fragment_schema(registry.record_schema(job))
    return ds.map_batches(_write, batch_size=WRITE_BATCH, fn_kwargs={"storage": storage, "schema": schema},
                          num_cpus=cpus, **faults)
