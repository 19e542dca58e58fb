"""pixcap encode: posteriors and T5 features beside every sample in new shards, reruns skip, the trainer
refuses features made with other settings, and training on them needs no VAE or T5."""
import argparse
import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import torch

from pixcap.schemas import JobError
from pixcap.schemas.records import LATENT_EXT, T5_EMBEDDING_EXT, T5_MASK_EXT
from pixcap.schemas.train_job import FilterConfig
from pixcap.trainer import latents, text
from pixcap.trainer.buckets import nearest_bucket
from pixcap.trainer.cli import add_encode_args, encode_command
from pixcap.trainer.data import PrepareSamples
from pixcap.trainer.encode import encode_shards
from pixcap.trainer.loop import train

from .shards_fixture import damage_shards, tiny_train_job, write_shards


def members(path) -> dict:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def encode_args(models, root, **overrides) -> dict:
    return {"text_encoder": str(models["t5"]), "vae": str(models["vae"]), "models_cache": str(root / "cache"),
            "batch_size": 3, **overrides}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, tiny_trainer_models):
    """Shards encoded for aspect buckets at 256, captions cleaned."""
    root = tmp_path_factory.mktemp("encode")
    shards = write_shards(root / "raw", n_shards=2, per_shard=4)
    before = {p: digest(p) for p in shards}
    kwargs = encode_args(tiny_trainer_models, root, resolution=256, buckets="aspect")
    assert encode_shards([str(root / "raw" / "*.tar")], str(root / "encoded"), **kwargs) == []
    return root, shards, before, kwargs


def test_posteriors_and_captions_are_written_beside_every_sample(encoded, tiny_trainer_models):
    root, shards, before, _ = encoded
    assert {p: digest(p) for p in shards} == before  # inputs untouched
    vae = latents.LatentEncoder(str(tiny_trainer_models["vae"]))
    t5 = text.TextEncoder(str(tiny_trainer_models["t5"]))  # cleans captions, as the job's default
    for shard in shards:
        raw, out = members(shard), members(root / "encoded" / shard.rsplit("/", 1)[-1])
        assert {k: v for k, v in out.items() if k in raw} == raw  # every original member, unchanged
        keys = {name.split(".", 1)[0] for name in raw}
        for key in keys:
            posterior = np.load(io.BytesIO(out[f"{key}.{LATENT_EXT}"]))
            record = json.loads(raw[f"{key}.json"])
            _, (bh, bw) = nearest_bucket(record["height"], record["width"], 256)
            assert posterior.dtype == np.float32 and posterior.shape == (8, bh // 8, bw // 8)  # mean, log-variance
            emb = np.load(io.BytesIO(out[f"{key}.{T5_EMBEDDING_EXT}"]))
            mask = np.load(io.BytesIO(out[f"{key}.{T5_MASK_EXT}"]))
            want, want_mask = t5.encode([raw[f"{key}.txt"].decode()])
            assert mask.shape == (120,) and emb.shape == (mask.sum(), 32) and emb.dtype == np.float16
            np.testing.assert_array_equal(mask, want_mask[0].numpy())
            np.testing.assert_allclose(emb, want[0, : mask.sum()].numpy(), rtol=1e-2, atol=1e-3)
        # The stored posterior is the VAE's: the first sample re-encoded from its image.
        first = sorted(keys)[0]
        sample = {"__key__": first, **{name.split(".", 1)[1]: data for name, data in raw.items() if name.startswith(first + ".")}}
        pixels = PrepareSamples("aspect", [256], FilterConfig()).prepare(sample)["pixels"]
        stored = torch.from_numpy(np.load(io.BytesIO(out[f"{first}.{LATENT_EXT}"])))
        torch.testing.assert_close(stored, vae.posterior(pixels[None])[0])
    null = np.load(root / "encoded" / "null_caption.npz")
    assert null["mask"].shape == (120,) and null["emb"].shape == (null["mask"].sum(), 32)
    assert (null["clean_captions"].item(), null["buckets"].item(), null["resolution"].item()) == (True, "aspect", 256)


def test_rerun_skips_finished_shards_and_refuses_other_settings(encoded, capsys):
    root, _, _, kwargs = encoded
    out = sorted((root / "encoded").glob("*.tar"))
    mtimes = [p.stat().st_mtime_ns for p in out]
    capsys.readouterr()
    assert encode_shards([str(root / "raw" / "*.tar")], str(root / "encoded"), **kwargs) == []
    assert "2 of 2 shards already encoded" in capsys.readouterr().err  # a message: stderr, through logging
    assert [p.stat().st_mtime_ns for p in out] == mtimes
    with pytest.raises(JobError, match="buckets: output .* was encoded with buckets='aspect'"):
        encode_shards([str(root / "raw" / "*.tar")], str(root / "encoded"), **{**kwargs, "buckets": "square"})


@pytest.mark.parametrize("setting, message", [
    ({"clean_captions": False}, "clean_captions: .* was encoded with clean_captions=True"),
    ({"buckets": "square"}, "buckets: .* was encoded with buckets='aspect'"),
    ({"buckets": "aspect", "resolution": 512}, "resolution: .* was encoded at 256"),
])
def test_training_refuses_features_encoded_otherwise(encoded, tiny_trainer_models, tmp_path, setting, message):
    root, _, _, _ = encoded
    job = tiny_train_job([str(root / "encoded" / "*.tar")], tmp_path / "run", tiny_trainer_models, max_steps=1,
                         **{"buckets": "aspect", **setting})
    with pytest.raises(JobError, match=message):
        train(job)


@pytest.mark.slow
def test_training_on_features_loads_neither_vae_nor_t5(encoded, tiny_trainer_models, monkeypatch, tmp_path):
    root, _, _, _ = encoded

    def refuse(*args, **kwargs):
        raise AssertionError("the trainer loaded an encoder although the shards hold features")

    monkeypatch.setattr(latents, "LatentEncoder", refuse)
    monkeypatch.setattr(text, "TextEncoder", refuse)
    job = tiny_train_job([str(root / "encoded" / "*.tar")], tmp_path / "run", tiny_trainer_models,
                         max_steps=3, caption_dropout=0.5, buckets="aspect")
    assert train(job)["step"] == 3
    assert (tmp_path / "run" / "pipeline" / "model_index.json").exists()


def test_damaged_shards_are_reported_and_the_rest_encoded(tmp_path, tiny_trainer_models, capsys):
    good = write_shards(tmp_path / "good", n_shards=2, per_shard=4)
    damaged = damage_shards(good, tmp_path / "bad")
    out = tmp_path / "encoded"
    parser = argparse.ArgumentParser()
    add_encode_args(parser)
    args = parser.parse_args([good[0], damaged["corrupt"], damaged["truncated"], "--output", str(out),
                              "--text-encoder", str(tiny_trainer_models["t5"]), "--vae", str(tiny_trainer_models["vae"]),
                              "--models-cache", str(tmp_path / "cache"), "--batch-size", "4"])
    assert (args.resolution, args.buckets, args.clean_captions) == (256, "square", True)  # the job's defaults
    assert encode_command(args) == 1
    printed = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["corrupt-00000.tar", "null_caption.npz", "shard-00000.tar"]
    assert "corrupt-00000.tar: 2 samples, skipped {'unreadable': 2}" in printed.err
    errors = [line for line in printed.err.splitlines() if line.startswith("pixcap:")]  # not progress bars
    assert len(errors) == 2 and damaged["truncated"] in errors[0] and "1 of 3 shards" in errors[1]
    # A rerun does only the shard that failed, and fails on it again.
    assert encode_command(args) == 1
    assert "2 of 3 shards already encoded" in capsys.readouterr().err
