"""The CPU path side by side with img2dataset's resizer, per core, on the same SA-1B-size photos.

    .venv/bin/python -m bench.bench_decode [--images 12] [--repeats 3]

img2dataset is the real thing: the bench builds it once in a virtualenv of its own
(~/.cache/pixcap/bench/img2dataset-1.47.0, from the package registry), and runs its `Resizer`
there over the very files pixcap decodes here. Both sides run on one core (img2dataset's resizer
sets OpenCV to one thread itself; torch is set to one thread here) and are timed in CPU seconds
of their own process, best of --repeats passes. The photos are the bundled photographs upscaled
to SA-1B's 2250x1500 and 1500x2250, JPEG q90 with grain (bench_stages.py makes them).

Rows: pixcap decode as jobs/sam_llava_7b.yaml runs it (originals pass through; the cost is the
header, sha256 and the model image), pixcap decode at max_side 1024 (re-encodes), the reduced-size
decode alone (PIL's draft, the floor for any path that looks at the pixels, and simplejpeg's,
which decode uses), and img2dataset's resizer at keep_ratio 1024 q95 and with no resize.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMG2DATASET = "img2dataset==1.47.0"
IMG2DATASET_VENV = Path("~/.cache/pixcap/bench/img2dataset-1.47.0").expanduser()
REPO = Path(__file__).resolve().parent.parent
GOAL_VS_IMG2DATASET = 2.5  # the SAM job's decode, images/s/core, over img2dataset's keep_ratio 1024
GOAL_VS_FLOOR = 1.3  # its CPU time over the reduced-size decode alone

# Run by img2dataset's own python: its Resizer over the files, best-of-N CPU seconds per image.
IMG2DATASET_TIMER = r"""
import io, json, sys, time
from img2dataset.resizer import Resizer
files, repeats = json.loads(sys.argv[1]), int(sys.argv[2])
datas = [open(f, "rb").read() for f in files]
modes = {"keep_ratio 1024 q95": dict(image_size=1024, resize_mode="keep_ratio", resize_only_if_bigger=False),
         "no resize (decode + encode q95)": dict(image_size=1024, resize_mode="no", resize_only_if_bigger=False)}
out = {}
for name, kwargs in modes.items():
    resizer = Resizer(encode_quality=95, encode_format="jpg", **kwargs)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for data in datas:
            error = resizer(io.BytesIO(data))[-1]
            assert error is None, error
        best = min(best, time.process_time() - start)
    out[name] = best / len(datas)
print(json.dumps(out))
"""


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12, help="SA-1B-size JPEGs (default 12)")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the images; the best counts")
    parser.add_argument("--img2dataset-venv", type=Path, default=IMG2DATASET_VENV)
    parser.add_argument("--skip-img2dataset", action="store_true", help="pixcap's rows only")
    return parser.parse_args()


def sa1b_jpegs(count: int) -> list:
    from bench.bench_stages import is_png, sa1b_inputs

    made = sa1b_inputs(count + count // 7 + 1)  # one input in eight is a PNG; keep the JPEGs
    return [data for data in made if not is_png(data)][:count]


def best_cpu_seconds_per_image(run_one, datas: list, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for data in datas:
            run_one(data)
        best = min(best, time.process_time() - start)
    return best / len(datas)


def pixcap_rows(datas: list, repeats: int) -> dict:
    """{row name: CPU seconds per image} for pixcap's paths and the reduced-size decoders."""
    import simplejpeg
    import torch
    from PIL import Image

    from pixcap.schemas import batch as B
    from pixcap.schemas.job import load_job, read_job_yaml
    from pixcap.schemas.stages import DecodeConfig
    from pixcap.stages.decode import DecodeStage

    torch.set_num_threads(1)  # decode's model-image resize: one core, like img2dataset's OpenCV
    sam = load_job(read_job_yaml(str(REPO / "jobs" / "sam_llava_7b.yaml"))).decode
    model_side = sam.model_side

    def stage_on_one(config):
        stage = DecodeStage(config)

        def run(data):
            out = stage({B.KEY: ["k"], B.SOURCE: ["s"], B.DATA: [data], B.REJECT_STAGE: [""],
                         B.REJECT_REASON: [""], B.REJECT_ERROR: [""]})
            assert out[B.REJECT_REASON] == [""], out[B.REJECT_ERROR]
        return run

    def reduced_size(width, height):
        scale = model_side / min(width, height)
        return math.ceil(width * scale), math.ceil(height * scale)

    def pil_draft(data):
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", reduced_size(*image.size))
        image.load()

    def simplejpeg_reduced(data):
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
        min_width, min_height = reduced_size(width, height)
        simplejpeg.decode_jpeg(data, min_width=min_width, min_height=min_height)

    rows = {
        f"pixcap decode, SAM job (max_side {sam.max_side}: pass-through)": stage_on_one(sam),
        "pixcap decode, max_side 1024 (re-encode)": stage_on_one(DecodeConfig(max_side=1024)),
        "reduced-size decode alone: PIL draft (floor)": pil_draft,
        "reduced-size decode alone: simplejpeg": simplejpeg_reduced,
    }
    return {name: best_cpu_seconds_per_image(run, datas, repeats) for name, run in rows.items()}


def img2dataset_python(venv: Path) -> Path:
    """img2dataset's virtualenv, built on first use; its python."""
    python = venv / "bin" / "python"
    if not (venv / ".installed").is_file():
        print(f"building img2dataset's virtualenv in {venv} (once; needs the package registry) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", IMG2DATASET], check=True,
                       capture_output=True, text=True)  # pip's chatter stays out of the table
        (venv / ".installed").write_text(IMG2DATASET)
    return python


def img2dataset_rows(datas: list, repeats: int, venv: Path) -> dict:
    python = img2dataset_python(venv)
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for i, data in enumerate(datas):
            path = Path(folder) / f"sa_{i}.jpg"
            path.write_bytes(data)
            files.append(str(path))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run([str(python), "-c", IMG2DATASET_TIMER, json.dumps(files), str(repeats)],
                                check=True, capture_output=True, text=True, env=env)
    return {f"img2dataset resizer, {mode}": seconds for mode, seconds in json.loads(result.stdout).items()}


def main() -> int:
    args = parse_args()
    datas = sa1b_jpegs(args.images)
    print(f"inputs: {len(datas)} JPEGs of 2250x1500 and 1500x2250, mean {sum(map(len, datas)) / len(datas) / 1e3:.0f} kB; "
          f"CPU time on one core, best of {args.repeats}")
    rows = pixcap_rows(datas, args.repeats)
    img2dataset = {}
    if not args.skip_img2dataset:
        try:
            img2dataset = img2dataset_rows(datas, args.repeats, args.img2dataset_venv)
        except (subprocess.CalledProcessError, OSError) as e:
            detail = getattr(e, "stderr", "") or str(e)
            print(f"img2dataset: skipped, could not be built or run: {detail.strip().splitlines()[-1][:200]}")
    rows.update(img2dataset)

    width = max(map(len, rows))
    print(f"{'':<{width}}  {'images/s/core':>13}  {'CPU ms/image':>12}")
    for name, seconds in rows.items():
        print(f"{name:<{width}}  {1 / seconds:>13.1f}  {seconds * 1e3:>12.2f}")

    sam = next(seconds for name, seconds in rows.items() if name.startswith("pixcap decode, SAM job"))
    floor = rows["reduced-size decode alone: PIL draft (floor)"]
    print(f"SAM job decode / PIL reduced-size decode alone, CPU time: {sam / floor:.2f}x (goal <= {GOAL_VS_FLOOR})")
    if img2dataset:
        resizer = img2dataset["img2dataset resizer, keep_ratio 1024 q95"]
        print(f"SAM job decode vs img2dataset's resizer (keep_ratio 1024 q95), images/s/core: "
              f"{resizer / sam:.2f}x (goal >= {GOAL_VS_IMG2DATASET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
