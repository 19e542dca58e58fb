"""Streaming batches: filters, one-bucket batches, disjoint complete coverage across ranks and workers."""
import json
import tarfile

import numpy as np
import pytest

from pixcap.schemas import JobError, load_train_job
from pixcap.trainer.buckets import nearest_bucket
from pixcap.trainer.data import batch_stream, build_loader, choose_resolution, expand_shards, latent_bucket, step_batches

from .shards_fixture import damage_shards, write_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), n_shards=8, per_shard=6)


def records(paths) -> dict:
    """key -> KEY.json of every sample in the shards."""
    out = {}
    for path in paths:
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    out[member.name[: -len(".json")]] = json.load(tar.extractfile(member))
    return out


def make_job(shards, **overrides):
    return load_train_job({"shards": shards, "batch_size": 2, "num_workers": 0, "shuffle_buffer": 8, **overrides})


def epoch(job, urls):
    """Every batch of one epoch (epoch mode, remainders included)."""
    return list(build_loader(job, urls, segment=0, resampled=False))


def test_expand_shards_globs_braces_and_urls(shards):
    directory = shards[0].rsplit("/", 1)[0]
    assert expand_shards([f"{directory}/*.tar"]) == sorted(shards)
    assert expand_shards([f"{directory}/shard-{{00000..00001}}.tar"]) == shards[:2]
    assert expand_shards([f"file://{directory}/shard-0000[01].tar"]) == shards[:2]
    with pytest.raises(JobError, match="nothing matches"):
        expand_shards([f"{directory}/*.nothing"])


def test_batches_hold_one_bucket_resized_to_it(shards):
    meta = records(shards)
    batches = epoch(make_job(shards), shards)
    assert sorted(k for b in batches for k in b["key"]) == sorted(meta)
    for batch in batches:
        sizes = {nearest_bucket(meta[k]["height"], meta[k]["width"], 256)[1] for k in batch["key"]}
        assert len(sizes) == 1
        assert tuple(batch["pixels"].shape[2:]) == sizes.pop()
        assert batch["pixels"].min() >= -1 and batch["pixels"].max() <= 1
        assert batch["resolution"].tolist() == [[meta[k]["orig_height"], meta[k]["orig_width"]] for k in batch["key"]]


def test_multiscale_picks_the_largest_table_the_image_covers():
    assert choose_resolution(2000, 1000, [256, 512, 1024]) == 1024
    assert choose_resolution(700, 500, [256, 512, 1024]) == 512
    assert choose_resolution(100, 100, [512, 1024]) == 512  # smaller than every table: the smallest
    assert latent_bucket(np.zeros((4, 22, 44)), [256, 512]) == (0.5, (176, 352))
    assert latent_bucket(np.zeros((4, 30, 30)), [256, 512]) is None


def test_filters_skip_and_count(shards):
    meta = records(shards)
    job = make_job(shards, filters={"min_clip_score": 0.2, "min_n_nouns": 1, "max_aspect_ratio": 1.5})
    batches = epoch(job, shards)
    kept = {k for b in batches for k in b["key"]}
    expected = {k for k, r in meta.items() if r["clip_score"] >= 0.2 and r["n_nouns"] >= 1
                and max(r["width"], r["height"]) / min(r["width"], r["height"]) <= 1.5}
    assert kept == expected and 0 < len(kept) < len(meta)
    skipped = {}
    for b in batches:
        for reason, n in b["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + n
    assert sum(skipped.values()) == len(meta) - len(kept)
    assert set(skipped) <= {"filter:min_clip_score", "filter:min_n_nouns", "filter:max_aspect_ratio"}


def test_split_by_node_and_worker_covers_every_sample_once(shards, monkeypatch):
    seen = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))  # what torchrun sets; webdataset's split_by_node reads it
        monkeypatch.setenv("WORLD_SIZE", "2")
        seen.append([k for b in epoch(make_job(shards, num_workers=2), shards) for k in b["key"]])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(records(shards))  # complete, and no sample twice


def test_resampled_ranks_draw_from_disjoint_shares(shards, monkeypatch):
    keys = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        stream = iter(batch_stream(make_job(shards), shards, segment=0))
        keys.append({k for _ in range(20) for k in next(stream)["key"]})
    assert not keys[0] & keys[1]
    assert {k.split("/")[1] for k in keys[0]} <= {f"shard-{i:05d}" for i in range(0, 8, 2)}


def test_step_stream_is_a_function_of_the_step(shards):
    job = make_job(shards, checkpoint_every=3, num_workers=2)
    def keys(start, n):
        return [(step, b["key"]) for _, (step, b) in zip(range(n), step_batches(job, shards, start))]

    first, again, resumed = keys(0, 7), keys(0, 7), keys(4, 3)  # 4: a resume inside a segment
    assert first == again and resumed == first[4:]
    assert [step for step, _ in first] == list(range(7))
    assert [k for _, k in first[:3]] != [k for _, k in first[3:6]]  # segments are reseeded, not replayed


def test_damaged_shards_cost_their_samples_not_the_stream(tmp_path, capsys):
    damaged = damage_shards(write_shards(tmp_path / "good", n_shards=2, per_shard=4), tmp_path / "bad")
    batches = epoch(make_job([damaged["corrupt"], damaged["truncated"]]), [damaged["corrupt"], damaged["truncated"]])
    keys = sorted(k for b in batches for k in b["key"])
    # corrupt: 0000 (a cut JPEG) and 0001 (a broken record) are skipped; truncated: cut inside 0002.
    assert keys == ["fixture/shard-00000/0002", "fixture/shard-00000/0003",
                    "fixture/shard-00001/0000", "fixture/shard-00001/0001"]
    skipped = {}
    for b in batches:
        for reason, n in b["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + n
    assert skipped == {"unreadable": 2, "broken_shard": 1}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and damaged["truncated"] in err[0]
