"""`pixcap eval` on a tiny trained pipeline: summary.json with every metric overall and per category,
FID and CLIP-FID; the same summary after a SIGKILL and a rerun; bad input is one line, exit code 2."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pixcap.evaluation.frechet import frechet_between
from pixcap.schemas import evaluation as e

from .conftest import eval_settings

METRICS = ("clip_score", "attribute_binding", "object", "counting", "colour", "position", "geneval", "spatial")


def test_summary_has_every_metric_per_category(finished_eval):
    out, summary = finished_eval
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["images"] == 2 * len(e.GENEVAL_CATEGORIES + e.COMPBENCH_CATEGORIES) == 20
    assert set(summary["metrics"]) == set(METRICS)
    m = summary["metrics"]
    assert m["clip_score"]["overall"]["count"] == 20
    assert set(m["attribute_binding"]["categories"]) == set(e.BINDING_CATEGORIES)
    assert set(m["object"]["categories"]) == set(e.GENEVAL_CATEGORIES)
    assert set(m["counting"]["categories"]) == {e.COUNTING}
    assert set(m["colour"]["categories"]) == {e.COLORS, e.COLOR_ATTR}
    assert set(m["position"]["categories"]) == {e.POSITION}
    assert set(m["spatial"]["categories"]) == {e.SPATIAL}
    for metric in METRICS:
        cats = m[metric]["categories"]
        assert m[metric]["overall"]["count"] == sum(c["count"] for c in cats.values())
        assert all(c["count"] == 2 for c in cats.values())
    accuracies = [m["geneval"]["categories"][c]["mean"] for c in e.GENEVAL_CATEGORIES]
    assert summary["geneval_overall"] == pytest.approx(sum(accuracies) / 6)


def test_summary_figures_are_the_per_image_scores(finished_eval):
    out, summary = finished_eval
    rows = [r for f in sorted((out / "scores").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert len(rows) == 20 and len({(r["prompt_id"], r["image_index"]) for r in rows}) == 20
    for metric in METRICS:
        values = [float(r[metric]) for r in rows if r[metric] is not None]
        assert summary["metrics"][metric]["overall"]["mean"] == pytest.approx(np.mean(values), rel=1e-6)
    for r in rows:
        image = Image.open(out / r["image"])
        assert image.size == (64, 64)
    # the two images of a prompt have different seeds, and a seed depends on nothing else
    seeds = {(r["prompt_id"], r["image_index"]): r["seed"] for r in rows}
    assert len(set(seeds.values())) == 20


def test_fid_and_clip_fid_against_the_shards(finished_eval):
    """Recomputed here from the stored features with the Fréchet distance (tested against scipy)."""
    out, summary = finished_eval
    fid = summary["fid"]
    assert fid["images"] == 20 and fid["reference_images"] == 8 and fid["reference_broken"] == 0
    generated = [np.load(f) for f in sorted((out / "features").glob("*.npz"))]
    reference = np.load(out / "reference.npz")
    assert fid["fid"] == pytest.approx(frechet_between(np.concatenate([g["inception"] for g in generated]),
                                                       reference["inception"]))
    assert fid["clip_fid"] == pytest.approx(frechet_between(np.concatenate([g["clip"] for g in generated]),
                                                            reference["clip"]))
    assert fid["fid"] > 0 and fid["clip_fid"] > 0 and math.isfinite(fid["fid"])


def test_fid_matches_torchmetrics_on_the_same_images(finished_eval, models_cache):
    """torchmetrics' FrechetInceptionDistance, fed the same 299 px images with the same Inception,
    gives the FID pixcap computes from its stored features."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    from pixcap.evaluation.inception import InceptionFeatures
    from pixcap.evaluation.scoring import fid_view
    from pixcap.models.resolve import resolve_model

    out, _ = finished_eval
    images = [fid_view(Image.open(p)) for p in sorted((out / "images").glob("*.png"))]
    extractor = InceptionFeatures(resolve_model("fid.inception", "tiny:inception", models_cache))
    metric = FrechetInceptionDistance(feature=extractor.model)
    mine = extractor.features(images)
    half = len(images) // 2
    as_tensor = lambda ims: torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in ims])
    metric.update(as_tensor(images[:half]), real=True)
    metric.update(as_tensor(images[half:]), real=False)
    assert float(metric.compute()) == pytest.approx(frechet_between(mine[half:], mine[:half]), rel=1e-3)


def pixcap(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "pixcap.cli.main", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_sigkill_mid_eval_then_rerun_gives_the_same_summary(tmp_path, trained_run, models_cache, eval_shards,
                                                            finished_eval):
    """An eval by the command, killed with SIGKILL after its first batch and run again, against the
    session's eval never stopped (the same settings through the Python API, in a folder of the same
    name): same scores, same summary."""
    def args(out):
        return ["eval", trained_run, "--prompts", "builtin", "--output", out, "--images-per-prompt", 2,
                "--reference", str(eval_shards[0]).replace("shard-00000", "shard-*"), *eval_settings(models_cache)]

    whole, resumed = finished_eval[0], tmp_path / "resumed" / "eval-a"
    first = pixcap(*args(resumed))
    scores = resumed / "scores"
    deadline = time.time() + 600
    while not (scores.is_dir() and any(scores.glob("batch-*.parquet"))):
        assert first.poll() is None, first.communicate()[1][-2000:]
        assert time.time() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = len(list(scores.glob("batch-*.parquet")))
    assert 1 <= done < 5 and not (resumed / "summary.json").exists()
    run = pixcap(*args(resumed))
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr[-2000:]
    assert f"{5 - done} of 5 batches to do" in stderr and "clip_score" in stdout
    assert json.loads((resumed / "summary.json").read_text()) == json.loads((whole / "summary.json").read_text())
    for k in range(5):
        name = f"batch-{k:06d}.parquet"
        assert pq.read_table(resumed / "scores" / name).equals(pq.read_table(whole / "scores" / name))


def test_bad_input_is_one_line_exit_2(tmp_path, trained_run, finished_eval, models_cache):
    from pixcap.cli.main import main

    cases = [
        (["eval", str(tmp_path), "--output", str(tmp_path / "x")], "not a diffusers pipeline folder"),
        (["eval", str(trained_run), "--prompts", "nope", "--output", str(tmp_path / "x")], "neither a built-in set"),
        (["eval", str(trained_run), "--output", str(tmp_path / "x"), "--set", "steps=0"], "steps: must be positive"),
        (["eval", str(trained_run), "--output", str(tmp_path / "x"), "--reference", str(tmp_path / "none*")],
         "no shards or images"),
        # an EVAL made with other settings is refused, not mixed
        (["eval", str(trained_run), "--output", str(finished_eval[0]), *eval_settings(models_cache),
          "--images-per-prompt", "3"], "made with other settings"),
    ]
    for argv, message in cases:
        done = subprocess.run([sys.executable, "-m", "pixcap.cli.main", *argv], capture_output=True, text=True)
        assert done.returncode == 2, (argv, done.stderr)
        lines = [l for l in done.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "x").exists()
