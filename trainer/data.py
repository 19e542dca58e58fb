"""Streaming training batches from WebDataset shards: filter on KEY.json, fit to a size, batch by size.

shards -> [split by node, split by worker | resampled per rank] -> tar samples -> shuffle buffer
       -> filter (KEY.json) -> fit the image to its square or bucket (or load precomputed features)
       -> batches of one size

Two modes. Epoch mode (resampled=False): every shard is read once, shards split across ranks and then
across each rank's data-loader workers, so each sample is seen once per epoch over all ranks.
Resampled mode (the trainer's): each rank draws shards with replacement from its own share
(shards[rank::world]), forever; ranks never read the same shard. Every random choice is seeded by
(seed, rank, segment, worker), so a stream is a pure function of its segment number; the trainer
restarts the stream at every segment boundary, which is what makes resuming exact (see loop.py).
"""
from __future__ import annotations

import io
import json
import os
import random
import signal
import sys
from collections import Counter, defaultdict

import fsspec
import numpy as np
import torch
import webdataset as wds
from PIL import Image

from pixcap.schemas import JobError
from pixcap.schemas.records import (
    AESTHETIC_SCORE, CAPTION, CAPTION_EXT, CLIP_SCORE, HEIGHT, IMAGE_EXT, KEY, LATENT_EXT, N_GROUNDED, N_NOUNS, ORIG_HEIGHT,
    ORIG_WIDTH, RECORD_EXT, T5_EMBEDDING_EXT, T5_MASK_EXT, WIDTH,
)
from pixcap.schemas.train_job import FilterConfig, TrainJob

from .buckets import BUCKETS, covers, fit_bucket, fit_square, nearest_bucket, to_pixels
from .coverage import ShareCoverage
from .features import load_text_features, npy
from .latents import POSTERIOR_CHANNELS


SKIPS_BEFORE_WARNING = 10_000


def expand_shards(uris) -> list:
    """Shard URLs from paths, globs, braces ({000..009}), file:// and other fsspec URLs; pipe: kept as is."""
    urls = []
    for uri in uris:
        for url in wds.shardlists.expand_urls(uri):
            if url.startswith("pipe:") or not any(c in url for c in "*?["):
                urls.append(url)
                continue
            fs, path = fsspec.core.url_to_fs(url)
            local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
            urls += sorted(p if local else fs.unstrip_protocol(p) for p in fs.glob(path))
    if not urls:
        raise JobError(f"shards: nothing matches {', '.join(uris) or '(none given)'}")
    return urls


def open_shard(url: str):
    """A shard's byte stream: pipe: through webdataset's gopen, everything else through fsspec."""
    return wds.gopen(url) if url.startswith("pipe:") else fsspec.open(url, "rb").open()


def shard_files(src, on_broken_shard=None):
    """{url} -> the files of each shard ({fname, data, __url__}), then {} to end the shard.

    A shard that cannot be opened or read to its end (truncated, unreachable) keeps the files
    read before the break; on_broken_shard(url, error) is told once and the stream goes on.
    Without it, the error is raised. (webdataset's tar_file_expander reports a truncated shard
    twice and ends the stream when its handler says stop, so this loop is ours.)
    """
    for source in src:
        url, errors = source["url"], []

        def stop(error):
            errors.append(error)
            return False  # leave this shard; the next one is read as usual

        stream = None
        try:
            stream = open_shard(url)
            for file in wds.tariterators.tar_file_iterator(stream, handler=stop):
                yield {**file, "__url__": url}
        except Exception as e:
            errors.append(e)
        finally:
            if stream is not None:
                stream.close()
        if errors:
            if on_broken_shard is None:
                raise errors[0]
            on_broken_shard(url, errors[0])
        yield {}  # the end of a shard: its last sample is never merged with the next shard's first


def tar_samples(src, on_broken_shard=None):
    """Shard URLs -> webdataset samples ({__key__, __url__, ext: bytes}); see shard_files."""
    return wds.tariterators.group_by_keys(shard_files(src, on_broken_shard))


def one_line(error: Exception) -> str:
    text = str(error).split(" @ <", 1)[0]  # webdataset appends the stream object's repr
    return f"{type(error).__name__}: {' '.join(text.split())}"


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
    return [name for name, ok in checks.items() if getattr(filters, name) is not None and not ok(getattr(filters, name))]


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

    def __init__(self, mode: str, resolutions, filters: FilterConfig, coverage: ShareCoverage = None):
        self.mode, self.resolutions, self.filters = mode, list(resolutions), filters
        self.coverage = coverage  # resampled streams: stop once every shard was read and nothing passed
        self.skipped = Counter()

    def broken_shard(self, url: str, error: Exception) -> None:
        """A shard that breaks off costs its remaining samples, never the training run."""
        self.skipped["broken_shard"] += 1
        print(f"pixcap: skipped the rest of {url}: {one_line(error)}", file=sys.stderr)

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
                print(f"pixcap: {in_a_row} samples in a row skipped ({dict(self.skipped)}); do the filters and "
                      f"the bucket settings fit these shards?", file=sys.stderr, flush=True)

    def prepare_or_skip(self, sample: dict):
        """The prepared sample, or None after counting why it is skipped."""
        try:
            prepared = self.prepare(sample)
        except Exception:  # a corrupt member costs one sample, never the stream
            prepared = "unreadable"
        if isinstance(prepared, str):
            self.skipped[prepared] += 1
            return None
        return prepared

    def prepare(self, sample: dict):
        """A training sample dict, or the reason (str) it is skipped."""
        if RECORD_EXT not in sample:
            return "no_record"
        record = json.loads(sample[RECORD_EXT])
        failed = filter_failures(record, self.filters)
        if failed:
            return f"filter:{failed[0]}"
        caption = sample[CAPTION_EXT].decode("utf-8") if CAPTION_EXT in sample else record.get(CAPTION) or ""
        out = {KEY: sample["__key__"], CAPTION: caption}
        if LATENT_EXT in sample:
            posterior = npy(sample[LATENT_EXT])
            if posterior.shape[0] != POSTERIOR_CHANNELS:
                return "latent_not_posterior"  # a single frozen draw, from an older pixcap encode
            found = latent_fit(posterior, self.mode, self.resolutions)
            if found is None:
                return "latent_size"
            ratio, size = found
            out["posterior"] = torch.from_numpy(posterior.astype(np.float32))
        elif IMAGE_EXT in sample:
            image = Image.open(io.BytesIO(sample[IMAGE_EXT]))  # reads the header only; decoded when fitted
            found = choose_fit(image.height, image.width, self.mode, self.resolutions)
            if found is None:
                return "smaller_than_bucket"
            ratio, size = found
            image = image.convert("RGB")
            fitted = fit_square(image, size[0]) if self.mode == "square" else fit_bucket(image, size)
            out["pixels"] = torch.from_numpy(to_pixels(fitted))
        else:
            return "no_image"
        if T5_EMBEDDING_EXT in sample and T5_MASK_EXT in sample:
            out["t5"], out["t5_mask"] = load_text_features(sample[T5_EMBEDDING_EXT], sample[T5_MASK_EXT])
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


def collate(samples: list) -> dict:
    """Samples of one bucket -> a batch dict of stacked tensors and lists."""
    batch = {KEY: [s[KEY] for s in samples], CAPTION: [s[CAPTION] for s in samples]}
    for name in ("pixels", "posterior", "t5", "t5_mask", "resolution", "aspect_ratio"):
        if name in samples[0]:
            batch[name] = torch.stack([s[name] for s in samples])
    return batch


def bucket_batches(src, batch_size: int, prepare: PrepareSamples, partial: bool):
    """Group samples by bucket; yield a batch when a bucket fills (and the remainders at the end if partial).

    Each batch carries `skipped`: the samples this worker skipped since its previous batch, by reason.
    """
    pending = defaultdict(list)
    reported = Counter()

    def emit(samples):
        batch = collate(samples)
        batch["skipped"] = dict(prepare.skipped - reported)
        reported.update(batch["skipped"])
        return batch

    for sample in src:
        bucket = pending[sample["bucket"]]
        bucket.append(sample)
        if len(bucket) == batch_size:
            yield emit(bucket)
            bucket.clear()
    if partial:
        for samples in pending.values():
            if samples:
                yield emit(samples)


def batch_stream(job: TrainJob, urls, segment: int = 0, resampled: bool = True):
    """The webdataset pipeline of one rank's batches for `segment` (epoch mode: the epoch number)."""
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
    prepare = PrepareSamples(job.buckets, job.resolutions, job.filters, coverage)
    def shuffle(src):
        if job.shuffle_buffer < 2:
            return src
        return wds.shuffle(job.shuffle_buffer, min(100, job.shuffle_buffer), rng=worker_rng(job.seed, segment))(src)

    return wds.DataPipeline(
        *stages, lambda src: tar_samples(src, prepare.broken_shard), *([coverage] if coverage else []), shuffle, prepare,
        lambda src: bucket_batches(src, job.batch_size, prepare, partial=not resampled),
    )


def build_loader(job: TrainJob, urls, segment: int = 0, resampled: bool = True) -> torch.utils.data.DataLoader:
    """A DataLoader over batch_stream; workers yield whole batches, taken in a fixed round-robin order."""
    return torch.utils.data.DataLoader(
        batch_stream(job, urls, segment, resampled), batch_size=None, num_workers=job.num_workers,
        persistent_workers=False, prefetch_factor=2 if job.num_workers else None,
        worker_init_fn=_quiet_exit_on_sigterm if job.num_workers else None,
    )


def _quiet_exit_on_sigterm(worker_id: int) -> None:
    # Slurm and `timeout` signal the whole process group. A worker killed by SIGTERM makes torch
    # print a traceback while the trainer stops cleanly; one that exits with status 0 does not.
    # (Ignoring it instead would hang multiprocessing's exit, which terminates workers with SIGTERM.)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))


def _in_the_trainer(loader):
    """The loader's batches, with a JobError from a data-loader worker raised as its own one line:
    torch raises a worker's exception again with the worker's whole traceback as its message.

    Closing this generator shuts the workers down here, not in the iterator's __del__: an
    exception raised inside __del__ is dropped, so a SIGTERM arriving while workers are shut
    down there would be lost and the training would go on."""
    batches = iter(loader)
    try:
        yield from batches
    except JobError as e:
        lines = str(e).strip().splitlines()
        raise JobError(lines[-1].partition(": ")[2] if len(lines) > 1 else str(e)) from None
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)  # torch's own; absent without workers
        if shutdown is not None:
            shutdown()


def step_batches(job: TrainJob, urls, start_step: int):
    """Yield (step, batch) from start_step on; the stream restarts, reseeded, every checkpoint_every steps.

    A resume from a step inside a segment replays the segment's first batches and drops them.
    """
    step = start_step
    while True:
        segment, offset = divmod(step, job.checkpoint_every)
        batches = _in_the_trainer(build_loader(job, urls, segment))
        for _ in range(offset):
            next(batches)
        for batch in batches:
            yield step, batch
            step += 1
            if step % job.checkpoint_every == 0:
                break
        batches.close()  # shuts the segment's workers down before the next segment starts its own
