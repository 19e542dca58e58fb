"""Sampling offers SA-Solver beside DPM-Solver, as PixArt-alpha's inference.py does (in `pixcap sample`
and in the sampling during training), and hands T5 prompts cleaned as training cleaned its captions."""
import argparse

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, SASolverScheduler
from PIL import Image

from pixcap.schemas import load_train_job
from pixcap.trainer.cli import add_sample_args, sample_command
from pixcap.trainer.export import export_pipeline
from pixcap.trainer.model import build_transformer
from pixcap.trainer.samplers import sampling_with
from pixcap.trainer.sampling import sample_images


@pytest.fixture(scope="module")
def run_dir(tiny_trainer_models, tmp_path_factory):
    ema = build_transformer("tiny", 64, caption_channels=32, seed=0)
    torch.nn.init.normal_(ema.proj_out.weight, std=0.02)
    run = tmp_path_factory.mktemp("run")
    export_pipeline(ema, str(tiny_trainer_models["t5"]), str(tiny_trainer_models["vae"]), run / "pipeline",
                    train_job={"clean_captions": True})
    return run


def test_sa_solver_is_set_as_the_official_sampler_runs_it(run_dir):
    """diffusion/sa_sampler.py: predictor and corrector order 2, tau = eta (1) for t/1000 in [0.2, 0.8], else 0."""
    pipe = PixArtAlphaPipeline.from_pretrained(run_dir / "pipeline")
    with sampling_with(pipe, "sa-solver"):
        scheduler = pipe.scheduler
        assert isinstance(scheduler, SASolverScheduler)
        config = scheduler.config
        assert (config.predictor_order, config.corrector_order, config.prediction_type) == (2, 2, "epsilon")
        assert (config.beta_start, config.beta_end, config.beta_schedule, config.num_train_timesteps) == (
            1e-4, 0.02, "linear", 1000)
        official_tau = lambda t: 1 if 0.2 <= t <= 0.8 else 0  # noqa: E731  (t in [0, 1], eta = 1)
        assert all(scheduler.tau_func(t) == official_tau(t / 1000) for t in range(1000))
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)  # the pipeline's own is back


def test_sa_solver_samples_seeded_images_unlike_dpm_solvers(run_dir, tmp_path):
    pipe = PixArtAlphaPipeline.from_pretrained(run_dir / "pipeline")
    sa = sample_images(pipe, ["a red cat"], tmp_path / "sa", steps=3, seed=0, scheduler="sa-solver")
    again = sample_images(pipe, ["a red cat"], tmp_path / "again", steps=3, seed=0, scheduler="sa-solver")
    dpm = sample_images(pipe, ["a red cat"], tmp_path / "dpm", steps=3, seed=0)
    image = np.asarray(Image.open(sa[0]))
    assert image.shape == (64, 64, 3)
    np.testing.assert_array_equal(image, np.asarray(Image.open(again[0])))
    assert not np.array_equal(image, np.asarray(Image.open(dpm[0])))


def test_sample_command_takes_the_scheduler_and_cleans_prompts_as_the_run_did(run_dir, tmp_path, monkeypatch):
    seen = []
    call = PixArtAlphaPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append((type(self.scheduler).__name__, kwargs["num_inference_steps"], args[0], kwargs["clean_caption"]))
        return call(self, *args, **{**kwargs, "num_inference_steps": 2})  # what was asked is recorded; 2 are enough

    monkeypatch.setattr(PixArtAlphaPipeline, "__call__", spy)
    parser = argparse.ArgumentParser()
    add_sample_args(parser)
    args = parser.parse_args([str(run_dir), "--prompt", "A <b>Cat</b> ", "--scheduler", "sa-solver",
                              "--output", str(tmp_path)])
    assert sample_command(args) == 0
    # 25 steps, inference.py's default for SA-Solver; the prompt cleaned here, as the run's captions were.
    assert seen == [("SASolverScheduler", 25, ["a cat"], False)]
    with pytest.raises(SystemExit):
        parser.parse_args([str(run_dir), "--prompt", "a cat", "--scheduler", "euler"])


def test_training_time_sampling_takes_the_scheduler_key():
    assert load_train_job({}).sampling_scheduler == "dpm-solver"
    assert load_train_job({"sampling_scheduler": "sa-solver"}).sampling_scheduler == "sa-solver"
    with pytest.raises(Exception, match="sampling_scheduler: must be one of dpm-solver, sa-solver"):
        load_train_job({"sampling_scheduler": "ddim"})
