"""Time each stage over SA-1B-size photographs and print images/s and CPU ms per image.

    .venv/bin/python -m bench.bench_stages --images 32 [--device auto|cpu|cuda]

The inputs are the bundled photographs upscaled to SA-1B's size (2250x1500 and 1500x2250,
JPEG q90, with a little grain so they compress like camera photos), and every eighth is a PNG.
Stages run in pipeline order on batches shaped like the read stage's output; the model stages
use the tiny offline models, so their figures measure the plumbing, not a 7B model. A stage that
cannot be imported or built is reported as skipped, with the reason.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time

from pixcap.schemas.models import DEFAULT_MODELS_CACHE

PNG_EVERY = 8  # one input in eight is a PNG: the re-encode path
SA1B_SIZES = ((2250, 1500), (1500, 2250))
GRAIN = 4.0  # standard deviation of the added noise, in 8-bit levels
BATCH_SIZE = 8


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="images per stage (default 32)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="cpu hides the GPUs from torch; the model stages pick cuda when they see one")
    parser.add_argument("--models", default=DEFAULT_MODELS_CACHE, help="where the tiny models are built")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="rows per stage call")
    return parser.parse_args()


def sa1b_inputs(count: int) -> list:
    """`count` encoded photographs at SA-1B's size."""
    import numpy as np
    from PIL import Image

    from pixcap.demo.sa1b import PHOTOGRAPHS, load_photograph

    rng = np.random.default_rng(0)
    photos = [Image.fromarray(load_photograph(name)).convert("RGB") for name in PHOTOGRAPHS]
    datas = []
    for i in range(count):
        photo = photos[i % len(photos)]
        large = np.asarray(photo.resize(SA1B_SIZES[i % 2], Image.Resampling.BICUBIC), dtype=np.float32)
        grain = GRAIN * rng.standard_normal(large.shape, np.float32)
        grainy = Image.fromarray(np.clip(large + grain, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        if i % PNG_EVERY == PNG_EVERY - 1:
            grainy.save(buffer, "PNG", compress_level=1)
        else:
            grainy.save(buffer, "JPEG", quality=90)
        datas.append(buffer.getvalue())
    return datas


def read_batches(datas: list, batch_size: int) -> list:
    """Batches with the read stage's columns."""
    from pixcap.schemas import batch as B

    batches = []
    for start in range(0, len(datas), batch_size):
        chunk = datas[start:start + batch_size]
        n = len(chunk)
        batches.append({
            B.KEY: [f"bench/{start + i}" for i in range(n)], B.SHARD: ["bench-00000"] * n,
            B.INDEX: list(range(start, start + n)), B.SHARD_COUNT: [-1] * n,
            B.SOURCE: [f"bench.tar::{start + i}.jpg" for i in range(n)], B.DATA: chunk,
            B.SIDECAR_CAPTION: [""] * n, B.REJECT_STAGE: [""] * n, B.REJECT_REASON: [""] * n,
            B.REJECT_ERROR: [""] * n,
        })
    return batches


def stage_builders(models_root: str) -> list:
    """(name, build) pairs in pipeline order; build() returns the stage callable."""
    def decode():
        from pixcap.schemas.stages import DecodeConfig
        from pixcap.stages.decode import DecodeStage
        return DecodeStage(DecodeConfig())

    def tiny_models():
        from pixcap.models.tiny import build_tiny_models
        return build_tiny_models(os.path.expanduser(models_root))

    def caption():
        from pixcap.schemas.stages import CaptionConfig
        from pixcap.stages.caption import CaptionStage
        return CaptionStage(CaptionConfig(model=str(tiny_models()["llava"])))

    def nouns():
        from pixcap.schemas.stages import NounsConfig
        from pixcap.stages.nouns import NounsStage
        return NounsStage(NounsConfig())

    def clip():
        from pixcap.schemas.stages import ClipConfig
        from pixcap.stages.clip import ClipStage
        models = tiny_models()
        return ClipStage(ClipConfig(model=str(models["clip_config"]),
                                    pretrained=str(models["clip_checkpoint"])))

    return [("decode", decode), ("caption (tiny)", caption), ("nouns", nouns), ("clip (tiny)", clip)]


def is_png(data: bytes) -> bool:
    return data.startswith(b"\x89PNG")


def decode_by_format(datas: list, batch_size: int) -> list:
    """Table rows for decode over the JPEGs alone and the PNGs alone: the two paths differ ~5x."""
    from pixcap.schemas.stages import DecodeConfig
    from pixcap.stages.decode import DecodeStage

    stage = DecodeStage(DecodeConfig())
    rows = []
    for name, subset in (("  jpeg only", [d for d in datas if not is_png(d)]),
                         ("  png only", [d for d in datas if is_png(d)])):
        if subset:
            _, wall, cpu = time_stage(stage, read_batches(subset, batch_size))
            rows.append(table_row(name, len(subset), wall, cpu, 0.0, f"{len(subset)} images"))
    return rows


def table_row(name: str, images: int, wall: float, cpu: float, load: float, note: str) -> str:
    return f"{name:<16}{images / wall:>10.2f}{cpu * 1e3 / images:>14.1f}{wall:>9.2f}{load:>8.2f}  {note}"


def time_stage(stage, batches: list) -> tuple:
    """Run the stage over every batch: (output batches, wall seconds, CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    outputs = [stage(batch) for batch in batches]
    return outputs, time.perf_counter() - wall, time.process_time() - cpu


def print_machine() -> None:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()} {platform.processor() or ''}".rstrip()
          + f", {os.cpu_count()} CPUs ({usable} usable), torch {torch.__version__} "
          f"with {torch.get_num_threads()} threads, device {device}")


def main() -> int:
    args = parse_args()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported, so no stage sees a GPU
    print_machine()
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            print("--device cuda: torch sees no GPU", file=sys.stderr)
            return 2

    started = time.perf_counter()
    datas = sa1b_inputs(args.images)
    jpegs = [d for d in datas if not is_png(d)]
    print(f"inputs: {len(datas)} images of 2250x1500 and 1500x2250, {len(datas) - len(jpegs)} of them PNG; "
          f"JPEG mean {sum(map(len, jpegs)) / max(1, len(jpegs)) / 1e3:.0f} kB; "
          f"made in {time.perf_counter() - started:.1f} s")
    batches = read_batches(datas, args.batch_size)

    header = f"{'stage':<16}{'images/s':>10}{'CPU ms/image':>14}{'wall s':>9}{'load s':>8}  note"
    rows = [header, "-" * len(header)]
    for name, build in stage_builders(args.models):
        if batches is None:
            rows.append(f"{name:<16}{'':>41}  skipped: needs the previous stage's output")
            continue
        try:
            load = time.perf_counter()
            stage = build()
            load = time.perf_counter() - load
        except Exception as e:  # a stage still being written, a missing model: report, go on
            rows.append(f"{name:<16}{'':>41}  skipped: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            batches = None
            continue
        try:
            outputs, wall, cpu = time_stage(stage, batches)
        except Exception as e:
            rows.append(f"{name:<16}{'':>41}  failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            batches = None
            continue
        rejected = sum(bool(r) for out in outputs for r in out["reject_reason"])
        note = f"{rejected} rejected" if rejected else ""
        rows.append(table_row(name, len(datas), wall, cpu, load, note))
        if name == "decode":
            rows += decode_by_format(datas, args.batch_size)
        batches = outputs
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
