"""The warm-up as PixArt-alpha's train.py really runs it: diffusers' constant schedule with warm-up,
prepared by accelerate, which steps it once per process at every iteration (split_batches=False).
So on N GPUs `warmup_steps: 1000` is over after 1000 / N optimiser steps."""
import pytest
import torch

from pixcap.schemas import load_train_job


def official_lr_factors(warmup_steps: int, processes: int, iterations: int) -> list:
    """The lr factor each optimiser step of the official loop uses: diffusers' get_constant_schedule_with_warmup,
    advanced as accelerate's AcceleratedScheduler.step advances it (num_processes scheduler steps an iteration)."""
    from diffusers.optimization import get_constant_schedule_with_warmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_constant_schedule_with_warmup(optimizer, num_warmup_steps=warmup_steps)
    factors = []
    for _ in range(iterations):
        factors.append(optimizer.param_groups[0]["lr"])  # what this iteration's optimizer.step() uses
        optimizer.step()
        for _ in range(processes):  # AcceleratedScheduler.step, split_batches=False
            scheduler.step()
    return factors


def pixcap_lr_factors(job, world: int, iterations: int) -> list:
    """What the training loop's LambdaLR gives each optimiser step."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: job.warmup_factor(s, world))
    factors = []
    for _ in range(iterations):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return factors


@pytest.mark.parametrize("world", [1, 2, 8, 64])
def test_the_default_warmup_is_the_official_effective_one(world):
    """One optimiser step ahead of the official (whose first step has lr 0: pixcap's first step trains)."""
    job = load_train_job({"warmup_steps": 1000})
    assert job.warmup_mode == "official"
    iterations = 1000 // world + 5
    official = official_lr_factors(1000, world, iterations + 1)
    assert pixcap_lr_factors(job, world, iterations) == pytest.approx(official[1:], abs=1e-12)
    # Warm-up ends after 1000 / N optimiser steps: 125 on 8 GPUs, not 1000.
    assert official.index(1.0) == -(-1000 // world)


@pytest.mark.parametrize("world", [1, 8])
def test_the_literal_warmup_counts_optimiser_steps(world):
    job = load_train_job({"warmup_steps": 40, "warmup_mode": "literal"})
    official_on_one_process = official_lr_factors(40, 1, 51)
    assert pixcap_lr_factors(job, world, 50) == pytest.approx(official_on_one_process[1:], abs=1e-12)
