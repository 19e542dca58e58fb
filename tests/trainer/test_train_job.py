"""The train job: named keys, defaults (the official recipe's), one-line errors naming the dotted key,
and the shipped jobs, which follow PixArt-alpha's schedule."""
import argparse
import math
from pathlib import Path

import pytest

from pixcap.schemas import JobError, load_train_job, read_job_yaml
from pixcap.trainer.cli import register

JOBS = Path(__file__).resolve().parents[2] / "jobs"
# The paper's stages: 1, pixel dependency, is the converted DiT-XL/2 (no train job); 2, text-image alignment;
# 3, high resolution and aesthetics, at 256, 512 and 1024 px.
STAGES = ["stage2_alignment_256", "stage3_aesthetic_256", "stage3_aesthetic_512", "stage3_aesthetic_1024"]


def test_defaults_and_named_keys():
    job = load_train_job({"max_steps": 5, "batch_size": 4, "resolution": 512, "lr": 1e-4, "load_from": "x",
                          "filters": {"min_clip_score": 0.3, "min_n_nouns": 2, "max_aspect_ratio": 3, "min_side": 256}})
    assert (job.max_steps, job.batch_size, job.resolution, job.lr, job.load_from) == (5, 4, 512, 1e-4, "x")
    assert job.filters.max_aspect_ratio == 3.0 and job.resolutions == [512]
    default = load_train_job({})
    assert (default.lr, default.weight_decay, default.eps, default.caption_dropout) == (2e-5, 3e-2, 1e-10, 0.1)
    # PixArt's own choices: auto_lr sqrt, multi_scale=False, load_ema=False, captions cleaned before T5.
    assert (default.lr_scaling, default.buckets, default.load_ema, default.clean_captions) == ("sqrt", "square", False, True)


def official_auto_scale_lr(effective_bs, lr, rule="linear", base_batch_size=256):
    """PixArt-alpha diffusion/utils/optimizer.py auto_scale_lr, on a plain lr instead of its config dict."""
    if rule == "sqrt":
        scale_ratio = math.sqrt(effective_bs / base_batch_size)
    elif rule == "linear":
        scale_ratio = effective_bs / base_batch_size
    return lr * scale_ratio


@pytest.mark.parametrize("rule", ["sqrt", "linear"])
@pytest.mark.parametrize("batch_size, world", [(176, 8), (176, 64), (2, 1), (256, 1)])
def test_lr_scaling_is_pixarts_auto_lr(rule, batch_size, world):
    job = load_train_job({"batch_size": batch_size, "lr_scaling": rule})
    # train.py: effective_bs = train_batch_size * world_size * gradient_accumulation_steps (1 here)
    assert math.isclose(job.lr * job.lr_scale(world), official_auto_scale_lr(batch_size * world, 2e-5, rule))
    assert load_train_job({"batch_size": batch_size, "lr_scaling": "none"}).lr_scale(world) == 1.0


def test_issue_figures():
    assert math.isclose(load_train_job({"batch_size": 176}).lr_scale(8), 2.345, rel_tol=1e-3)  # 8 GPUs
    assert math.isclose(load_train_job({"batch_size": 176}).lr_scale(64), 6.633, rel_tol=1e-3)  # 64 GPUs


@pytest.mark.parametrize("data, message", [
    ({"filters": {"min_clip": 0.2}}, "unknown key filters.min_clip"),
    ({"resolution": 300}, "resolution: must be one of 256, 512, 1024"),
    ({"buckets": "aspect", "bucket_tables": [512, 2048]}, r"bucket_tables\[1\]"),
    ({"bucket_tables": [512, 1024]}, "bucket_tables: square mode"),
    ({"buckets": "round"}, "buckets: must be one of square, aspect"),
    ({"lr_scaling": "cubic"}, "lr_scaling: must be one of sqrt, linear, none"),
    ({"batch_size": "8"}, "batch_size: expected int"),
    ({"model": "XXL"}, "model: must be one of"),
    ({"filters": {"max_aspect_ratio": 0.5}}, "filters.max_aspect_ratio"),
    ({"sample_prompts": ["a cat"]}, "unknown key sample_prompts"),  # image generation is "sampling"
])
def test_bad_values_name_their_key(data, message):
    with pytest.raises(JobError, match=message):
        load_train_job(data)


@pytest.mark.parametrize("name", ["tiny", *STAGES])
def test_shipped_jobs_are_valid(name):
    load_train_job(read_job_yaml(str(JOBS / f"train_{name}.yaml")))


def test_stage_jobs_follow_the_official_schedule():
    """256 square (PixArt_xl2_img256_SAM, then _internal: multi_scale=False), then 512 and 1024 multi-scale, each
    on its own table (img512_internalms, img1024_internalms), each from the previous stage, lr scaled by sqrt;
    the stage-3 jobs keep high-aesthetic samples only, and stage 2 starts from the converted DiT (stage 1)."""
    jobs = {name: load_train_job(read_job_yaml(str(JOBS / f"train_{name}.yaml"))) for name in STAGES}
    assert [(j.resolution, j.buckets, j.resolutions) for j in jobs.values()] == [
        (256, "square", [256]), (256, "square", [256]), (512, "aspect", [512]), (1024, "aspect", [1024])]
    assert [j.batch_size for j in jobs.values()] == [176, 176, 40, 12]  # the official per-GPU batches
    assert [j.max_steps for j in jobs.values()] == [150_000, 90_000, 100_000, 16_000]  # the paper's steps
    assert [j.filters.min_aesthetic_score for j in jobs.values()] == [None, 5.0, 5.0, 5.0]
    assert "convert-dit" in (JOBS / "train_stage2_alignment_256.yaml").read_text()
    assert all(j.lr_scaling == "sqrt" and j.lr == 2e-5 and j.grad_clip == 0.01 and not j.load_ema
               and j.clean_captions for j in jobs.values())
    names = list(jobs)
    for previous, current in zip(names, names[1:]):
        assert jobs[current].load_from == str(Path(jobs[previous].output) / "pipeline")
    assert sorted(p.stem for p in JOBS.glob("train_stage*.yaml")) == sorted(f"train_{n}" for n in STAGES)


def test_train_command_refuses_a_bad_override_with_a_job_error():
    """pixcap.cli turns the JobError into one line and exit code 2."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", str(JOBS / "train_tiny.yaml"), "--set", "filters.min_side=big"])
    with pytest.raises(JobError, match=r"^filters.min_side: expected int, got str 'big'$"):
        args.func(args)


def test_the_data_job_feeding_the_stages_scores_aesthetics():
    """Stage 3 keeps samples by LAION's aesthetic score, so the SAM-LLaVA job computes it, on the CLIP it was trained on."""
    from pixcap.schemas import load_job

    job = load_job(read_job_yaml(str(JOBS / "sam_llava_7b.yaml")))
    assert job.aesthetic.model.endswith("/sac+logos+ava1-l14-linearMSE.pth")
    assert (job.clip.model, job.clip.pretrained) == ("ViT-L-14", "openai")
