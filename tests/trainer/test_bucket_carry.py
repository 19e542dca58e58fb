"""Partly filled buckets cross data-segment boundaries: over a long stream every bucket trains in
proportion to its share of the data (rare ones included), and the carried samples are part of the
resumable state, so a resume reads the very batches the uninterrupted stream does."""
import copy
import gzip
import json
import math
import random
import shutil

import numpy as np
import pytest
import webdataset as wds

from pixcap.schemas import load_train_job
from pixcap.schemas.buckets import ASPECT_RATIO_256
from pixcap.schemas.records import HEIGHT, LATENT_EXT, RECORD_EXT, WIDTH
from pixcap.trainer.data import step_batches
from pixcap.trainer.features import npy_bytes
from pixcap.trainer.shard_read import read_again, tar_samples

from .shards_fixture import write_shards

# Nine buckets of the 256 table and their share of the data: three common, six rare (down to 1%).
SHARES = {1.0: 0.30, 0.78: 0.22, 1.29: 0.15, 0.57: 0.12, 1.75: 0.08, 0.42: 0.06, 2.5: 0.04, 0.28: 0.02, 4.0: 0.01}
N_SHARDS, PER_SHARD = 40, 50
BATCH, SEGMENT = 8, 10  # 80 samples a segment: a 1% bucket gets 0.8 of them, far from the 8 of a batch
STEPS = 800


def write_posterior_shards(directory) -> tuple:
    """Shards of stored posteriors (float16 zeros: only their size matters here), each sample's bucket
    drawn without replacement from a pool holding every bucket at its share; returns (paths, key -> ratio)."""
    directory.mkdir(parents=True, exist_ok=True)
    total = N_SHARDS * PER_SHARD
    pool = [ratio for ratio, share in SHARES.items() for _ in range(round(share * total))]
    assert len(pool) == total
    random.Random(0).shuffle(pool)
    paths, ratio_of = [], {}
    for s in range(N_SHARDS):
        path = directory / f"post-{s:05d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for j in range(PER_SHARD):
                ratio = pool[s * PER_SHARD + j]
                height, width = ASPECT_RATIO_256[ratio]
                key = f"post/{s:05d}/{j:04d}"
                ratio_of[key] = ratio
                sink.write({"__key__": key, RECORD_EXT: json.dumps({WIDTH: width, HEIGHT: height}).encode(),
                            LATENT_EXT: npy_bytes(np.zeros((8, height // 8, width // 8), np.float16))})
        paths.append(str(path))
    return paths, ratio_of


@pytest.fixture(scope="module")
def posterior_shards(tmp_path_factory):
    return write_posterior_shards(tmp_path_factory.mktemp("posteriors"))


def make_job(shards, **overrides):
    return load_train_job({"shards": shards, "buckets": "aspect", "batch_size": BATCH, "checkpoint_every": SEGMENT,
                           "num_workers": 0, "shuffle_buffer": 16, **overrides})


def test_every_bucket_trains_in_proportion_to_its_data_share(posterior_shards):
    """800 steps of batch 8 (6,400 samples) in segments of 10 steps: each bucket's trained count is
    within 4 standard deviations of a multinomial draw at its data share, plus the at most 7 samples a
    bucket can hold back at the end. Without the carry the 1% to 8% buckets train (almost) never."""
    shards, ratio_of = posterior_shards
    trained = {ratio: 0 for ratio in SHARES}
    skipped = {}
    batches = step_batches(make_job(shards), shards, 0)
    for _, (step, batch) in zip(range(STEPS), batches):
        ratios = {ratio_of[k] for k in batch["key"]}
        assert len(ratios) == 1 and len(batch["key"]) == BATCH  # one bucket a batch, always full
        trained[ratios.pop()] += BATCH
        for reason, n in batch["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + n
    batches.close()
    assert skipped == {}
    n = STEPS * BATCH
    for ratio, share in SHARES.items():
        sd = math.sqrt(n * share * (1 - share))
        assert abs(trained[ratio] - n * share) <= 4 * sd + (BATCH - 1), (ratio, share, trained[ratio] / n)


def keys_from(job, shards, start, n, state, capture=None):
    """(step, keys) of n batches from `start`; capture[step] = the data state a checkpoint of that step holds."""
    stream = step_batches(job, shards, start, state)
    out = []
    for _, (step, batch) in zip(range(n), stream):
        out.append((step, batch["key"]))
        if capture is not None and step + 1 in capture:
            capture[step + 1] = copy.deepcopy(state)
    stream.close()
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resume_with_the_carried_state_reads_the_same_batches(posterior_shards, workers):
    """A resume at a segment boundary (20) and inside a segment (25) with the state a checkpoint of
    that step holds reads the batches the uninterrupted stream reads; without it, it would not."""
    shards, _ = posterior_shards
    job = make_job(shards, num_workers=workers)
    capture = {20: None, 25: None}
    once = keys_from(job, shards, 0, 40, {}, capture)
    assert [s for s, _ in once] == list(range(40))
    assert any(capture[20]["carry"])  # samples really are carried
    assert len(capture[20]["carry"]) == max(1, workers)
    for start in (20, 25):
        state = copy.deepcopy(capture[start])
        assert keys_from(job, shards, start, 40 - start, state) == once[start:]
    assert keys_from(job, shards, 20, 20, {}) != once[20:]  # the carried samples are what differs


def test_samples_are_found_again_by_offset_or_by_reading_the_shard(tmp_path):
    """A plain tar is read again at its members' offsets; a gzipped one, which has none, by reading it through."""
    plain = write_shards(tmp_path / "plain", n_shards=1, per_shard=4)[0]
    packed = str(tmp_path / "packed.tar.gz")
    with open(plain, "rb") as source, gzip.open(packed, "wb") as sink:
        shutil.copyfileobj(source, sink)
    for url in (plain, packed):
        samples = list(tar_samples([{"url": url}]))
        ids = [[s["__url__"], s["__key__"], s["__members__"]] for s in samples]
        assert (ids[0][2] is None) == url.endswith(".gz")
        again = read_again(list(reversed(ids)) + [[url, "no/such/key", None]])
        assert again[-1] is None
        for original, found in zip(reversed(samples), again):
            assert found == original


@pytest.mark.slow
def test_training_resumes_exactly_with_samples_carried_in_its_checkpoint(tmp_path, posterior_shards, tiny_trainer_models):
    """The loop saves the carried samples in each checkpoint and reads them back: stopped at step 5 (inside
    the second segment, whose carry the checkpoint of step 5 holds) and resumed, it equals one run to step 8."""
    from pixcap.trainer.checkpoint import load_data_state, step_dir

    from .test_resume import assert_resume_is_exact

    shards, _ = posterior_shards
    settings = dict(buckets="aspect", checkpoint_every=3, batch_size=2, shuffle_buffer=4)
    assert_resume_is_exact(tmp_path, shards[:6], tiny_trainer_models, max_steps=8, stop_at=5, **settings)
    carried = load_data_state(step_dir(tmp_path / "twice", 5), rank=0)["carry"]
    assert any(carried)  # the resume really had samples to carry
