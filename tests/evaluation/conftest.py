"""Session fixtures for the eval tests: a tiny PixArt run trained for two steps on tiny shards, and
one finished eval of it that several tests read."""
import pytest

from tests.trainer.shards_fixture import tiny_train_job, write_shards

# The tiny scoring models, small images and few steps: an eval of 20 images in seconds.
TINY_EVAL = {
    "images_per_prompt": 2, "steps": 2, "batch_size": 4, "prompts_per_category": 1, "height": 64, "width": 64,
    "clip": {"model": "tiny:clip", "pretrained": "tiny:clip"}, "vqa": {"model": "tiny:vqa"},
    "detector": {"model": "tiny:detector"}, "fid": {"inception": "tiny:inception"},
}


def tiny_eval_job(models_cache, **overrides):
    from pixcap.schemas.eval_job import load_eval_job

    return load_eval_job({**TINY_EVAL, "models_cache": models_cache, **overrides})


def eval_settings(models_cache) -> list:
    """The same settings as --set arguments of `pixcap eval`."""
    flat = {"models_cache": models_cache, "steps": 2, "batch_size": 4, "prompts_per_category": 1, "height": 64,
            "width": 64, "clip.model": "tiny:clip", "clip.pretrained": "tiny:clip", "vqa.model": "tiny:vqa",
            "detector.model": "tiny:detector", "fid.inception": "tiny:inception"}
    return [x for key, value in flat.items() for x in ("--set", f"{key}={value}")]


@pytest.fixture(scope="session")
def eval_shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("eval-shards"), n_shards=2, per_shard=4)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, models_cache, eval_shards):
    """RUN_DIR of the tiny transformer trained two steps (pipeline/ exported by the loop)."""
    from pixcap.models.tiny import build_tiny_models
    from pixcap.trainer.loop import train

    models = build_tiny_models(models_cache)
    run = tmp_path_factory.mktemp("eval-run") / "run"
    train(tiny_train_job(eval_shards, run, models, max_steps=2, checkpoint_every=2, clean_captions=False))
    return run


@pytest.fixture(scope="session")
def finished_eval(tmp_path_factory, models_cache, trained_run, eval_shards):
    """(EVAL folder, summary) of the built-in set (one prompt a category) against the shards."""
    from pixcap.evaluation.run import run_eval

    out = tmp_path_factory.mktemp("evals") / "eval-a"
    summary = run_eval(str(trained_run), "builtin", str(out), tiny_eval_job(models_cache),
                       reference=str(eval_shards[0]).replace("shard-00000", "shard-*"), say=lambda line: None)
    return out, summary
