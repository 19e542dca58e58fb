"""End-to-end pipeline throughput through Ray on this machine, with the tiny models (a benchmark).

Writes --images SA-1B-size photographs (bench_stages' generator, 1 in 8 a PNG) into SA-1B tars,
runs `run_job` on them from a fresh output, and prints inputs/s and the driver's peak RSS. The
tiny models make caption and CLIP cheap, so this measures the plumbing: read, decode, Ray's
hand-offs, fragments and commits.

    python -m bench.bench_pipeline [--images 96] [--shard-size 16]
"""
from __future__ import annotations

import argparse
import io
import os
import resource
import tarfile
import tempfile
import time
from pathlib import Path

from bench.bench_stages import sa1b_inputs
from pixcap.pipeline.run import run_job
from pixcap.schemas import load_job


def write_tars(folder: Path, datas: list, per_tar: int) -> None:
    for start in range(0, len(datas), per_tar):
        with tarfile.open(folder / f"sa_{start // per_tar:06d}.tar", "w") as tar:
            for k, data in enumerate(datas[start : start + per_tar], start=start + 1):
                info = tarfile.TarInfo(f"sa_{k}.jpg")  # PNGs keep the .jpg name: decode reads the bytes
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--shard-size", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        write_tars(root / "in", sa1b_inputs(args.images), per_tar=args.images // 2)
        job = load_job({
            "inputs": [str(root / "in" / "sa_*.tar")], "output": str(root / "out"), "shard_size": args.shard_size,
            "caption": {"model": "tiny:llava", "max_new_tokens": 24, "batch_size": 8}, "progress_seconds": 30,
            "clip": {"model": "tiny:clip", "pretrained": "tiny:clip"},
            "ray": {"cpus_per_task": 0.5, "cpus_per_actor": 0.5},
        })
        start = time.perf_counter()
        manifest = run_job(job)
        seconds = time.perf_counter() - start
    totals = manifest["totals"]
    print(f"pipeline: {totals['inputs']} inputs ({totals['written']} written, {totals['rejected']} rejected) "
          f"in {seconds:.1f} s = {totals['inputs'] / seconds:.2f} inputs/s on {os.cpu_count()} CPUs, "
          f"Ray start-up included; driver peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
