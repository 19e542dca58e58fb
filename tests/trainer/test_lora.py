"""LoRA (adapter: lora): only the adapter trains (the base is byte for byte the one loaded), a restart
continues bit for bit, and the exported adapter, put onto the pipeline with peft as PixArt's LoRA script
does, changes what the pipeline draws."""
import json

import numpy as np
import pytest
import torch
from diffusers import PixArtTransformer2DModel
from PIL import Image
from safetensors.torch import load_file

from pixcap.cli.main import main
from pixcap.trainer.checkpoint import latest_checkpoint
from pixcap.trainer.export import export_pipeline
from pixcap.trainer.lora import LORA_MARK, base_state
from pixcap.trainer.loop import train
from pixcap.trainer.model import build_transformer
from pixcap.trainer.sampling import load_pipeline, sample_images

from .shards_fixture import tiny_train_job, write_shards
from .test_resume import assert_stopped_run_ends_the_same

LORA = {"adapter": "lora", "lora": {"rank": 4, "alpha": 4.0}, "lr": 1e-2}


@pytest.fixture(scope="module")
def base(tiny_trainer_models, tmp_path_factory):
    """A tiny exported pipeline to adapt: a seeded transformer whose output is not all zero."""
    transformer = build_transformer("tiny", 256, caption_channels=32, seed=3)
    torch.nn.init.normal_(transformer.proj_out.weight, std=0.02)
    for block in transformer.transformer_blocks:
        torch.nn.init.normal_(block.attn2.to_out[0].weight, std=0.02)
    folder = tmp_path_factory.mktemp("base") / "pipeline"
    export_pipeline(transformer, str(tiny_trainer_models["t5"]), str(tiny_trainer_models["vae"]), folder,
                    train_job={"clean_captions": False})
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), n_shards=2, per_shard=4)


@pytest.fixture(scope="module")
def lora_run(base, shards, tiny_trainer_models, tmp_path_factory):
    run = tmp_path_factory.mktemp("lora") / "run"
    result = train(tiny_train_job(shards, run, tiny_trainer_models, load_from=str(base), max_steps=4,
                                  checkpoint_every=2, clean_captions=False, **LORA))
    return run, result


def test_only_the_adapter_trains(base, lora_run):
    run, result = lora_run
    loaded = PixArtTransformer2DModel.from_pretrained(base / "transformer").state_dict()
    after = base_state(result["model"])
    assert after.keys() == loaded.keys()
    assert all(torch.equal(after[k], loaded[k]) for k in loaded)  # the base, bit for bit
    # The exported pipeline is that base, byte for byte the file it was loaded from.
    weights = "transformer/diffusion_pytorch_model.safetensors"
    assert (run / "pipeline" / weights).read_bytes() == (base / weights).read_bytes()
    # Checkpoints hold the adapter alone, and it moved: peft starts every lora_B at zero.
    state = torch.load(latest_checkpoint(run) / "state.pt", weights_only=True)
    assert state["model"] and all(LORA_MARK in k for k in state["model"])
    moved = [k for k, v in state["model"].items() if "lora_B" in k and v.abs().max() > 0]
    assert len(moved) == len([k for k in state["model"] if "lora_B" in k])
    trained = {n for n, p in result["model"].named_parameters() if p.requires_grad}
    assert trained == set(state["model"])


@pytest.mark.slow
def test_resume_equals_one_run(base, shards, lora_run, tiny_trainer_models, tmp_path):
    once, _ = lora_run
    assert_stopped_run_ends_the_same(once, tmp_path / "twice", shards, tiny_trainer_models, stop_at=3,
                                     load_from=str(base), checkpoint_every=2, clean_captions=False, **LORA)


def test_export_loads_onto_a_pipeline_and_changes_it(base, lora_run, tmp_path, capsys):
    run, _ = lora_run
    assert json.loads((run / "lora" / "adapter_config.json").read_text())["r"] == 4
    # The exported adapter is the EMA's, as the last checkpoint holds it.
    ema = torch.load(latest_checkpoint(run) / "state.pt", weights_only=True)["ema"]
    saved = load_file(run / "lora" / "adapter_model.safetensors")
    named = {k.replace(".default.", "."): v for k, v in ema.items()}  # peft's file drops the adapter's name
    assert named.keys() == saved.keys()
    assert all(torch.equal(named[k], saved[k]) for k in saved)

    plain = sample_images(load_pipeline(base), ["a cat"], tmp_path / "plain", steps=2, clean_captions=False)
    sample = ["sample", "--prompt", "a cat", "--steps", "2"]
    assert main([*sample, str(run), "--output", str(tmp_path / "own")]) == 0  # a LoRA run: its own adapter
    assert main([*sample, str(base.parent), "--lora", str(run / "lora"), "--output", str(tmp_path / "given")]) == 0
    plain, own, given = (np.asarray(Image.open(next((tmp_path / d).glob("*.png")))).astype(int)
                         for d in ("plain", "own", "given"))
    np.testing.assert_array_equal(own, given)  # the same base and adapter, by either command
    assert np.abs(plain - given).max() > 0  # the adapter changes what the pipeline draws
    capsys.readouterr()
    assert main([*sample, str(run), "--lora", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--lora:" in err and "\n" not in err


@pytest.mark.parametrize("setting, message", [
    ("adapter=lorra", "adapter: must be one of none, lora, controlnet"),
    ("lora.rank=0", "lora.rank: must be positive"),
    ("lora.alpha=-1", "lora.alpha: must be positive"),
    ("lora.dropout=1.5", "lora.dropout: must be in"),
    ("lora.init=pissa", "lora.init: must be one of"),
    ("lora.targets=[]", "lora.targets: must list module names"),
    ("lora.rnk=4", "unknown key lora.rnk; did you mean lora.rank?"),
])
def test_bad_lora_keys_are_one_line_and_exit_2(setting, message, tmp_path, capsys):
    code = main(["train", "jobs/train_tiny_lora.yaml", "--shards", str(tmp_path), "--output", str(tmp_path / "r"),
                 "--set", setting])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err


def test_a_target_naming_no_layer_is_refused_before_training(base, shards, tiny_trainer_models, tmp_path, capsys):
    job = ["train", "jobs/train_tiny_lora.yaml", "--shards", *shards, "--output", str(tmp_path / "r"),
           "--set", f"load_from={base}", "--set", "lora.targets=[to_qq]",
           "--set", f"text_encoder={tiny_trainer_models['t5']}", "--set", f"vae={tiny_trainer_models['vae']}"]
    assert main(job) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after load_from's own note
    assert last.startswith("pixcap: error: lora.targets: 'to_qq' names no linear layer")
    assert not (tmp_path / "r" / "checkpoints").exists()
