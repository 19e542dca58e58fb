"""Streaming batches: filters, square or one-bucket batches, never an enlarged image, disjoint complete
coverage across ranks and workers."""
import json
import os
import signal
import tarfile
import threading
import time

import numpy as np
import pytest

from pixcap.schemas import JobError, load_train_job
from pixcap.trainer.buckets import nearest_bucket
from pixcap.trainer.data import _started, batch_stream, build_loader, choose_fit, expand_shards, latent_fit, step_batches

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


def skipped_total(batches) -> dict:
    total = {}
    for b in batches:
        for reason, n in b["skipped"].items():
            total[reason] = total.get(reason, 0) + n
    return total


def test_aspect_batches_hold_one_bucket_fitted_to_it(shards):
    meta = records(shards)
    batches = epoch(make_job(shards, buckets="aspect"), shards)
    assert sorted(k for b in batches for k in b["key"]) == sorted(meta)
    seen = set()
    for batch in batches:
        sizes = {nearest_bucket(meta[k]["height"], meta[k]["width"], 256)[1] for k in batch["key"]}
        assert len(sizes) == 1
        seen |= sizes
        assert tuple(batch["pixels"].shape[2:]) == sizes.pop()
        assert batch["pixels"].min() >= -1 and batch["pixels"].max() <= 1
        assert batch["resolution"].tolist() == [[meta[k]["orig_height"], meta[k]["orig_width"]] for k in batch["key"]]
    assert len(seen) == 4  # square, wide, tall, 5:4


def test_square_batches_are_centre_crops_at_the_resolution(shards):
    """PixArt's 256 stages (InternalData): every image is resolution x resolution, conditioned as the square."""
    meta = records(shards)
    batches = epoch(make_job(shards), shards)  # square is the default, as PixArt's multi_scale=False
    assert sorted(k for b in batches for k in b["key"]) == sorted(meta)
    for batch in batches:
        assert tuple(batch["pixels"].shape[1:]) == (3, 256, 256)
        assert batch["resolution"].tolist() == [[256.0, 256.0]] * len(batch["key"])
        assert batch["aspect_ratio"].tolist() == [[1.0]] * len(batch["key"])


def test_fit_takes_the_largest_table_the_image_covers_and_never_enlarges():
    assert choose_fit(1000, 2000, "aspect", [256, 512, 1024]) == (0.5, (704, 1408))
    assert choose_fit(500, 700, "aspect", [256, 512, 1024]) == (0.72, (416, 576))  # 1024's would enlarge it
    assert choose_fit(100, 100, "aspect", [512, 1024]) is None  # too small for every table: skipped
    assert choose_fit(1024, 1023, "aspect", [1024]) is None  # one pixel short of its bucket
    assert choose_fit(300, 900, "square", [256]) == (1.0, (256, 256))
    assert choose_fit(255, 900, "square", [256]) is None
    assert latent_fit(np.zeros((8, 22, 44)), "aspect", [256, 512]) == (0.5, (176, 352))
    assert latent_fit(np.zeros((8, 30, 30)), "aspect", [256, 512]) is None
    assert latent_fit(np.zeros((8, 32, 32)), "square", [256]) == (1.0, (256, 256))
    assert latent_fit(np.zeros((8, 22, 44)), "square", [256]) is None


@pytest.mark.parametrize("mode", ["square", "aspect"])
def test_images_too_small_are_skipped_and_counted(tmp_path, mode):
    small = write_shards(tmp_path, n_shards=1, per_shard=6, sizes=[(256, 256), (220, 320), (250, 120)])
    batches = epoch(make_job(small, buckets=mode), small)
    kept = sorted(k for b in batches for k in b["key"])
    # (220, 320) covers its 256 bucket (1.46: 304 x 208) but not the 256 square; (250, 120) covers neither.
    expected = {"square": ["fixture/shard-00000/0000", "fixture/shard-00000/0003"],
                "aspect": ["fixture/shard-00000/0000", "fixture/shard-00000/0001",
                           "fixture/shard-00000/0003", "fixture/shard-00000/0004"]}[mode]
    assert kept == expected
    assert skipped_total(batches) == {"smaller_than_bucket": 6 - len(expected)}


def test_filters_skip_and_count(shards):
    meta = records(shards)
    job = make_job(shards, filters={"min_clip_score": 0.2, "min_n_nouns": 1, "max_aspect_ratio": 1.5})
    batches = epoch(job, shards)
    kept = {k for b in batches for k in b["key"]}
    expected = {k for k, r in meta.items() if r["clip_score"] >= 0.2 and r["n_nouns"] >= 1
                and max(r["width"], r["height"]) / min(r["width"], r["height"]) <= 1.5}
    assert kept == expected and 0 < len(kept) < len(meta)
    skipped = skipped_total(batches)
    assert sum(skipped.values()) == len(meta) - len(kept)
    assert set(skipped) <= {"filter:min_clip_score", "filter:min_n_nouns", "filter:max_aspect_ratio"}


def test_the_aesthetic_filter_keeps_scored_images_at_or_above_it(shards):
    meta = records(shards)
    batches = epoch(make_job(shards, filters={"min_aesthetic_score": 5.0}), shards)
    kept = {k for b in batches for k in b["key"]}
    # A sample without a score (the aesthetic stage did not run on it) fails the filter.
    expected = {k for k, r in meta.items() if r["aesthetic_score"] is not None and r["aesthetic_score"] >= 5.0}
    assert kept == expected and 0 < len(kept) < len(meta)
    assert any(r["aesthetic_score"] is None for r in meta.values())
    assert skipped_total(batches) == {"filter:min_aesthetic_score": len(meta) - len(kept)}


@pytest.mark.parametrize("workers", [0, 1])
def test_filters_no_sample_passes_stop_the_endless_stream_with_one_line(shards, workers):
    """The trainer's stream draws shards forever: once every shard was read through and nothing
    passed, it says so instead of skipping in silence (a data-loader worker's error included)."""
    job = make_job(shards, filters={"min_clip_score": 10.0}, num_workers=workers)
    with pytest.raises(JobError) as stopped:
        next(step_batches(job, shards, 0))
    message = str(stopped.value)
    del stopped  # its traceback holds the data loader, and so its worker
    assert message.startswith(f"no sample of the {len(shards)} shard(s) this rank reads passes the "
                              "filters and fits the buckets (skipped: {'filter:min_clip_score': ")
    assert "\n" not in message
    # One sample in the whole share passes: the stream goes on (with replacement, it fills batches).
    job = make_job(shards, filters={"min_clip_score": max(r["clip_score"] for r in records(shards[:1]).values())},
                   num_workers=workers)
    batches = step_batches(job, shards[:1], 0)
    assert next(batches)[1]["key"]
    batches.close()


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
    assert skipped_total(batches) == {"unreadable": 2, "broken_shard": 1}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and damaged["truncated"] in err[0]


class _Stopped(Exception):
    pass


def test_a_sigterm_another_thread_takes_while_the_loader_starts_is_handled_once_its_iterator_is_whole():
    """Slurm's SIGTERM to the process, taken by a thread that does not hold it (the main thread holds it
    while the loader forks), runs Python's handler in the main thread wherever it is: in the middle of
    the loader iterator's __init__ it left a half-built iterator whose __del__ printed a traceback. It
    must be handled after the iterator is whole, and after its workers are shut down."""
    kill, killed = threading.Event(), threading.Event()

    def sender():  # started before the mask is set: SIGTERM is not held in this thread
        kill.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)
        killed.set()

    threading.Thread(target=sender, daemon=True).start()
    events = []

    class Iterator:
        def __init__(self):
            kill.set()
            killed.wait(10)
            time.sleep(0.1)  # the real __init__ forks and waits: where Python runs a pending signal's handler
            events.append("built")

        def __next__(self):
            raise StopIteration

        def _shutdown_workers(self):
            events.append("shut down")

    class Loader:
        num_workers = 1

        def __iter__(self):
            return Iterator()

    def stop(signum, frame):
        events.append("handled")
        raise _Stopped()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(_Stopped):
            _started(Loader())
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert events == ["built", "shut down", "handled"]
