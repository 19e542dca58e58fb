"""Export: a PixArtAlphaPipeline folder that diffusers loads and samples from, the raw weights beside the
EMA ones (and loaded by default, as PixArt's load_ema=False); `pixcap sample` writes PNGs."""
import argparse
import json

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline
from PIL import Image

from pixcap.trainer.cli import add_sample_args, sample_command
from pixcap.trainer.export import export_pipeline
from pixcap.trainer.model import build_transformer
from pixcap.trainer.sampling import sample_images


@pytest.fixture(scope="module")
def run_dir(tiny_trainer_models, tmp_path_factory):
    """A training run folder whose loop exported RUN_DIR/pipeline: EMA and raw weights that differ."""
    ema = build_transformer("tiny", 64, caption_channels=32, seed=0)
    torch.nn.init.normal_(ema.proj_out.weight, std=0.02)  # a "trained" model says something
    raw = build_transformer("tiny", 64, caption_channels=32, seed=1)
    torch.nn.init.normal_(raw.proj_out.weight, std=0.02)
    run = tmp_path_factory.mktemp("run")
    export_pipeline(ema, str(tiny_trainer_models["t5"]), str(tiny_trainer_models["vae"]), run / "pipeline",
                    raw_transformer=raw, train_job={"clean_captions": False})
    return run


def test_pipeline_loads(run_dir):
    index = json.loads((run_dir / "pipeline" / "model_index.json").read_text())
    assert {"transformer", "text_encoder", "tokenizer", "vae", "scheduler"} <= set(index)
    pipe = PixArtAlphaPipeline.from_pretrained(run_dir / "pipeline")  # the raw weights' folder is ignored
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
    sc = pipe.scheduler.config
    assert (sc.beta_schedule, sc.beta_start, sc.beta_end, sc.num_train_timesteps) == ("linear", 1e-4, 0.02, 1000)
    assert pipe.transformer.config.out_channels == 8 and pipe.vae_scale_factor == 8
    # The text components are the ones the trainer encoded captions with.
    ids = pipe.tokenizer(["a red cat"], max_length=120, padding="max_length", return_tensors="pt")
    assert ids.input_ids.shape == (1, 120)


def test_next_stage_starts_from_raw_weights_unless_asked_for_ema(run_dir):
    """PixArt's load_from takes the checkpoint's state_dict, not state_dict_ema (load_ema=False)."""
    pipe = PixArtAlphaPipeline.from_pretrained(run_dir / "pipeline")
    raw = build_transformer("tiny", 64, caption_channels=32, seed=1)
    torch.nn.init.normal_(raw.proj_out.weight, std=0.02)  # rebuilt, not read back
    loaded = build_transformer("tiny", 256, 32, load_from=str(run_dir / "pipeline"), seed=5)
    torch.testing.assert_close(loaded.state_dict(), raw.state_dict())
    ema = build_transformer("tiny", 256, 32, load_from=str(run_dir / "pipeline"), load_ema=True, seed=5)
    torch.testing.assert_close(ema.state_dict(), pipe.transformer.state_dict())
    assert not torch.equal(ema.proj_out.weight, loaded.proj_out.weight)


def test_checkpoint_folder_as_load_from(tmp_path):
    from pixcap.trainer.checkpoint import save_checkpoint

    model, ema = build_transformer("tiny", 64, 32, seed=2), build_transformer("tiny", 64, 32, seed=3)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    folder = save_checkpoint(tmp_path, 7, model, ema, optimizer, scheduler, torch.Generator(), job={}, rank=0)
    torch.testing.assert_close(build_transformer("tiny", 64, 32, load_from=str(folder)).state_dict(), model.state_dict())
    torch.testing.assert_close(build_transformer("tiny", 64, 32, load_from=str(folder), load_ema=True).state_dict(),
                               ema.state_dict())


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


def test_sample_command_treats_prompts_as_the_run_did(run_dir, tmp_path, monkeypatch):
    seen = []
    call = PixArtAlphaPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append((args[0], kwargs["clean_caption"]))
        return call(self, *args, **kwargs)

    monkeypatch.setattr(PixArtAlphaPipeline, "__call__", spy)
    parser = argparse.ArgumentParser()
    add_sample_args(parser)
    args = parser.parse_args([str(run_dir), "--prompt", "a cat", "--prompt", "a dog", "--steps", "2",
                              "--out", str(tmp_path)])
    assert sample_command(args) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["000_a_cat.png", "001_a_dog.png"]
    # The run trained with clean_captions: false: the prompts only lowercased and stripped, as its captions were.
    assert seen == [(["a cat", "a dog"], False)]
    missing = parser.parse_args([str(tmp_path), "--prompt", "a cat"])
    assert sample_command(missing) == 1
