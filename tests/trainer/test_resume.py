"""Resuming is exact: N steps, a restart, then M more equal N + M steps in one go, bit for bit on CPU."""
import json

import pytest
import torch

from pixcap.trainer.checkpoint import latest_checkpoint
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


@pytest.mark.slow
def test_resume_equals_one_run(tmp_path, tiny_trainer_models):
    shards = write_shards(tmp_path / "shards", n_shards=3, per_shard=6)
    # Workers and dropout on: the data order and every random draw must survive the restart.
    settings = dict(checkpoint_every=3, num_workers=2, caption_dropout=0.5)
    train(tiny_train_job(shards, tmp_path / "once", tiny_trainer_models, max_steps=7, **settings))
    # Stop at 4, inside the second data segment, then go on to 7.
    train(tiny_train_job(shards, tmp_path / "twice", tiny_trainer_models, max_steps=4, **settings))
    train(tiny_train_job(shards, tmp_path / "twice", tiny_trainer_models, max_steps=7, **settings))

    once, twice = final_state(tmp_path / "once"), final_state(tmp_path / "twice")
    assert once["step"] == twice["step"] == 7
    for part in ("model", "ema", "optimizer", "scheduler"):
        assert_same(once[part], twice[part], part)
    log = [json.loads(line)["loss"] for line in (tmp_path / "once" / "log.jsonl").read_text().splitlines()]
    log2 = [json.loads(line)["loss"] for line in (tmp_path / "twice" / "log.jsonl").read_text().splitlines()]
    assert log == log2
