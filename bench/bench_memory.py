"""Peak memory of `pixcap run` and `pixcap stats` (a benchmark; tests/pipeline/test_memory.py
asserts bounds on the same figures, measured the same way).

    python bench/bench_memory.py run [--images 20000] [--per-tar 1000] [--backend hf] [--verbose]
    python bench/bench_memory.py stats [--rows 1000000] [--files 20]

`run` writes SA-1B-style tars of small seeded JPEGs, runs `pixcap run` in a subprocess on a
Ray of its own and prints the peak RSS (VmHWM) of the driver and of the largest Ray worker,
their anonymous + object-store peaks ("data"), the most all workers held at once, Ray's service
processes, and when the first shard was committed (as a fraction of the run); --verbose adds
every process and a timeline with the fragments and shards on disk. `--cli SCRIPT` runs a
script in place of pixcap's CLI (a patched one, to compare). `stats` writes synthetic stats
parquet (tests/pipeline/synthetic_stats.py) and prints the peak RSS of `pixcap stats`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from pixcap.schemas.models import DEFAULT_MODELS_CACHE

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pipeline.test_memory import (  # noqa: E402
    MIB, SUMMARY, pipeline_job, run_measured, run_stats_measured, write_sa1b_tars,
)
from tests.pipeline.synthetic_stats import write_stats  # noqa: E402


def bench_run(args) -> None:
    from pixcap.models.tiny import build_tiny_models

    models = os.path.expanduser(args.models_cache)
    build_tiny_models(models)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        start = time.monotonic()
        images = write_sa1b_tars(root / "in", args.images // args.per_tar, args.per_tar)
        made = time.monotonic() - start
        job = pipeline_job(str(root / "in" / "sa_*.tar"), root / "out", models, args.backend)
        job["ray"] = {"cpus_per_task": args.cpus, "cpus_per_actor": args.cpus}
        cli = (args.cli,) if args.cli else ("-m", "pixcap.cli.main")
        rc, stdout, stderr, sampler, seconds = run_measured(job, root / "job.yaml", cli=cli)
    if rc != 0:
        sys.exit(f"pixcap run failed ({rc}):\n{stderr[-3000:]}")
    print(SUMMARY.search(stdout).group(0))
    summary = sampler.summary()
    print(f"inputs: {images} images written in {made:.1f} s; pixcap run ({args.backend}): {seconds:.1f} s, "
          f"{images / seconds:.0f} images/s, Ray start-up included")
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in summary.items()}, indent=2))
    if args.verbose:
        for pid, p in sorted(sampler.procs.items(), key=lambda kv: -kv[1]["hwm"]):
            print(f"{pid:>8} {p['kind']:<8} hwm {p['hwm'] / MIB:7.0f} MiB shmem {p['shmem'] / MIB:6.0f}  {p['title'][:90]}")
        print("timeline: seconds, driver VmRSS, VmHWM, RssAnon (MiB), workers' VmRSS (MiB), fragments, shards committed")
        step = max(1, len(sampler.timeline) // 60)
        for i, (t, rss, hwm, anon, workers, fragments, shards) in enumerate(sampler.timeline):
            if i % step == 0 or hwm != sampler.timeline[i - 1][2] or i == len(sampler.timeline) - 1:
                print(f"{t:7.1f} {rss / MIB:6.0f} {hwm / MIB:6.0f} {anon / MIB:6.0f} {workers / MIB:7.0f} {fragments:6d} {shards:4d}")
        print("\n".join(line for line in stderr.splitlines() if not line.startswith((" ", "\t")) and "INFO" not in line)[-3000:])


def bench_stats(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        expected = write_stats(Path(tmp), args.rows, args.files)
        made = time.monotonic() - start
        table, peak, seconds = run_stats_measured(Path(tmp))
    print(f"{args.rows} rows in {args.files} files written in {made:.1f} s; pixcap stats: {seconds:.2f} s, "
          f"peak RSS {peak / MIB:.0f} MiB")
    print(json.dumps(table, indent=2))
    same = all(table[k] == expected[k] if isinstance(expected[k], int) else abs(table[k] - expected[k]) < 1e-6
               for k in expected)
    print("matches the generator's own figures:", same)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    run = sub.add_parser("run")
    run.add_argument("--images", type=int, default=20000)
    run.add_argument("--per-tar", type=int, default=1000)
    run.add_argument("--backend", default="hf", choices=("hf", "sidecar"))
    run.add_argument("--models-cache", default=DEFAULT_MODELS_CACHE)
    run.add_argument("--cpus", type=float, default=0.5, help="ray.cpus_per_task and ray.cpus_per_actor")
    run.add_argument("--verbose", action="store_true")
    run.add_argument("--cli", help="a script to run in place of pixcap's CLI (a patched one, to compare)")
    run.add_argument("--keep", help="write inputs and output under this folder, and keep them")
    stats = sub.add_parser("stats")
    stats.add_argument("--rows", type=int, default=1_000_000)
    stats.add_argument("--files", type=int, default=20)
    args = parser.parse_args()
    (bench_run if args.what == "run" else bench_stats)(args)


if __name__ == "__main__":
    main()
