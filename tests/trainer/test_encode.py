"""pixcap encode: features beside every sample in new shards, reruns skip, and training then needs no VAE or T5."""
import argparse
import hashlib
import io
import json
import tarfile

import numpy as np
import pytest

from pixcap.schemas.records import LATENT_EXT, T5_EMBEDDING_EXT, T5_MASK_EXT
from pixcap.trainer import latents, text
from pixcap.trainer.buckets import nearest_bucket
from pixcap.trainer.encode import encode_command
from pixcap.trainer.loop import train

from .shards_fixture import damage_shards, tiny_train_job, write_shards


def members(path) -> dict:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, tiny_trainer_models):
    root = tmp_path_factory.mktemp("encode")
    shards = write_shards(root / "raw", n_shards=2, per_shard=4)
    before = {p: digest(p) for p in shards}
    args = argparse.Namespace(shards=[str(root / "raw" / "*.tar")], output=str(root / "encoded"), resolution=256,
                              text_encoder=str(tiny_trainer_models["t5"]), vae=str(tiny_trainer_models["vae"]),
                              models_cache=str(root / "cache"), batch_size=3, seed=0)
    assert encode_command(args) == 0
    return root, shards, before, args


def test_features_are_written_beside_every_sample(encoded):
    root, shards, before, _ = encoded
    assert {p: digest(p) for p in shards} == before  # inputs untouched
    for shard in shards:
        raw, out = members(shard), members(root / "encoded" / shard.rsplit("/", 1)[-1])
        assert {k: v for k, v in out.items() if k in raw} == raw  # every original member, unchanged
        keys = {name.split(".", 1)[0] for name in raw}
        for key in keys:
            latent = np.load(io.BytesIO(out[f"{key}.{LATENT_EXT}"]))
            record = json.loads(raw[f"{key}.json"])
            _, (bh, bw) = nearest_bucket(record["height"], record["width"], 256)
            assert latent.dtype == np.float16 and latent.shape == (4, bh // 8, bw // 8)
            emb = np.load(io.BytesIO(out[f"{key}.{T5_EMBEDDING_EXT}"]))
            mask = np.load(io.BytesIO(out[f"{key}.{T5_MASK_EXT}"]))
            assert mask.shape == (120,) and emb.shape == (mask.sum(), 32) and emb.dtype == np.float16
    null = np.load(root / "encoded" / "null_caption.npz")
    assert null["mask"].shape == (120,) and null["emb"].shape == (null["mask"].sum(), 32)


def test_rerun_skips_finished_shards(encoded, capsys):
    root, _, _, args = encoded
    out = sorted((root / "encoded").glob("*.tar"))
    mtimes = [p.stat().st_mtime_ns for p in out]
    capsys.readouterr()
    assert encode_command(args) == 0
    assert "2 of 2 shards already encoded" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in out] == mtimes


@pytest.mark.slow
def test_training_on_features_loads_neither_vae_nor_t5(encoded, tiny_trainer_models, monkeypatch, tmp_path):
    root, _, _, _ = encoded

    def refuse(*args, **kwargs):
        raise AssertionError("the trainer loaded an encoder although the shards hold features")

    monkeypatch.setattr(latents, "LatentEncoder", refuse)
    monkeypatch.setattr(text, "TextEncoder", refuse)
    job = tiny_train_job([str(root / "encoded" / "*.tar")], tmp_path / "run", tiny_trainer_models,
                         max_steps=3, caption_dropout=0.5)
    assert train(job)["step"] == 3
    assert (tmp_path / "run" / "pipeline" / "model_index.json").exists()


def test_damaged_shards_are_reported_and_the_rest_encoded(tmp_path, tiny_trainer_models, capsys):
    good = write_shards(tmp_path / "good", n_shards=2, per_shard=4)
    damaged = damage_shards(good, tmp_path / "bad")
    out = tmp_path / "encoded"
    args = argparse.Namespace(shards=[good[0], damaged["corrupt"], damaged["truncated"]], output=str(out),
                              resolution=256, text_encoder=str(tiny_trainer_models["t5"]),
                              vae=str(tiny_trainer_models["vae"]), models_cache=str(tmp_path / "cache"),
                              batch_size=4, seed=0)
    assert encode_command(args) == 1
    printed = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["corrupt-00000.tar", "null_caption.npz", "shard-00000.tar"]
    assert "corrupt-00000.tar: 2 samples, skipped {'unreadable': 2}" in printed.out
    errors = [line for line in printed.err.splitlines() if line.startswith("pixcap:")]  # not progress bars
    assert len(errors) == 2 and damaged["truncated"] in errors[0] and "1 of 3 shards" in errors[1]
    # A rerun does only the shard that failed, and fails on it again.
    assert encode_command(args) == 1
    assert "2 of 3 shards already encoded" in capsys.readouterr().out
