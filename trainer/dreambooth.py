"""DreamBooth's prior preservation: each step trains on a batch of instance images (the subject, "a photo
of sks dog") and a batch of class images the base model generated ("a photo of a dog"), and adds the class
batch's loss with a weight, so the model learns the subject without forgetting the class.

The class stream is the same kind of stream as the instance one (data.step_batches over prior.class_shards,
seeded apart), and its data state is checkpointed with the instance stream's: resuming stays exact. Both
batches are joined into one forward pass, which is why prior preservation needs one size for every sample
(buckets: square).
"""
from __future__ import annotations

import dataclasses
from collections import Counter

import torch

from pixcap.schemas import JobError
from pixcap.schemas.records import KEY
from pixcap.schemas.train_job import TrainJob

from .data import expand_shards, step_batches

INSTANCES = "instances"  # a joined batch: how many of its first samples are instance images
CLASS_STATE = "class"  # the class stream's data state, inside the instance stream's
CLASS_SEED_OFFSET = 7919  # the class stream's seed is the job's plus this, so its order is its own


def class_job(job: TrainJob) -> TrainJob:
    return dataclasses.replace(job, shards=list(job.prior.class_shards), seed=job.seed + CLASS_SEED_OFFSET)


def with_class_batches(job: TrainJob, batches, start_step: int, data_state: dict):
    """(step, instance batch) -> (step, instance batch followed by a class batch), when prior preservation is on.

    The class stream's own data state (what it carries over segments) is kept inside the instance
    stream's, under CLASS_STATE, so a checkpoint holds both."""
    if not job.prior.class_shards:
        yield from batches
        return
    classes = class_job(job)
    class_state = data_state.setdefault(CLASS_STATE, {})
    class_batches = step_batches(classes, expand_shards(classes.shards), start_step, class_state)
    try:
        for (step, batch), (_, class_batch) in zip(batches, class_batches):
            yield step, join(batch, class_batch)
    finally:
        class_batches.close()


def join(instance: dict, prior: dict) -> dict:
    """One batch of both: tensors concatenated (instances first), lists extended, skip counts added."""
    if instance.keys() != prior.keys():
        raise JobError("prior.class_shards: class and instance shards must both be raw, or both be encoded "
                       "by pixcap encode with the same settings")
    joined = {}
    for key, value in instance.items():
        if isinstance(value, torch.Tensor):
            if value.shape[1:] != prior[key].shape[1:]:
                raise JobError(f"prior.class_shards: a class batch's {key} is {tuple(prior[key].shape[1:])}, "
                               f"the instance batch's {tuple(value.shape[1:])}")
            joined[key] = torch.cat([value, prior[key]])
        elif key == "skipped":
            joined[key] = dict(Counter(value) + Counter({f"class:{k}": v for k, v in prior[key].items()}))
        else:
            joined[key] = list(value) + list(prior[key])
    joined[INSTANCES] = len(instance[KEY])
    return joined


def prior_weighted_loss(per_sample: torch.Tensor, batch: dict, weight: float) -> torch.Tensor:
    """The step's loss: the mean over instance samples plus `weight` times the mean over class samples."""
    n = batch.get(INSTANCES)
    if n is None:
        return per_sample.mean()
    return per_sample[:n].mean() + weight * per_sample[n:].mean()
