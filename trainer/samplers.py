"""The schedulers images are sampled with: DPM-Solver, the exported pipeline's own, or SA-Solver, the
two PixArt-alpha's scripts/inference.py offers (it also has IDDPM's 100 steps, which no one samples with).

SA-Solver is diffusers' SASolverScheduler set as the official sampler runs it (diffusion/sa_sampler.py):
predictor and corrector of order 2, noise (tau = eta = 1) between t = 200 and t = 800 only, which is
diffusers' default tau_func, time-uniform steps; 25 of them by default, as inference.py's.
"""
from __future__ import annotations

import contextlib

DPM_SOLVER, SA_SOLVER = "dpm-solver", "sa-solver"  # the names of schemas.train_job.SAMPLERS
DEFAULT_STEPS = {DPM_SOLVER: 20, SA_SOLVER: 25}  # inference.py's sample_steps_dict

# The training schedule (linear betas 1e-4..0.02 over 1000 steps, epsilon prediction).
SA_SOLVER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", prediction_type="epsilon",
    predictor_order=2, corrector_order=2, algorithm_type="data_prediction", lower_order_final=True,
    timestep_spacing="linspace", steps_offset=0,
)


def default_steps(scheduler: str) -> int:
    return DEFAULT_STEPS[scheduler]


@contextlib.contextmanager
def sampling_with(pipe, scheduler: str):
    """The pipeline, sampling with `scheduler` for the duration: dpm-solver keeps its own; sa-solver puts a
    fresh SASolverScheduler in its place (its state is per sampling) and puts the pipeline's own back after."""
    if scheduler == DPM_SOLVER:
        yield pipe
        return
    if scheduler != SA_SOLVER:
        raise ValueError(f"unknown sampling scheduler {scheduler!r}; known: {', '.join(DEFAULT_STEPS)}")
    from diffusers import SASolverScheduler

    own = pipe.scheduler
    pipe.scheduler = SASolverScheduler(**SA_SOLVER_CONFIG)
    try:
        yield pipe
    finally:
        pipe.scheduler = own
