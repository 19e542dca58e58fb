"""Trainer throughput: data-loader samples/s per worker (raw shards vs precomputed features), tiny steps/s.

    python -m bench.bench_train [--samples 256] [--workers 1 2] [--steps 15]

Writes synthetic shards (photo-sized JPEGs in the shard contract), encodes them with the tiny T5 and
VAE, then times the loaders and a short tiny-model training run on each. CPU figures.
"""
from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from pixcap.models.tiny import build_tiny_models
from pixcap.schemas import load_train_job
from pixcap.schemas.records import CAPTION_EXT, HEIGHT, IMAGE_EXT, KEY, RECORD_EXT, SAMPLE_COLUMNS, WIDTH
from pixcap.trainer.data import build_loader, expand_shards
from pixcap.trainer.encode import encode_shards
from pixcap.trainer.loop import train

PHOTO_SIZES = [(640, 480), (480, 640), (512, 512), (800, 450)]  # (width, height)
BUCKETS = "aspect"  # the multi-scale stages' loader: the heavier of the two modes


def write_photo_shards(directory: Path, n_shards: int, per_shard: int) -> None:
    """Shards of noisy colour photographs-to-be, each sample KEY.jpg, KEY.txt and a KEY.json record."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for s in range(n_shards):
        with wds.TarWriter(str(directory / f"bench-{s:05d}.tar")) as sink:
            for j in range(per_shard):
                width, height = PHOTO_SIZES[j % len(PHOTO_SIZES)]
                pixels = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
                image = Image.fromarray(pixels).resize((width, height), Image.BICUBIC)  # smooth, JPEG-sized
                jpeg = io.BytesIO()
                image.save(jpeg, format="JPEG", quality=90)
                key = f"bench/{s:05d}/{j:04d}"
                record = {name: None for name in SAMPLE_COLUMNS} | {KEY: key, WIDTH: width, HEIGHT: height}
                sink.write({"__key__": key, IMAGE_EXT: jpeg.getvalue(), CAPTION_EXT: b"a photo of a red house",
                            RECORD_EXT: json.dumps(record).encode()})


def bench_job(urls, output, models: dict, **overrides):
    """The tiny transformer on CPU, no sampling, lr as given."""
    return load_train_job({
        "shards": list(urls), "output": str(output), "model": "tiny", "resolution": 256, "buckets": BUCKETS,
        "text_encoder": str(models["t5"]), "vae": str(models["vae"]), "lr": 1e-4, "lr_scaling": "none",
        "warmup_steps": 2, "ema_decay": 0.9, "sampling_prompts": [], **overrides,
    })


def loader_rate(job, urls, batches: int) -> float:
    """Samples/s over `batches` batches, after the first (worker start-up and shuffle-buffer fill)."""
    stream = iter(build_loader(job, urls))
    next(stream)
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        n += len(next(stream)[KEY])
    return n / (time.perf_counter() - start)


def train_rate(job) -> float:
    """Steps/s of a short run, from its log, leaving out the first steps (model loading)."""
    train(job)
    log = [json.loads(line) for line in (Path(job.output) / "log.jsonl").read_text().splitlines()]
    return sum(e["steps_per_s"] for e in log[3:]) / len(log[3:])


def measure(root: Path, args) -> list:
    """The table's rows: (what, rate, per-worker rate or note)."""
    models = build_tiny_models(root / "models")
    write_photo_shards(root / "raw", n_shards=4, per_shard=args.samples // 4)
    start = time.perf_counter()
    encode_shards([str(root / "raw" / "*.tar")], str(root / "features"), text_encoder=str(models["t5"]),
                  vae=str(models["vae"]), models_cache=str(root / "models"), resolution=256, buckets=BUCKETS)
    encode_s = time.perf_counter() - start

    rows = []
    for name in ("raw", "features"):
        urls = expand_shards([str(root / name / "*.tar")])
        for workers in args.workers:
            job = bench_job(urls, root / "unused", models, batch_size=8, num_workers=workers, shuffle_buffer=64)
            rate = loader_rate(job, urls, batches=args.samples // 8)
            rows.append((f"loader {name}, {workers} worker(s)", f"{rate:8.1f} samples/s", f"{rate / workers:8.1f} per worker"))
        job = bench_job(urls, root / f"run_{name}", models, max_steps=args.steps, batch_size=8, num_workers=1,
                        shuffle_buffer=64, checkpoint_every=1000, log_every=1)
        rows.append((f"train tiny 256px bs 8, {name}", f"{train_rate(job):8.2f} steps/s", ""))
    rows.append(("encode (tiny T5 + VAE)", f"{args.samples / encode_s:8.1f} samples/s", "incl. model load"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256, help="synthetic samples written")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for row in measure(Path(tmp), args):
            print(f"{row[0]:<36} {row[1]}  {row[2]}")


if __name__ == "__main__":
    main()
