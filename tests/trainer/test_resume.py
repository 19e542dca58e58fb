"""Resuming is exact: N steps, a restart, then M more equal N + M steps in one go, bit for bit on CPU,
on raw shards and on precomputed features, whose latents are drawn anew at every read."""
import json

import pytest
import torch

from pixcap.trainer.checkpoint import latest_checkpoint
from pixcap.trainer.encode import encode_shards
from pixcap.trainer.loop import train

from .shards_fixture import tiny_train_job, write_shards


def final_state(run_dir):
    return torch.load(latest_checkpoint(run_dir) / "state.pt", weights_only=True)


def assert_same(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "log.jsonl").read_text().splitlines()]


def assert_resume_is_exact(tmp_path, shards, models, max_steps, stop_at, **settings):
    train(tiny_train_job(shards, tmp_path / "once", models, max_steps=max_steps, **settings))
    assert final_state(tmp_path / "once")["step"] == max_steps
    assert_stopped_run_ends_the_same(tmp_path / "once", tmp_path / "twice", shards, models, stop_at, **settings)


def assert_stopped_run_ends_the_same(once_dir, twice_dir, shards, models, stop_at, **settings):
    """The job of the one run in once_dir, stopped at step stop_at in twice_dir and started again there,
    ends with the same checkpoint and losses."""
    max_steps = final_state(once_dir)["step"]
    train(tiny_train_job(shards, twice_dir, models, max_steps=stop_at, **settings))
    train(tiny_train_job(shards, twice_dir, models, max_steps=max_steps, **settings))
    assert_same_run(once_dir, twice_dir)


def assert_same_run(once_dir, twice_dir):
    """Two runs' last checkpoints (step, model, EMA, optimiser, schedule) and logged losses are equal."""
    once, twice = final_state(once_dir), final_state(twice_dir)
    assert once["step"] == twice["step"]
    for part in ("model", "ema", "optimizer", "scheduler"):
        assert_same(once[part], twice[part], part)
    assert losses(once_dir) == losses(twice_dir)


@pytest.mark.slow
def test_resume_equals_one_run(tmp_path, tiny_trainer_models):
    shards = write_shards(tmp_path / "shards", n_shards=3, per_shard=6)
    # Workers and dropout on: the data order and every random draw must survive the restart.
    # Stop at 4, inside the second data segment, then go on to 7.
    assert_resume_is_exact(tmp_path, shards, tiny_trainer_models, max_steps=7, stop_at=4,
                           checkpoint_every=3, num_workers=2, caption_dropout=0.5)


@pytest.mark.slow
def test_resume_on_stored_posteriors_equals_one_run(tmp_path, tiny_trainer_models):
    raw = write_shards(tmp_path / "raw", n_shards=2, per_shard=4)
    encode_shards(raw, str(tmp_path / "features"), text_encoder=str(tiny_trainer_models["t5"]),
                  vae=str(tiny_trainer_models["vae"]), models_cache=str(tmp_path / "cache"), batch_size=4)
    shards = sorted(str(p) for p in (tmp_path / "features").glob("*.tar"))
    assert_resume_is_exact(tmp_path, shards, tiny_trainer_models, max_steps=5, stop_at=3, checkpoint_every=2)
