"""Trainer throughput: data-loader samples/s per worker (raw shards vs precomputed features), tiny steps/s.

    python bench/bench_train.py [--samples 256] [--workers 1 2]

Writes synthetic shards (the test fixture's writer, photo-sized JPEGs), encodes them with the tiny
T5 and VAE, then times the loaders and a short tiny-model training run on each. CPU figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.trainer.shards_fixture

from pixcap.trainer.data import build_loader, expand_shards  # noqa: E402
from pixcap.trainer.encode import encode_command  # noqa: E402
from pixcap.trainer.loop import train  # noqa: E402
from pixcap.trainer.tiny import build_tiny_trainer_models  # noqa: E402
from tests.trainer.shards_fixture import tiny_train_job, write_shards  # noqa: E402

PHOTO_SIZES = [(640, 480), (480, 640), (512, 512), (800, 450)]


def loader_rate(job, urls, batches: int) -> float:
    """Samples/s over `batches` batches, after the first (worker start-up and shuffle-buffer fill)."""
    stream = iter(build_loader(job, urls))
    next(stream)
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        n += len(next(stream)["key"])
    return n / (time.perf_counter() - start)


def train_rate(job) -> float:
    """Steps/s of a short run, from its log, leaving out the first steps (model loading)."""
    train(job)
    log = [json.loads(line) for line in (Path(job.output) / "log.jsonl").read_text().splitlines()]
    return sum(e["steps_per_s"] for e in log[3:]) / len(log[3:])


def measure(root: Path, args) -> list:
    """The table's rows: (what, rate, per-worker rate or note)."""
    models = build_tiny_trainer_models(root / "models")
    write_shards(root / "raw", n_shards=4, per_shard=args.samples // 4, sizes=PHOTO_SIZES)
    start = time.perf_counter()
    encode_command(argparse.Namespace(
        shards=[str(root / "raw" / "*.tar")], output=str(root / "features"), resolution=256,
        text_encoder=str(models["t5"]), vae=str(models["vae"]), models_cache=str(root / "models"),
        batch_size=16, seed=0))
    encode_s = time.perf_counter() - start

    rows = []
    for name in ("raw", "features"):
        urls = expand_shards([str(root / name / "*.tar")])
        for workers in args.workers:
            job = tiny_train_job(urls, root / "unused", models, batch_size=8, num_workers=workers, shuffle_buffer=64)
            rate = loader_rate(job, urls, batches=args.samples // 8)
            rows.append((f"loader {name}, {workers} worker(s)", f"{rate:8.1f} samples/s", f"{rate / workers:8.1f} per worker"))
        job = tiny_train_job(urls, root / f"run_{name}", models, max_steps=args.steps, batch_size=8, num_workers=1,
                             checkpoint_every=1000, log_every=1)
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
