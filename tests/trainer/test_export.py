"""Export: a PixArtAlphaPipeline folder that diffusers loads and samples from; `pixcap sample` writes PNGs."""
import argparse
import json

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline
from PIL import Image

from pixcap.trainer.export import export_pipeline
from pixcap.trainer.model import build_transformer
from pixcap.trainer.cli import add_sample_args
from pixcap.trainer.sampling import sample_command, sample_images


@pytest.fixture(scope="module")
def run_dir(tiny_trainer_models, tmp_path_factory):
    """A training run folder whose loop exported RUN_DIR/pipeline."""
    transformer = build_transformer("tiny", 64, caption_channels=32, seed=0)
    torch.nn.init.normal_(transformer.proj_out.weight, std=0.02)  # a "trained" model says something
    run = tmp_path_factory.mktemp("run")
    export_pipeline(transformer, str(tiny_trainer_models["t5"]), str(tiny_trainer_models["vae"]), run / "pipeline")
    return run


def test_pipeline_loads(run_dir):
    index = json.loads((run_dir / "pipeline" / "model_index.json").read_text())
    assert {"transformer", "text_encoder", "tokenizer", "vae", "scheduler"} <= set(index)
    pipe = PixArtAlphaPipeline.from_pretrained(run_dir / "pipeline")
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
    sc = pipe.scheduler.config
    assert (sc.beta_schedule, sc.beta_start, sc.beta_end, sc.num_train_timesteps) == ("linear", 1e-4, 0.02, 1000)
    assert pipe.transformer.config.out_channels == 8 and pipe.vae_scale_factor == 8
    # The text components are the ones the trainer encoded captions with.
    ids = pipe.tokenizer(["a red cat"], max_length=120, padding="max_length", return_tensors="pt")
    assert ids.input_ids.shape == (1, 120)


def test_sample_images(run_dir, tmp_path):
    pipe = PixArtAlphaPipeline.from_pretrained(run_dir / "pipeline")
    paths = sample_images(pipe, ["a red cat", "a blue dog"], tmp_path / "a", steps=2, seed=0)
    again = sample_images(run_dir / "pipeline", ["a red cat", "a blue dog"], tmp_path / "b", steps=2, seed=0)
    other = sample_images(pipe, ["a red cat"], tmp_path / "c", steps=2, seed=1)
    assert [p.name for p in paths] == ["000_a_red_cat.png", "001_a_blue_dog.png"]
    images = [np.asarray(Image.open(p)) for p in paths]
    assert images[0].shape == (64, 64, 3)
    np.testing.assert_array_equal(images[0], np.asarray(Image.open(again[0])))  # seeded
    assert not np.array_equal(images[0], np.asarray(Image.open(other[0])))
    assert not np.array_equal(images[0], images[1])


def test_sample_command(run_dir, tmp_path):
    parser = argparse.ArgumentParser()
    add_sample_args(parser)
    args = parser.parse_args([str(run_dir), "--prompt", "a cat", "--prompt", "a dog", "--steps", "2",
                              "--out", str(tmp_path)])
    assert sample_command(args) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["000_a_cat.png", "001_a_dog.png"]
    missing = parser.parse_args([str(tmp_path), "--prompt", "a cat"])
    assert sample_command(missing) == 1
