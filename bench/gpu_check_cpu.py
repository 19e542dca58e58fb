"""The CPU side of captioning on every core: read, decode and model inputs over SA-1B-size JPEGs.

Each worker process runs what one pipeline task runs on a part (pipeline/graph.py: ReadStage over a
tar, DecodeStage with the SAM job's decode settings, ModelInputsStage making LLaVA's 336 and CLIP's 224
crops), on one torch thread, all workers at once, for shape.cpu_seconds after a warm-up pass. The stored
bytes' blob write is left out: it is the output's disk, not the CPU. The photos are the bundled
photographs upscaled to 2250x1500 and 1500x2250 with grain, JPEG q90 (bench_stages.py's recipe).

The figure is images/s per core with every core busy; from it and the GPU's rates the summary gives the
cores each GPU needs so that captioning never waits for its crops.
"""
from __future__ import annotations

import io
import multiprocessing
import os
import queue
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAM_JOB = REPO / "jobs" / "sam_llava_7b.yaml"
LLAVA_SIDE = 336  # LLaVA-1.5's view; CLIP's comes from open_clip's config of the model


def sa1b_jpeg(index: int) -> bytes:
    """The index-th photo at SA-1B's size with grain, JPEG q90."""
    import numpy as np
    from PIL import Image

    from bench.bench_stages import GRAIN, SA1B_SIZES
    from pixcap.demo.sa1b import PHOTOGRAPHS, load_photograph

    rng = np.random.default_rng(index)
    photo = Image.fromarray(load_photograph(PHOTOGRAPHS[index % len(PHOTOGRAPHS)])).convert("RGB")
    large = np.asarray(photo.resize(SA1B_SIZES[index % 2], Image.Resampling.BICUBIC), dtype=np.float32)
    grainy = np.clip(large + GRAIN * rng.standard_normal(large.shape, np.float32), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grainy).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_tar(path: Path, datas: list) -> None:
    with tarfile.open(path, "w") as tar:
        for i, data in enumerate(datas):
            info = tarfile.TarInfo(f"sa_{i}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def llava_processor_folder(folder: Path) -> str:
    """A LLaVA-1.5 image processor config (336 shortest edge and crop): all model_inputs reads of the model."""
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(size={"shortest_edge": LLAVA_SIDE},
                       crop_size={"height": LLAVA_SIDE, "width": LLAVA_SIDE}).save_pretrained(folder)
    return str(folder)


class PartTask:
    """One pipeline task's CPU work on a part: read -> decode -> model inputs, timed per stage."""

    def __init__(self, tar: str, llava: str, clip_model: str):
        from pixcap.pipeline.inputs import list_sources
        from pixcap.pipeline.parts import make_parts, record_sources
        from pixcap.schemas import batch as B
        from pixcap.schemas.job import load_job, read_job_yaml
        from pixcap.schemas.stages import CaptionConfig, ClipConfig
        from pixcap.stages.decode import DecodeStage
        from pixcap.stages.model_inputs import ModelInputsStage
        from pixcap.stages.read import ReadStage

        job = load_job(read_job_yaml(str(SAM_JOB)))
        sources = list_sources([tar])
        parts = make_parts(sources, record_sources(sources, [], "out"), job.shard_size)
        self.parts = {column: [part[column] for part in parts] for column in parts[0]}
        self.read = ReadStage(job.shard_size, read_captions=False)
        self.decode = DecodeStage(job.decode)
        self.inputs = ModelInputsStage(CaptionConfig(model=llava), ClipConfig(model=clip_model, pretrained=""))
        self.B = B
        self.seconds = {"read": 0.0, "decode": 0.0, "model_inputs": 0.0}

    def __call__(self) -> int:
        """One pass over the part; the images that came out with both crops."""
        done, clock = 0, time.perf_counter()
        for rows in self.read(self.parts):
            now = time.perf_counter()
            self.seconds["read"] += now - clock
            decoded = self.decode(rows)
            clock = time.perf_counter()
            self.seconds["decode"] += clock - now
            out = self.inputs(decoded)
            now = time.perf_counter()
            self.seconds["model_inputs"] += now - clock
            rejected = [error for error in out[self.B.REJECT_ERROR] if error]
            if rejected:
                raise RuntimeError(f"{len(rejected)} rows rejected: {rejected[0]}")
            done += len(out[self.B.KEY])
            clock = time.perf_counter()
        return done


def cpu_worker(index: int, workers: int, shape, folder: str, clip_model: str, jpegs, ready, barrier, results) -> None:
    """Make this worker's share of the JPEGs, then (once the part's tar is written) time the part's task."""
    try:
        import torch

        torch.set_num_threads(1)  # one core per worker, as one Ray task per CPU runs
        for i in range(index, shape.cpu_images, workers):
            jpegs.put((i, sa1b_jpeg(i)))
        ready.wait()
        task = PartTask(str(Path(folder) / "sa_000000.tar"), str(Path(folder) / "llava"), clip_model)
        task()  # warm-up: imports, the processors' configs, first-touch allocations
        task.seconds = dict.fromkeys(task.seconds, 0.0)
        barrier.wait()
        images, start, cpu = 0, time.perf_counter(), time.process_time()
        while True:
            images += task()
            if time.perf_counter() - start >= shape.cpu_seconds:
                break
        results.put({"images": images, "wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
                     "stage_s": task.seconds})
    except Exception as e:  # reported to the part, which fails with it
        barrier.abort()
        results.put({"error": f"{type(e).__name__}: {e}"[:500]})


def run(shape, clock, note, context) -> dict:
    workers = shape.cpu_workers or os.cpu_count()
    spawn = multiprocessing.get_context("spawn")  # this process holds torch (and CUDA): no fork
    with tempfile.TemporaryDirectory() as folder:
        if shape.clip_model:
            clip_model = shape.clip_model
        else:
            from pixcap.models.tiny_captioning import build_tiny_clip

            clip_model = str(build_tiny_clip(Path(folder) / "clip")[0])
        llava_processor_folder(Path(folder) / "llava")
        jpegs, ready, barrier, results = spawn.Queue(), spawn.Event(), spawn.Barrier(workers), spawn.Queue()
        processes = [spawn.Process(target=cpu_worker, args=(i, workers, shape, folder, clip_model, jpegs, ready,
                                                            barrier, results), daemon=True) for i in range(workers)]
        for process in processes:
            process.start()
        started = time.perf_counter()
        try:
            made = dict(jpegs.get(timeout=max(clock.left(), 1)) for _ in range(shape.cpu_images))
            datas = [made[i] for i in range(shape.cpu_images)]
            write_tar(Path(folder) / "sa_000000.tar", datas)
            ready.set()
            found = [results.get(timeout=max(clock.left(), 1)) for _ in processes]
        except queue.Empty:
            raise TimeoutError(f"the {workers} CPU workers had not finished when the part's budget ran out "
                               f"({time.perf_counter() - started:.0f} s after they started)") from None
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():  # its result is in; a worker stuck on its way out is not waited for
                process.terminate()
    errors = [r["error"] for r in found if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} of {workers} CPU workers failed: {errors[0]}")
    images = sum(r["images"] for r in found)
    rate = sum(r["images"] / r["wall_s"] for r in found)
    stage_ms = {name: sum(r["stage_s"][name] for r in found) / images * 1e3 for name in found[0]["stage_s"]}
    return {"workers": workers, "jpegs": shape.cpu_images, "jpeg_kb": sum(map(len, datas)) / len(datas) / 1e3,
            "part_wall_s": time.perf_counter() - started, "images": images, "images_per_s": rate,
            "images_per_s_per_core": rate / workers, "cpu_s_per_image": sum(r["cpu_s"] for r in found) / images,
            "stage_ms_per_image": stage_ms}
