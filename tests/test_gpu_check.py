"""bench/gpu_check: the one-call GPU measurement, checked at --shape small on the CPU.

What runs here is the code a lent GPU runs, at toy sizes: every part's measurement in this process,
the watcher that kills a part past its budget and goes on with the next, and bench/gpu_check.sh
putting this tree on the path as `pixcap` without installing it. The GPU-only paths (bf16, SDPA's
CUDA kernels, inductor, CUDA graphs, peak memory) run only there; they have no test here.
"""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.gpu_check import SHAPES, Clock, watch
from bench.gpu_check_table import summary, table

REPO = Path(__file__).resolve().parent.parent
SMALL = SHAPES["small"]


def pixart_step_flops(shape) -> int:
    """A PixArt training step's forward and backward matrix-product FLOPs, from its layer sizes: each
    linear 2 x tokens x in x out forward, twice that backward (weight and input gradients) but for the
    three layers whose input needs no gradient (patch embedding, the timestep and caption projections'
    first linears); attention 4 x queries x keys x width forward, twice that backward."""
    from pixcap.schemas.models import TRANSFORMER_SIZES

    trunk = TRANSFORMER_SIZES[shape.train_size]
    layers, width = trunk["num_layers"], trunk["num_attention_heads"] * trunk["attention_head_dim"]
    patches = (shape.train_resolution // 8 // 2) ** 2
    tokens, channels = shape.train_tokens, shape.train_caption_channels

    def linear(rows, fan_in, fan_out):
        return 2 * rows * fan_in * fan_out

    patch = linear(patches, 4 * 2 * 2, width)  # 4 latent channels, 2x2 patches
    timestep = linear(1, 256, width) + linear(1, width, width) + linear(1, width, 6 * width)
    caption = linear(tokens, channels, width) + linear(tokens, width, width)
    block = (4 * linear(patches, width, width) + 4 * patches * patches * width  # self-attention
             + 2 * linear(patches, width, width) + 2 * linear(tokens, width, width)  # cross: q, out; k, v
             + 4 * patches * tokens * width
             + linear(patches, width, 4 * width) + linear(patches, 4 * width, width))  # MLP
    final = linear(patches, width, 2 * 2 * 8)  # epsilon and v per latent channel, per patch pixel
    forward = patch + timestep + caption + layers * block + final
    no_input_gradient = patch + linear(1, 256, width) + linear(tokens, channels, width)
    return shape.train_batch * (3 * forward - no_input_gradient)


def test_every_part_measures_at_the_small_shape_and_the_table_says_so(tmp_path):
    from bench.gpu_check import part_runner

    parts, notes, context = {}, [], {}
    for name in ("device", "caption", "clip", "train", "cpu"):
        result = part_runner(name)(SMALL, Clock(300), lambda variant, found, part=name: notes.append((part, variant)),
                                   context)
        parts[name] = {"status": "ok", "variants": {}, "result": result}
        if name == "device":
            context["ceilings"] = result
    assert parts["device"]["result"]["matmul_flops_per_s"] > 0 and parts["device"]["result"]["copy_bytes_per_s"] > 0

    captions = parts["caption"]["result"]["variants"]
    eager, static = captions[f"eager b{SMALL.eager_batch}"], captions[f"static b{SMALL.static_batches[0]}"]
    for found in (eager, static):
        assert found["images_per_s"] > 0 and found["floor_ms_per_step"] > 0
        # The step is the call less a separately timed prefill: on a loaded CPU that difference can be 0.
        tokens = SMALL.caption_tokens
        assert found["ms_per_step"] == max(found["seconds"] - found["prefill_s"], 0.0) / max(tokens - 1, 1) * 1e3
        assert found["first_caption_words"] > 0
    assert static["vs_eager"] == static["images_per_s"] / eager["images_per_s"]
    assert "pixel_values" in captions["generate_batch"].get("skipped", "pixel_values")

    train = parts["train"]["result"]
    assert train["flops_per_step"] == pixart_step_flops(SMALL)  # counted by torch, against the arithmetic
    for found in train["variants"].values():
        assert found["steps_per_s"] > 0
        assert found["mfu"] == train["flops_per_step"] * found["steps_per_s"] / parts["device"]["result"]["matmul_flops_per_s"]
    assert parts["clip"]["result"]["images_per_s"] > 0
    assert parts["cpu"]["result"]["images"] >= SMALL.cpu_images and parts["cpu"]["result"]["images_per_s_per_core"] > 0
    assert ("caption", "build") in notes and ("train", "compiled (eager)") in notes

    results = {"shape": dataclasses.asdict(SMALL), "parts": parts, "seconds": 1.0, "environment": {"device": "cpu"}}
    found = summary(results)
    best = max(captions.values(), key=lambda v: v.get("images_per_s", 0))
    assert found["caption_images_per_s"] == best["images_per_s"]
    assert found["cores_per_gpu_for_captioning"] == best["images_per_s"] / parts["cpu"]["result"]["images_per_s_per_core"]
    assert found["goals"]["XL-2 256 px MFU"]["met"] is False  # a CPU is far from 40% of its own matmul rate
    results["summary"] = found
    text = table(results)
    assert [line.split()[0] for line in text.splitlines()[3:]][:3] == ["caption"] * 3
    assert all(word in text for word in ("clip ", "train ", "cpu ", "goals:"))


def test_a_part_past_its_budget_is_killed_and_the_next_part_runs(tmp_path):
    # caption's budget ends while its worker is still importing torch (seconds, even on a fast idle machine);
    # a fresh worker then runs device. No grace: with one, a fast machine can finish the small part in time.
    shape = dataclasses.replace(SMALL, budgets={**SMALL.budgets, "caption": 0.25})
    records = watch(shape, ["caption", "device"], tmp_path, grace=0.0)
    assert records["caption"]["status"] == "timed_out" and "budget" in records["caption"]["error"]
    assert records["device"]["status"] == "ok" and records["device"]["result"]["matmul_flops_per_s"] > 0


def test_gpu_check_sh_runs_the_tree_as_pixcap_without_installing_it(tmp_path):
    # The wheels are left out (this machine's Python is not the GPU machine's); the script says so and
    # goes on with the packages it finds, pixcap taken from the links it makes to this tree.
    env = {**os.environ, "SHAPE": "small", "PARTS": "device", "PYTHON": sys.executable, "WHEELS": str(tmp_path / "none"),
           "PYTHONPATH": ""}
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no wheels" in done.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["parts"]["device"]["status"] == "ok"
    assert done.stdout.rstrip().endswith((tmp_path / "out" / "table.txt").read_text().rstrip())  # the table, last
    assert done.stdout.strip().splitlines()[-1].startswith("goals:")
    assert Path(results["environment"]["pixcap"]).parent.name.startswith("pixcap-gpu-check.")  # the links, not .venv's
