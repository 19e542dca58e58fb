"""pixcap's GPU figures in one call: captioning, CLIP, the trainer's step and the CPU side.

    python -m bench.gpu_check --shape full --out DIR     # on a GPU machine (bench/gpu_check.sh sets it up)
    python -m bench.gpu_check --shape small --out DIR    # the same code at toy sizes, on a CPU, in seconds

Parts, in order, each time-boxed (BUDGETS); a part that fails or runs out of time records why, and the
rest go on:
- device: the two ceilings, a bf16 matrix product's rate and a device-to-device copy's bandwidth;
- caption: the pipeline's CaptionStage (hf backend) on a LLaVA-1.5-7B-shaped model with random weights
  built in place on the GPU (gpu_check_caption.py);
- clip: ClipStage with ViT-L/14 at batch 256 (gpu_check_clip.py);
- train: the trainer's PixArt-XL-2 step at 256 px on precomputed-feature-shaped inputs (gpu_check_train.py);
- cpu: read, decode and model inputs on SA-1B-size JPEGs on every core (gpu_check_cpu.py).

The parts run in one worker process, so torch and CUDA start once; this process watches it, and kills
it when a part outlives its budget, then starts a fresh worker for the parts left. The worker appends
each finished measurement to DIR/progress.jsonl as it goes, so a killed part keeps what it measured.
DIR gets results.json (everything), table.txt (the table printed last) and worker.log.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

PARTS = ("device", "caption", "clip", "train", "cpu")
# Seconds each part may take at --shape full. Together with the worker's start they stay under 8
# minutes: the lent GPU gives 15 minutes in all, a start takes minutes, and a rerun must still fit.
BUDGETS = {"device": 30, "caption": 230, "clip": 35, "train": 110, "cpu": 40}
SMALL_BUDGET = 120  # per part at --shape small: room for a busy machine; an idle one needs a tenth
MEMORY_FLOOR_BYTES_PER_S = 4.3e12  # the H200's device-to-device copy here (KINDS.md): the decoding step's floor
ASSUMED_PEAK_FLOPS = 790e12  # bf16 matrix product measured on an H200 here, when the device part has no figure


@dataclass(frozen=True)
class Shape:
    """The sizes of one run: `full` is what the issue asks of an H200, `small` the same code at toy sizes."""
    name: str
    # captioning: LLaVA-1.5's vision tower and Llama, the forced caption length, the batches
    vision: dict
    text: dict
    image_size: int
    vocabulary: int  # LLaVA-1.5's 32064, or 0: the tiny test tokenizer's own words
    caption_tokens: int
    eager_batch: int
    static_batches: tuple
    # CLIP: an open_clip name ("" = the tiny test config), its batch and how many batches per call
    clip_model: str
    clip_batch: int
    clip_batches: int
    # trainer: transformer size, resolution, T5 channels and tokens, per-GPU batch, timed steps
    train_size: str
    train_resolution: int
    train_caption_channels: int
    train_tokens: int
    train_batch: int
    train_steps: int
    # CPU side: JPEGs made, seconds each worker decodes, workers (0 = every core)
    cpu_images: int
    cpu_seconds: float
    cpu_workers: int
    budgets: dict = field(default_factory=dict)


SHAPES = {
    "full": Shape(
        name="full",
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
        text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=32),
        image_size=336, vocabulary=32064, caption_tokens=120, eager_batch=64,
        # 256 right after eager: the batch most likely to reach the goal is measured before time can run out
        static_batches=(256, 64, 128),
        clip_model="ViT-L-14", clip_batch=256, clip_batches=4,
        train_size="XL-2", train_resolution=256, train_caption_channels=4096, train_tokens=120,
        train_batch=176, train_steps=10,  # PixArt-alpha's per-GPU batch at 256 px
        cpu_images=16, cpu_seconds=8.0, cpu_workers=0,
        budgets=BUDGETS),
    "small": Shape(
        name="small",
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=2),
        image_size=28, vocabulary=0, caption_tokens=4, eager_batch=2, static_batches=(2,),
        clip_model="", clip_batch=2, clip_batches=2,
        train_size="tiny", train_resolution=64, train_caption_channels=32, train_tokens=8,
        train_batch=2, train_steps=2,
        cpu_images=1, cpu_seconds=0.2, cpu_workers=1,
        budgets={part: SMALL_BUDGET for part in PARTS}),
}


class Clock:
    """A part's deadline: what is left of its budget."""

    def __init__(self, budget: float):
        self.deadline = time.monotonic() + budget

    def left(self) -> float:
        return self.deadline - time.monotonic()


class Progress:
    """DIR/progress.jsonl: one JSON line per event, flushed at once so a killed worker loses nothing written."""

    def __init__(self, out: Path):
        self.path = out / "progress.jsonl"

    def write(self, **event) -> None:
        event.setdefault("at", time.time())
        with open(self.path, "a") as f:
            f.write(json.dumps(event, default=str) + "\n")

    def read(self) -> list:
        if not self.path.is_file():
            return []
        lines = self.path.read_text().split("\n")[:-1]  # the text after the last newline may be a line half-written
        return [json.loads(line) for line in lines if line.strip()]


def part_runner(name: str):
    if name == "device":
        from bench.gpu_check_device import run
    elif name == "caption":
        from bench.gpu_check_caption import run
    elif name == "clip":
        from bench.gpu_check_clip import run
    elif name == "train":
        from bench.gpu_check_train import run
    else:
        from bench.gpu_check_cpu import run
    return run


def worker(shape: Shape, parts: list, out: Path) -> int:
    """Run parts in order in this process; each appends its measurements to the progress file."""
    import gc

    import torch

    progress = Progress(out)
    for name in parts:
        progress.write(part=name, event="start")
        context = {"ceilings": next((e["result"] for e in progress.read()
                                     if e.get("part") == "device" and e["event"] == "done"), {})}
        try:
            result = part_runner(name)(shape, Clock(shape.budgets[name]),
                                       lambda variant, found, part=name: progress.write(
                                           part=part, event="variant", variant=variant, result=found),
                                       context)
            progress.write(part=name, event="done", result=result)
        except Exception as e:  # a failing part is recorded, and the next one runs
            progress.write(part=name, event="error", error=f"{type(e).__name__}: {e}"[:2000],
                           trace=traceback.format_exc()[-4000:])
            if "CUDA" in str(e) and "out of memory" not in str(e):
                return 3  # a CUDA error can poison the context: a fresh worker runs the rest
        torch._dynamo.reset()  # compiled code and its CUDA graphs hold the last part's model and memory
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return 0


def watch(shape: Shape, parts: list, out: Path, limit: float = None, grace: float = 2.0) -> dict:
    """Run the parts in worker processes, killing one whose part outlives its budget by `grace` seconds, and
    every one once `limit` seconds have passed (so that this process still writes the results); {part: record}."""
    progress = Progress(out)
    records, remaining = {}, list(parts)
    log = open(out / "worker.log", "a")
    end = time.monotonic() + (limit if limit is not None else sum(shape.budgets[p] + 10 for p in parts))
    while remaining and time.monotonic() < end:
        command = [sys.executable, "-m", "bench.gpu_check", "--shape", shape.name, "--out", str(out),
                   "--worker", ",".join(remaining)]
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                 cwd=Path(__file__).resolve().parent.parent)
        seen = len(progress.read())
        started = time.monotonic()
        current, killed = None, None
        while child.poll() is None:
            time.sleep(0.25)
            events = progress.read()[seen:]
            starts = [e for e in events if e["event"] == "start"]
            if starts and (current is None or starts[-1]["part"] != current):
                current, started = starts[-1]["part"], time.monotonic()
            # The first part's budget counts from the worker's start: its imports are part of it.
            name = current or remaining[0]
            if time.monotonic() - started > shape.budgets[name] + grace or time.monotonic() > end:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                killed = name
        events = progress.read()[seen:]
        for e in events:
            record = records.setdefault(e["part"], {"status": "running", "variants": {}})
            record.setdefault("began", e["at"])
            record["seconds"] = e["at"] - record["began"]  # to its last event: the part's time, less any kill
            if e["event"] == "variant":
                record["variants"][e["variant"]] = e["result"]
            elif e["event"] == "done":
                record.update(status="ok", result=e["result"])
            elif e["event"] == "error":
                record.update(status="error", error=e["error"], trace=e.get("trace", ""))
        finished = {e["part"] for e in events if e["event"] in ("done", "error")}
        unfinished = [p for p in remaining if p not in finished]
        begun = [e["part"] for e in events if e["event"] == "start"]
        # The part a killed or crashed worker was in; none when it stopped after a part's error (a CUDA
        # error ends a worker), unless it died before its first part.
        stuck = killed or next((p for p in begun if p not in finished), None) or (unfinished[0] if not begun else None)
        if stuck and unfinished:
            record = records.setdefault(stuck, {"variants": {}})
            if killed:
                record.update(status="timed_out", error=f"killed at its budget of {shape.budgets[stuck]} s"
                              if time.monotonic() < end else "killed at the check's time limit")
            else:
                record.update(status="crashed", error=f"the worker exited with {child.returncode}: "
                              + " | ".join(tail(out / "worker.log", 4)))
            unfinished.remove(stuck)
        remaining = unfinished
    for name in remaining:
        records[name] = {"status": "skipped", "error": "not begun: the check's time limit came first", "variants": {}}
    log.close()
    return records


def tail(path: Path, lines: int) -> list:
    text = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return [line[-300:] for line in text[-lines:]]


def run_check(shape: Shape, parts: list, out: Path, limit: float = None) -> dict:
    """Every part, the table printed last; returns the results written to out/results.json."""
    from bench.gpu_check_table import summary, table

    out.mkdir(parents=True, exist_ok=True)
    for name in ("progress.jsonl", "worker.log"):
        (out / name).unlink(missing_ok=True)
    start = time.time()
    records = watch(shape, parts, out, limit)
    results = {"shape": asdict(shape), "parts": records, "seconds": time.time() - start,
               "environment": environment(records)}
    results["summary"] = summary(results)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    text = table(results)
    (out / "table.txt").write_text(text + "\n")
    print(text, flush=True)
    return results


def environment(records: dict) -> dict:
    """The machine and the packages, read without importing them (this process stays light)."""
    import importlib.util
    import platform
    from importlib import metadata

    found = {"python": platform.python_version(), "cores": os.cpu_count()}
    for name in ("torch", "transformers", "diffusers", "open_clip_torch", "simplejpeg", "accelerate"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # a missing package is a fact of the machine, not a failure here
            found[name] = "missing"
    device = (records.get("device") or {}).get("result") or {}
    found["device"] = device.get("name", "cpu")
    spec = importlib.util.find_spec("pixcap")
    found["pixcap"] = os.path.dirname(spec.origin) if spec and spec.origin else "?"  # the tree gpu_check.sh linked
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=SHAPES, default="full")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json, table.txt, logs")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--limit", type=float, help="seconds for the whole check (default: the parts' budgets)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # the parts a worker process runs
    args = parser.parse_args()
    shape = SHAPES[args.shape]
    if args.worker:
        return worker(shape, args.worker.split(","), args.out)
    if args.shape == "full":
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: --shape full measures a GPU and none is visible; --shape small checks the code on a CPU",
                  file=sys.stderr)
            return 2
    run_check(shape, args.parts, args.out, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
