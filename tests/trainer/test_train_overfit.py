"""The loop learns: on four images, the diffusion loss falls well below where it starts."""
import json

import numpy as np
import pytest

from pixcap.trainer.loop import train

from .shards_fixture import tiny_train_job, write_shards


@pytest.mark.slow
def test_loss_goes_down_on_an_overfit_set(tmp_path, tiny_trainer_models):
    shards = write_shards(tmp_path / "shards", n_shards=1, per_shard=4, sizes=[(256, 256)])
    job = tiny_train_job(shards, tmp_path / "run", tiny_trainer_models, max_steps=60, batch_size=4, lr=1e-3,
                         warmup_steps=1, caption_dropout=0.0, checkpoint_every=1000)
    train(job)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    assert (tmp_path / "run" / "pipeline" / "model_index.json").exists()
