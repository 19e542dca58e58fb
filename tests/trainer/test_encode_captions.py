"""pixcap encode on an output with several captioners: T5 features for every caption (KEY.NAME.t5.npy beside
the primary's KEY.t5.npy), and a job's caption_choice training on them: the draw is the raw stream's, the
features are the chosen caption's, a sample without them is skipped by name, and resuming is exact."""
import io
import json
import tarfile
from collections import Counter

import numpy as np
import pytest
import webdataset as wds

from pixcap.schemas.records import (
    CAPTION_EXT, RECORD_EXT, T5_EMBEDDING_EXT, T5_MASK_EXT, caption_feature_members, caption_member, captioner_column,
)
from pixcap.schemas.train_job import FilterConfig
from pixcap.schemas.train_skips import NO_CAPTION_FEATURES
from pixcap.trainer import text
from pixcap.trainer.caption_choice import choice_rng, choose_caption
from pixcap.trainer.data import PrepareSamples, batch_stream
from pixcap.trainer.encode import encode_shards
from pixcap.trainer.features import load_text_features
from pixcap.trainer.loop import train
from pixcap.trainer.shard_read import tar_samples

from .shards_fixture import tiny_train_job, write_shards
from .test_resume import assert_resume_is_exact

NAMES = ("long", "short")
CHOICES = [{"captioner": "short"}, {"proportions": {"long": 0.25, "short": 0.75}}, {"clip_score": 0.05}]


def members(path) -> dict:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def add_captioners(paths: list) -> None:
    """Rewrite each shard as a two-captioner output: KEY.long.txt (copied to KEY.txt, the primary), KEY.short.txt,
    and each caption's CLIP score in KEY.json."""
    for n, path in enumerate(paths):
        samples = list(tar_samples([{"url": path}]))
        with wds.TarWriter(path) as sink:
            for i, sample in enumerate(samples):
                record = json.loads(sample[RECORD_EXT])
                long_caption = sample[CAPTION_EXT].decode()
                short_caption = long_caption.split()[0] + f" thing {n} {i}"
                record.update({captioner_column("caption", "long"): long_caption,
                               captioner_column("caption", "short"): short_caption,
                               captioner_column("clip_score", "long"): 0.20 + 0.01 * (i % 3),
                               captioner_column("clip_score", "short"): 0.22 - 0.01 * (i % 2)})
                sink.write({"__key__": sample["__key__"], "jpg": sample["jpg"], CAPTION_EXT: long_caption.encode(),
                            caption_member("long"): long_caption.encode(),
                            caption_member("short"): short_caption.encode(), RECORD_EXT: json.dumps(record).encode()})


@pytest.fixture(scope="module")
def captioned(tmp_path_factory, tiny_trainer_models):
    root = tmp_path_factory.mktemp("captioned")
    raw = write_shards(root / "raw", n_shards=2, per_shard=6)
    add_captioners(raw)
    assert encode_shards(raw, str(root / "encoded"), text_encoder=str(tiny_trainer_models["t5"]),
                         vae=str(tiny_trainer_models["vae"]), models_cache=str(root / "cache"), batch_size=4) == []
    return root, raw, sorted(str(p) for p in (root / "encoded").glob("*.tar"))


def test_encode_stores_every_captioners_features_beside_the_primarys(captioned, tiny_trainer_models):
    _, raw, encoded = captioned
    t5 = text.TextEncoder(str(tiny_trainer_models["t5"]))
    for raw_path, path in zip(raw, encoded):
        before, out = members(raw_path), members(path)
        assert {k: v for k, v in out.items() if k in before} == before  # every original member, unchanged
        for key in sorted({name.split(".", 1)[0] for name in before}):
            # The primary's features stay where they were; each captioner's are under its name.
            stored = {"": (f"{key}.{T5_EMBEDDING_EXT}", f"{key}.{T5_MASK_EXT}")}
            stored.update({name: tuple(f"{key}.{m}" for m in caption_feature_members(name)) for name in NAMES})
            texts = {"": before[f"{key}.{CAPTION_EXT}"], **{n: before[f"{key}.{caption_member(n)}"] for n in NAMES}}
            for name, (emb_member, mask_member) in stored.items():
                want, want_mask = t5.encode([texts[name].decode()])
                emb, mask = np.load(io.BytesIO(out[emb_member])), np.load(io.BytesIO(out[mask_member]))
                np.testing.assert_array_equal(mask, want_mask[0].numpy())
                np.testing.assert_allclose(emb, want[0, : mask.sum()].numpy(), rtol=1e-2, atol=1e-3)
            assert out[stored[""][0]] == out[stored["long"][0]]  # KEY.txt is the long captioner's copy
            assert out[stored["long"][0]] != out[stored["short"][0]]


@pytest.mark.parametrize("choice", CHOICES)
def test_precomputed_training_draws_as_the_generator_does_and_reads_the_chosen_features(captioned, tiny_trainer_models,
                                                                                       tmp_path, choice):
    _, _, encoded = captioned
    job = tiny_train_job(encoded, tmp_path / "run", tiny_trainer_models, caption_choice=choice, buckets="square",
                         shuffle_buffer=0, seed=5)
    samples = {s["__key__"]: s for s in tar_samples([{"url": u} for u in encoded])}
    counts, keys = Counter(), []
    for batch in batch_stream(job, encoded, segment=1, resampled=False):
        assert batch["skipped"] == {}
        counts.update(batch["captioners"])
        for key, caption, emb, mask in zip(batch["key"], batch["caption"], batch["t5"], batch["t5_mask"]):
            sample = samples[key]
            name, want_caption = choose_caption(sample, json.loads(sample[RECORD_EXT]), choice,
                                                choice_rng(5, 1, sample["__url__"], key))
            assert caption == want_caption
            want_emb, want_mask = load_text_features(*(sample[m] for m in caption_feature_members(name)))
            assert (emb == want_emb).all() and (mask == want_mask).all()
            keys.append((key, name))
    assert len(keys) == len(samples)  # an epoch: every sample once
    assert counts == Counter(name for _, name in keys)
    if "captioner" in choice:
        assert counts == {"short": len(samples)}


def test_a_chosen_caption_without_features_is_skipped_by_name(captioned):
    _, _, encoded = captioned
    sample = next(tar_samples([{"url": encoded[0]}]))
    named = caption_feature_members("short") + caption_feature_members("long")
    older = {k: v for k, v in sample.items() if k not in named}  # as an encode that stored the primary's only
    prepare = PrepareSamples("square", [256], FilterConfig(), caption_choice={"captioner": "short"})
    assert prepare.prepare_or_skip(older) is None and prepare.skipped == {NO_CAPTION_FEATURES: 1}
    # The long caption is the primary's text: an encode that stored only the primary's features serves it.
    out = PrepareSamples("square", [256], FilterConfig(), caption_choice={"captioner": "long"}).prepare(older)
    want = load_text_features(sample[T5_EMBEDDING_EXT], sample[T5_MASK_EXT])
    assert out["captioner"] == "long" and (out["t5"] == want[0]).all()


@pytest.mark.slow
def test_precomputed_caption_choice_resumes_exactly_and_logs_captioners(captioned, tiny_trainer_models, tmp_path):
    _, _, encoded = captioned
    assert_resume_is_exact(tmp_path, encoded, tiny_trainer_models, max_steps=5, stop_at=3, checkpoint_every=2,
                           caption_choice={"clip_score": 0.05}, buckets="square")
    logged = [json.loads(line) for line in (tmp_path / "once" / "log.jsonl").read_text().splitlines()]
    assert all(set(entry["captioners"]) <= set(NAMES) for entry in logged)
    assert sum(logged[-1]["captioners"].values()) == 5 * 2  # max_steps * batch_size, every sample counted
    assert logged[-1]["skipped"].get(NO_CAPTION_FEATURES, 0) == 0


def test_training_with_caption_choice_on_features_runs(captioned, tiny_trainer_models, tmp_path):
    _, _, encoded = captioned
    job = tiny_train_job(encoded, tmp_path / "run", tiny_trainer_models, max_steps=1,
                         caption_choice={"proportions": {"long": 1, "short": 1}}, buckets="square")
    assert train(job)["step"] == 1
