"""Streaming training batches from WebDataset shards: filter on KEY.json, fit to a size, batch by size.

shards -> [split by node, split by worker | resampled per rank] -> tar samples -> shuffle buffer
       -> filter (KEY.json) -> fit the image to its square or bucket (or load precomputed features)
       -> batches of one size

Two modes. Epoch mode (resampled=False): every shard is read once, shards split across ranks and then
across each rank's data-loader workers, so each sample is seen once per epoch over all ranks.
Resampled mode (the trainer's): each rank draws shards with replacement from its own share
(shards[rank::world]), forever; ranks never read the same shard. Every random choice is seeded by
(seed, rank, segment, worker), so a stream is a pure function of its segment number and of the
samples carried into it; the trainer restarts the stream at every segment boundary, which is what
makes resuming exact (see loop.py). Batches hold one bucket; a bucket's samples that did not fill a
batch by a segment's end are carried into the next segment by their ids (shard, key, member
offsets; see step_batches), which each checkpoint holds, so no bucket is starved however rare it is.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import random
import logging
import signal
import threading
from collections import Counter, defaultdict

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from pixcap.schemas import JobError
from pixcap.schemas.records import (
    AESTHETIC_SCORE, CAPTION, CAPTION_EXT, CLIP_SCORE, HEIGHT, IMAGE_EXT, KEY, LATENT_EXT, N_GROUNDED, N_NOUNS, ORIG_HEIGHT,
    ORIG_WIDTH, RECORD_EXT, T5_EMBEDDING_EXT, T5_MASK_EXT, WIDTH, caption_feature_members,
)
from pixcap.schemas.train_job import FilterConfig, TrainJob
from pixcap.schemas.train_skips import (
    BROKEN_SHARD, CARRIED_UNREADABLE, LATENT_NOT_POSTERIOR, LATENT_SIZE, NO_PIXELS, NO_RECORD, SMALLER_THAN_BUCKET,
    UNREADABLE, NO_CHOSEN_CAPTION, NO_CAPTION_FEATURES, filter_skip,
)

from .buckets import BUCKETS, covers, fit_bucket, fit_square, nearest_bucket, to_pixels
from .caption_choice import choice_rng, choose_caption
from .control_maps import fit_control
from .coverage import ShareCoverage
from .features import load_text_features, npy
from .latents import POSTERIOR_CHANNELS
from .shard_read import expand_shards, one_line, read_again, sample_id, tar_samples  # noqa: F401  (expand_shards re-exported)

logger = logging.getLogger(__name__)


SKIPS_BEFORE_WARNING = 10_000


def worker_rng(seed: int, segment: int) -> random.Random:
    """An RNG for this rank and data-loader worker; a str seed hashes the same in every process."""
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    return random.Random(f"pixcap-{seed}-{rank}-{segment}-{worker}")


def filter_failures(record: dict, filters: FilterConfig) -> list:
    """The names of the filters this KEY.json record fails; a missing value fails its filter."""
    width, height = record.get(WIDTH) or 0, record.get(HEIGHT) or 0
    checks = {
        "min_clip_score": lambda v: (record.get(CLIP_SCORE) or -np.inf) >= v,
        "min_n_nouns": lambda v: (record.get(N_NOUNS) or 0) >= v,
        "min_n_grounded": lambda v: (record.get(N_GROUNDED) or 0) >= v,
        "min_aesthetic_score": lambda v: (record.get(AESTHETIC_SCORE) or -np.inf) >= v,
        "max_aspect_ratio": lambda v: min(width, height) > 0 and max(width, height) / min(width, height) <= v,
        "min_side": lambda v: min(width, height) >= v,
    }
    failed = [name for name, ok in checks.items() if getattr(filters, name) is not None and not ok(getattr(filters, name))]
    # A score over its threshold, or missing (the pipeline's classifier did not run or scored null), fails.
    return failed + [f"max_scores.{column}" for column, threshold in filters.max_scores.items()
                     if record.get(column) is None or record[column] > threshold]


def choose_fit(height: int, width: int, mode: str, resolutions):
    """(ratio, (height, width)) an image is fitted to, or None where it would have to be enlarged.

    square: resolution x resolution. aspect: the nearest-ratio bucket of the largest table whose
    bucket the image covers. An image is never enlarged to fill a bucket: a blurred target teaches blur.
    """
    if mode == "square":
        side = max(resolutions)
        return (1.0, (side, side)) if covers(height, width, (side, side)) else None
    for resolution in sorted(resolutions, reverse=True):
        ratio, size = nearest_bucket(height, width, resolution)
        if covers(height, width, size):
            return ratio, size
    return None


def latent_fit(posterior: np.ndarray, mode: str, resolutions):
    """(ratio, size) a precomputed posterior [8, h, w] was encoded at, or None if this job has no such size."""
    size = (posterior.shape[1] * 8, posterior.shape[2] * 8)
    if mode == "square":
        side = max(resolutions)
        return (1.0, size) if size == (side, side) else None
    for resolution in resolutions:
        for ratio, bucket in BUCKETS[resolution].items():
            if bucket == size:
                return ratio, size
    return None


class PrepareSamples:
    """Raw samples -> filtered training samples fitted to their size; counts what it skips, and why."""

    def __init__(self, mode: str, resolutions, filters: FilterConfig, coverage: ShareCoverage = None,
                 control: str | None = None, caption_choice: dict | None = None, seed: int = 0, segment: int = 0):
        self.mode, self.resolutions, self.filters = mode, list(resolutions), filters
        self.caption_choice, self.seed, self.segment = caption_choice or {}, seed, segment
        self.control = control  # a ControlNet job's control map kind (KEY.<control>.png), fitted with the image
        self.coverage = coverage  # resampled streams: stop once every shard was read and nothing passed
        self.skipped = Counter()

    def broken_shard(self, url: str, error: Exception) -> None:
        """A shard that breaks off costs its remaining samples, never the training run."""
        self.skipped[BROKEN_SHARD] += 1
        logger.warning(f"pixcap: skipped the rest of {url}: {one_line(error)}")

    def __call__(self, src):
        in_a_row, kept_any = 0, False
        for sample in src:
            prepared = self.prepare_or_skip(sample)
            if prepared is not None:
                in_a_row, kept_any = 0, True
                yield prepared
                continue
            in_a_row += 1
            if not kept_any and self.coverage and self.coverage.read_through is not None \
                    and in_a_row >= self.coverage.read_through:
                raise JobError(f"no sample of the {self.coverage.shard_count} shard(s) this rank reads passes the "
                               f"filters and fits the buckets (skipped: {dict(self.skipped)}); check filters.*, "
                               "resolution and buckets against these shards")
            if in_a_row % SKIPS_BEFORE_WARNING == 0:  # the resampled stream never ends: say why nothing comes
                logger.warning(f"pixcap: {in_a_row} samples in a row skipped ({dict(self.skipped)}); do the filters"
                               f" and the bucket settings fit these shards?")

    def carried(self, ids):
        """The samples `ids` (sample_id) name, read again and prepared; those that cannot be are counted."""
        for sample in read_again(ids):
            if sample is None:
                self.skipped[CARRIED_UNREADABLE] += 1
                continue
            prepared = self.prepare_or_skip(sample)
            if prepared is not None:
                yield prepared

    def prepare_or_skip(self, sample: dict):
        """The prepared sample, or None after counting why it is skipped."""
        try:
            prepared = self.prepare(sample)
        except Exception:  # a corrupt member costs one sample, never the stream
            prepared = UNREADABLE
        if isinstance(prepared, str):
            self.skipped[prepared] += 1
            return None
        return prepared

    def prepare(self, sample: dict):
        """A training sample dict, or the reason (str) it is skipped."""
        if RECORD_EXT not in sample:
            return NO_RECORD
        record = json.loads(sample[RECORD_EXT])
        failed = filter_failures(record, self.filters)
        if failed:
            return filter_skip(failed[0])
        caption = sample[CAPTION_EXT].decode("utf-8") if CAPTION_EXT in sample else record.get(CAPTION) or ""
        out = {KEY: sample["__key__"], CAPTION: caption, SAMPLE_ID: sample_id(sample)}
        text_members = (T5_EMBEDDING_EXT, T5_MASK_EXT)  # precomputed: the T5 features of the caption trained on
        if self.caption_choice:
            chosen = choose_caption(sample, record, self.caption_choice, choice_rng(self.seed, self.segment, sample.get("__url__"), out[KEY]))
            if chosen is None:
                return NO_CHOSEN_CAPTION
            out["captioner"], out[CAPTION] = chosen
            if T5_EMBEDDING_EXT in sample:
                text_members = chosen_text_members(sample, out["captioner"], same_as_primary=out[CAPTION] == caption)
                if text_members is None:
                    return NO_CAPTION_FEATURES
        if LATENT_EXT in sample:
            posterior = npy(sample[LATENT_EXT])
            if posterior.shape[0] != POSTERIOR_CHANNELS:
                return LATENT_NOT_POSTERIOR  # a single frozen draw, from an older pixcap encode
            found = latent_fit(posterior, self.mode, self.resolutions)
            if found is None:
                return LATENT_SIZE
            ratio, size = found
            out["posterior"] = torch.from_numpy(posterior.astype(np.float32))
        elif IMAGE_EXT in sample:
            image = Image.open(io.BytesIO(sample[IMAGE_EXT]))  # reads the header only; decoded when fitted
            found = choose_fit(image.height, image.width, self.mode, self.resolutions)
            if found is None:
                return SMALLER_THAN_BUCKET
            ratio, size = found
            image = image.convert("RGB")
            fitted = fit_square(image, size[0]) if self.mode == "square" else fit_bucket(image, size)
            out["pixels"] = torch.from_numpy(to_pixels(fitted))
        else:
            return NO_PIXELS
        if self.control:
            control = fit_control(sample, record, self.control, self.mode, size)
            if isinstance(control, str):
                return control
            out["control"] = control
        if all(member in sample for member in text_members):
            out["t5"], out["t5_mask"] = load_text_features(*(sample[member] for member in text_members))
        # PixArt's micro-conditions (used at 1024): in aspect mode the original image's (height, width) and
        # the bucket's ratio (InternalDataMS); in square mode the square itself and 1 (InternalData).
        if self.mode == "square":
            orig = size
        else:
            orig = (record.get(ORIG_HEIGHT) or record.get(HEIGHT) or size[0],
                    record.get(ORIG_WIDTH) or record.get(WIDTH) or size[1])
        out["resolution"] = torch.tensor(orig, dtype=torch.float32)
        out["aspect_ratio"] = torch.tensor([ratio], dtype=torch.float32)
        # Raw and precomputed samples never share a batch: their tensors differ.
        out["bucket"] = (size, "posterior" in out, "t5" in out)
        return out


def chosen_text_members(sample: dict, captioner: str, same_as_primary: bool):
    """The members of the chosen caption's T5 features in an encoded sample, or None where it has none:
    KEY.NAME.t5.npy; or, from a pixcap encode that stored the primary caption's only, KEY.t5.npy
    where the chosen caption is the primary's text (the same text has the same features)."""
    members = caption_feature_members(captioner)
    if all(member in sample for member in members):
        return members
    if same_as_primary and T5_MASK_EXT in sample:
        return T5_EMBEDDING_EXT, T5_MASK_EXT
    return None


# Batch fields a data-loader worker adds for step_batches alone: the samples it carries over the
# segment boundary, with its worker number. step_batches takes them off before the trainer sees the batch.
CARRY, WORKER = "carry", "worker"
SAMPLE_ID = "sample_id"


def collate(samples: list) -> dict:
    """Samples of one bucket -> a batch dict of stacked tensors and lists."""
    batch = {KEY: [s[KEY] for s in samples], CAPTION: [s[CAPTION] for s in samples]}
    for name in ("pixels", "posterior", "control", "t5", "t5_mask", "resolution", "aspect_ratio"):
        if name in samples[0]:
            batch[name] = torch.stack([s[name] for s in samples])
    return batch


def bucket_batches(src, batch_size: int, prepare: PrepareSamples, partial: bool, carried=(), quota=None):
    """Group samples by bucket; yield a batch when a bucket fills (and the remainders at the end if partial).

    carried: samples to put into the buckets first, those a previous segment left in them. quota: the
    number of batches to yield; the last one carries CARRY, the ids of every sample left in a bucket
    (to be carried into the next segment), and WORKER. Each batch carries `skipped`: the samples this
    worker skipped since its previous batch, by reason.
    """
    pending = defaultdict(list)
    reported = Counter()
    emitted = 0
    if quota == 0:
        return

    def emit(samples):
        nonlocal emitted
        batch = collate(samples)
        batch["skipped"] = dict(prepare.skipped - reported)
        if prepare.caption_choice:  # which captioner each trained sample's caption came from
            batch["captioners"] = dict(Counter(s["captioner"] for s in samples))
        reported.update(batch["skipped"])
        samples.clear()
        emitted += 1
        if emitted == quota:
            batch[CARRY] = [s[SAMPLE_ID] for bucket in pending.values() for s in bucket]
            batch[WORKER] = wds.utils.pytorch_worker_info()[2]
        return batch

    for sample in itertools.chain(carried, src):
        bucket = pending[sample["bucket"]]
        bucket.append(sample)
        if len(bucket) == batch_size:
            yield emit(bucket)
            if emitted == quota:
                return
    if partial:
        for samples in pending.values():
            if samples:
                yield emit(samples)


def worker_shares(carry, workers: int) -> list:
    """The carried ids of each of `workers` data-loader workers, from those the previous segment's workers
    left (list per worker): worker i's go to worker i % workers, so an unchanged count keeps them in place."""
    shares = [[] for _ in range(workers)]
    for i, ids in enumerate(carry or []):
        shares[i % workers].extend(ids)
    return shares


def batch_stream(job: TrainJob, urls, segment: int = 0, resampled: bool = True, carry=None):
    """The webdataset pipeline of one rank's batches for `segment` (epoch mode: the epoch number).

    Resampled: each data-loader worker yields its share of the segment's checkpoint_every batches (the
    loader takes them round-robin), starting from the samples `carry` says the previous segment's
    workers left in their buckets, and its last batch says which samples it leaves in its own.
    """
    if resampled:
        share = list(wds.split_by_node(urls))
        if not share:
            raise JobError(f"shards: {len(urls)} shard(s) cannot feed every rank; give at least one per rank")
        shards = wds.ResampledShards(share, deterministic=True, worker_seed=lambda: worker_rng(job.seed, segment).getrandbits(31))
        stages = [shards]
        coverage = ShareCoverage(len(share))
    else:
        order = list(urls)
        random.Random(f"pixcap-epoch-{job.seed}-{segment}").shuffle(order)  # the same order on every rank
        stages = [wds.SimpleShardList(order), wds.split_by_node, wds.split_by_worker]
        coverage = None  # an epoch ends by itself
    prepare = PrepareSamples(job.buckets, job.resolutions, job.filters, coverage,
                             control=job.controlnet.control if job.adapter == "controlnet" else None,
                             caption_choice=job.caption_choice, seed=job.seed, segment=segment)
    def shuffle(src):
        if job.shuffle_buffer < 2:
            return src
        return wds.shuffle(job.shuffle_buffer, min(100, job.shuffle_buffer), rng=worker_rng(job.seed, segment))(src)

    def batches(src):
        if not resampled:
            return bucket_batches(src, job.batch_size, prepare, partial=True)
        _, _, worker, workers = wds.utils.pytorch_worker_info()
        carried = prepare.carried(worker_shares(carry, workers)[worker])
        quota = len(range(worker, job.checkpoint_every, workers))
        return bucket_batches(src, job.batch_size, prepare, partial=False, carried=carried, quota=quota)

    return wds.DataPipeline(
        *stages, lambda src: tar_samples(src, prepare.broken_shard), *([coverage] if coverage else []), shuffle, prepare,
        batches,
    )


def build_loader(job: TrainJob, urls, segment: int = 0, resampled: bool = True, carry=None) -> torch.utils.data.DataLoader:
    """A DataLoader over batch_stream; workers yield whole batches, taken in a fixed round-robin order."""
    return torch.utils.data.DataLoader(
        batch_stream(job, urls, segment, resampled, carry), batch_size=None, num_workers=job.num_workers,
        persistent_workers=False, prefetch_factor=2 if job.num_workers else None,
        worker_init_fn=_quiet_exit_on_sigterm if job.num_workers else None,
    )


def _quiet_exit_on_sigterm(worker_id: int) -> None:
    # Slurm and `timeout` signal the whole process group. A worker killed by SIGTERM makes torch
    # print a traceback while the trainer stops cleanly; one that exits with status 0 does not.
    # (Ignoring it instead would hang multiprocessing's exit, which terminates workers with SIGTERM.)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # held while the trainer forked it (below)


def _started(loader):
    """iter(loader), with SIGTERM held while it builds its iterator and forks the workers; a SIGTERM that
    came meanwhile is handled once the iterator is whole (its workers shut down first).

    Held twice. The signal mask holds it in this thread, and the forked workers inherit it until their
    own handler is set: a SIGTERM that arrives during a fork is otherwise handled inside the fork's
    callbacks (logging's _releaseLock), where Python drops the exception the trainer's handler raises,
    and the training would go on. The mask is this thread's only: a SIGTERM to the process that another
    thread takes (torch's own) still runs Python's handler here, in the middle of the iterator's
    __init__, and the half-built iterator's __del__ then prints "Exception ignored ... _workers_status".
    So, in the main thread, the handler only notes the signal until the iterator is built."""
    if not loader.num_workers:
        return iter(loader)
    noted = []
    on_main = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGTERM, lambda signum, frame: noted.append(signum)) if on_main else None
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    batches = None
    try:
        batches = iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a SIGTERM held by the mask is noted now
        if on_main:
            signal.signal(signal.SIGTERM, handler)
        if noted:
            shutdown = getattr(batches, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            if callable(handler):
                handler(signal.SIGTERM, None)
            else:
                signal.raise_signal(signal.SIGTERM)
    return batches


def _in_the_trainer(loader):
    """The loader's batches, with a JobError from a data-loader worker raised as its own one line:
    torch raises a worker's exception again with the worker's whole traceback as its message.

    Closing this generator shuts the workers down here, not in the iterator's __del__: an
    exception raised inside __del__ is dropped, so a SIGTERM arriving while workers are shut
    down there would be lost and the training would go on."""
    batches = _started(loader)
    try:
        yield from batches
    except JobError as e:
        lines = str(e).strip().splitlines()
        raise JobError(lines[-1].partition(": ")[2] if len(lines) > 1 else str(e)) from None
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)  # torch's own; absent without workers
        if shutdown is not None:
            shutdown()


def step_batches(job: TrainJob, urls, start_step: int, data_state: dict | None = None):
    """Yield (step, batch) from start_step on; the stream restarts, reseeded, every checkpoint_every steps.

    A segment starts with the samples the previous one left in partly filled buckets, so a bucket
    too rare to fill within one segment still trains in proportion to its share of the data (as
    PixArt's AspectRatioBatchSampler, which fills buckets over a whole epoch). data_state holds their
    ids ({"carry": [ids per worker]}): give the one a checkpoint of start_step holds. It is updated in
    place as batches are taken: after the batch of step N it is what a checkpoint of step N + 1 must hold.
    A resume from a step inside a segment replays the segment's first batches and drops them.
    """
    state = {} if data_state is None else data_state
    workers = max(1, job.num_workers)
    step = start_step
    while True:
        segment, offset = divmod(step, job.checkpoint_every)
        carry_in = state.get(CARRY, [])
        carry_out = dict(enumerate(worker_shares(carry_in, workers)))  # a worker with no batch this segment keeps its own
        batches = _in_the_trainer(build_loader(job, urls, segment, carry=carry_in))
        try:
            for index, batch in enumerate(batches):
                if CARRY in batch:
                    carry_out[batch.pop(WORKER)] = batch.pop(CARRY)
                if index < offset:
                    continue
                if (step + 1) % job.checkpoint_every == 0:  # every worker has given its last batch of the segment
                    state[CARRY] = [carry_out[w] for w in range(workers)]
                yield step, batch
                step += 1
                if step % job.checkpoint_every == 0:
                    break
        finally:
            batches.close()  # shuts the segment's workers down before the next segment starts its own
