"""DDP on CPU: two gloo processes read disjoint samples and end with identical weights, at the
learning rate PixArt's auto_lr gives their global batch."""
import json
import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from .shards_fixture import tiny_train_job, write_shards


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rank(rank: int, world: int, port: int, shards, out_dir: str, models: dict) -> None:
    """One torchrun-like process: record the keys it trains on and its final weights."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from pixcap.trainer import loop

    keys = []
    step_batches = loop.step_batches

    def recording(*args):
        for step, batch in step_batches(*args):
            keys.extend(batch["key"])
            yield step, batch

    loop.step_batches = recording
    job = tiny_train_job(shards, f"{out_dir}/run", models, max_steps=4, checkpoint_every=2, lr_scaling="sqrt",
                         warmup_steps=3)
    result = loop.train(job)
    torch.save({"keys": keys, "model": result["model"].state_dict(), "ema": result["ema"].state_dict()},
               f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_disjoint_samples_identical_weights(tmp_path, tiny_trainer_models):
    shards = write_shards(tmp_path / "shards", n_shards=4, per_shard=6)
    models = {k: str(v) for k, v in tiny_trainer_models.items()}
    mp.spawn(run_rank, args=(2, free_port(), shards, str(tmp_path), models), nprocs=2, join=True)

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert len(ranks[0]["keys"]) == len(ranks[1]["keys"]) == 4 * 2  # 4 steps of batch 2 each
    assert not set(ranks[0]["keys"]) & set(ranks[1]["keys"])
    for part in ("model", "ema"):
        for name, tensor in ranks[0][part].items():
            assert torch.equal(tensor, ranks[1][part][name]), f"{part}.{name}"
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-0000004" / "state.pt", weights_only=True)
    assert all(torch.equal(v, ranks[0]["model"][k]) for k, v in state["model"].items())
    assert (tmp_path / "run" / "checkpoints" / "step-0000004" / "rng-rank1.pt").exists()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4  # rank 0 logs alone
    # The effective lr: 1e-4 x sqrt(global batch 2 x 2 / 256), PixArt's auto_lr, under the warm-up, which
    # advances 2 (ranks) of its 3 steps at every optimiser step, as accelerate steps PixArt's scheduler.
    scaled = 1e-4 * math.sqrt(2 * 2 / 256)
    for entry in log:
        assert math.isclose(entry["lr"], scaled * min(1.0, (entry["step"] + 1) * 2 / 3), rel_tol=1e-9)
