"""Shard commits (output/commit.py), without Ray: fragments to a tar, its stats and rejects in input
order, deterministic, cleaned up and redone identically after a failure."""
import errno
import json
import os
import time

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pixcap.output.commit import commit_shard
from pixcap.output.fragments import FragmentWriter
from pixcap.output.ledger import Ledger
from pixcap.output.storage import Storage
from pixcap.schemas import batch as B
from pixcap.schemas.manifest import TMP_SUFFIX, WORK_DIR
from tests.pipeline.tarfiles import jpeg_bytes

from .batches import big_batch, finished_batch


def test_fragments_commit_in_input_order_with_rejects(tmp_path):
    out = str(tmp_path)
    ledger = Ledger(Storage(out), {"p"})
    writer = FragmentWriter(Storage(out))
    # Rows arrive out of order, across fragments, one of them twice (a retried task).
    for batch in (finished_batch("p-00000", [2, 3], count=4, rejected={3}, part_end=True),
                  finished_batch("p-00000", [1, 0]), finished_batch("p-00000", [1])):
        summary = writer(batch)
        ledger.add(summary["fragment"][0], summary)
    assert ledger.complete_shards() == ["p-00000"]
    fragments = sorted(ledger.shards["p-00000"].fragments)
    result = commit_shard(Storage(out), "p-00000", fragments)
    ledger.committed_shard("p-00000")

    assert result["samples"] == 3 and result["rejected"] == 1
    samples = list(wds.WebDataset(os.path.join(out, "shards", "p-00000.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == ["p/k0", "p/k1", "p/k2"]
    assert samples[1]["jpg"] == jpeg_bytes(1)
    assert samples[2]["txt"].decode() == "a red car number 2"
    record = json.loads(samples[0]["json"])
    assert record["key"] == "p/k0" and record["nouns"] == ["car", "number"] and record["shard"] == "p-00000"
    stats = pq.read_table(os.path.join(out, "stats", "p-00000.parquet"))
    assert stats.column("key").to_pylist() == ["p/k0", "p/k1", "p/k2"]
    rejects = pq.read_table(os.path.join(out, "rejects", "p-00000.parquet")).to_pylist()
    assert rejects == [{"source": "in.tar::k3.jpg", "key": "p/k3", "shard": "p-00000", "stage": "decode",
                        "reason": "decode_error", "error": "broken"}]
    # Fragments are gone once their shards are committed, and the part is marked done.
    assert os.listdir(os.path.join(out, WORK_DIR, "fragments")) == []
    assert ledger.done_parts() == {"p"}

def test_a_commit_reads_its_images_in_groups(tmp_path, monkeypatch):
    """A shard's images are fetched a few at a time, never all held at once."""
    from pixcap.output import commit

    storage = Storage(str(tmp_path))
    fragment = FragmentWriter(storage)(finished_batch("p-00000", list(range(5)), count=5))["fragment"][0]
    groups = []
    real = Storage.read_many
    monkeypatch.setattr(commit, "BLOB_READS", 2)
    monkeypatch.setattr(Storage, "read_many", lambda self, paths: groups.append(len(paths)) or real(self, paths))
    commit_shard(storage, "p-00000", [fragment])
    assert groups == [2, 2, 1]

def test_commit_is_deterministic(tmp_path):
    digests = []
    for run in ("a", "b"):
        out = str(tmp_path / run)
        summary = FragmentWriter(Storage(out))(finished_batch("p-00000", [0, 1], count=2))
        digests.append(commit_shard(Storage(out), "p-00000", [summary["fragment"][0]])["files"])
    assert digests[0] == digests[1]

def test_commit_failpoints_fire_partway_through_the_tar_and_between_tar_and_stats(tmp_path):
    out = str(tmp_path)
    summary = FragmentWriter(Storage(out))(big_batch())
    seen = []

    def failpoint(point):
        on_disk = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, files in os.walk(out) for f in files
                         if not d.startswith(os.path.join(out, WORK_DIR)))
        temp = [os.path.join(out, path) for path in on_disk if path.endswith(TMP_SUFFIX)]
        seen.append((point, [p.split(".")[0] + "." + p.split(".")[1] if p.endswith(TMP_SUFFIX) else p for p in on_disk],
                     os.path.getsize(temp[0]) if point == "shard_tar" else None))

    commit_shard(Storage(out), "p-00000", [summary["fragment"][0]], failpoint)
    (tar_point, before, partial), (commit_point, between, _) = seen
    assert tar_point == "shard_tar" and before == ["shards/p-00000.tar"]  # under a temp name
    assert 0 < partial < os.path.getsize(tmp_path / "shards" / "p-00000.tar")
    assert commit_point == "shard_commit"
    assert between == ["rejects/p-00000.parquet", "shards/p-00000.tar"]  # no stats yet: not committed

@pytest.mark.parametrize("point", ["shard_tar", "shard_commit"])
def test_a_commit_that_fails_is_cleaned_up_and_redone_identically(tmp_path, point):
    """A write error part-way through the tar, or a crash between the tar and the stats rename:
    nothing is committed, the next run's ledger removes what was written, and the commit redone
    is byte-identical to one that never failed."""
    batch = big_batch()
    clean = commit_shard(Storage(str(tmp_path / "clean")), "p-00000", [FragmentWriter(Storage(str(tmp_path / "clean")))(batch)["fragment"][0]])

    out = str(tmp_path / "failed")
    fragment = FragmentWriter(Storage(out))(batch)["fragment"][0]

    def fail(at):
        if at == point:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError):
        commit_shard(Storage(out), "p-00000", [fragment], fail)
    ledger = Ledger(Storage(out), {"p"})
    assert ledger.committed() == set()
    ledger.clean_uncommitted()
    assert [f for d in ("shards", "stats", "rejects") for f in os.listdir(os.path.join(out, d))] == []
    ledger.load_fragments()
    assert ledger.complete_shards() == ["p-00000"]
    assert commit_shard(Storage(out), "p-00000", [fragment]) == clean

def test_a_shard_with_no_samples_has_no_tar_and_every_shard_has_its_rejects(tmp_path):
    out = str(tmp_path)
    storage = Storage(out)
    none_left = FragmentWriter(storage)(finished_batch("p-00000", [0, 1], count=2, rejected={0, 1}))
    none_rejected = FragmentWriter(storage)(finished_batch("p-00001", [0, 1], count=2))
    empty = commit_shard(storage, "p-00000", [none_left["fragment"][0]])
    full = commit_shard(storage, "p-00001", [none_rejected["fragment"][0]])
    assert empty["samples"] == 0 and "shards/p-00000.tar" not in empty["files"]
    assert not (tmp_path / "shards" / "p-00000.tar").exists()
    assert pq.read_table(tmp_path / "stats" / "p-00000.parquet").num_rows == 0
    assert pq.read_table(tmp_path / "rejects" / "p-00000.parquet").num_rows == 2
    assert pq.read_table(tmp_path / "rejects" / "p-00001.parquet").num_rows == 0  # the schema is always there
    assert full["files"]["shards/p-00001.tar"]["bytes"] == os.path.getsize(tmp_path / "shards" / "p-00001.tar")

def test_clip_embeddings_are_stored_row_aligned_with_the_stats_in_float16(tmp_path):
    import numpy as np

    storage = Storage(str(tmp_path))
    batch = finished_batch("p-00000", [0, 1, 2], count=3, rejected={1})
    vectors = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float16)
    batch[B.CLIP_EMBEDDING] = [b"" if i == 1 else vectors[i].tobytes() for i in range(3)]
    result = commit_shard(storage, "p-00000", [FragmentWriter(storage)(batch)["fragment"][0]])
    stored = np.load(tmp_path / "embeddings" / "p-00000.npy")
    assert stored.dtype == np.float16 and np.array_equal(stored, vectors[[0, 2]])
    keys = pq.read_table(tmp_path / "stats" / "p-00000.parquet").column("key").to_pylist()
    assert keys == ["p/k0", "p/k2"]
    assert result["files"]["embeddings/p-00000.npy"]["bytes"] == os.path.getsize(tmp_path / "embeddings" / "p-00000.npy")

def test_a_failed_commit_lets_the_commits_under_way_finish(tmp_path, monkeypatch):
    """One shard's commit fails (a full disk) while another is part-way through its tar: the run
    stops with the first one's error, and the other finishes and is committed, not cut between
    its tar and its stats (which would leave an uncommitted tar on a full disk)."""
    import threading

    import ray

    from pixcap.output import commit, failpoints
    from pixcap.output.commit import CommitError, Committer

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the commit thread pool, not Ray tasks
    out = str(tmp_path)
    storage = Storage(out)
    ledger = Ledger(storage, {"p"})
    writer = FragmentWriter(storage)
    for shard in ("p-00000", "p-00001"):
        batch = {**big_batch(), B.SHARD: [shard] * 3}
        summary = writer(batch)
        ledger.add(summary["fragment"][0], summary)
    first = threading.Event()

    def full_disk_for_the_first_tar(point):
        if point != "shard_tar":
            return
        if not first.is_set():
            first.set()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        time.sleep(1.0)  # still writing when the failure comes back to the driver

    monkeypatch.setattr(failpoints, "reached", full_disk_for_the_first_tar)
    monkeypatch.setattr(commit, "DRAIN_SECONDS", 30)
    with pytest.raises(CommitError, match="No space left on device"):
        with Committer(storage, ledger) as committer:
            committer.submit_complete()
            committer.collect(block=True)
    assert committer.running == {}
    committed = {name[: -len(".parquet")] for name in os.listdir(tmp_path / "stats")}
    assert len(committed) == 1 and committer.written == 2 and committer.rejected == 1
    assert {name[: -len(".tar")] for name in os.listdir(tmp_path / "shards")} == committed
    assert not [f for d, _, files in os.walk(out) for f in files if f.endswith(TMP_SUFFIX)]


def _load_webdataset(tmp_path, tars):
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset("webdataset", data_files=[str(t) for t in tars], split="train",
                                 cache_dir=str(tmp_path / "hf"))


def test_key_json_leaves_out_a_score_not_computed_and_datasets_types_every_column(tmp_path):
    from pixcap.schemas.records import AESTHETIC_SCORE

    off, on = Storage(str(tmp_path / "off")), Storage(str(tmp_path / "on"))
    commit_shard(off, "p-00000", [FragmentWriter(off)(finished_batch("p-00000", [0, 1], count=2))["fragment"][0]])
    scored = finished_batch("p-00000", [0, 1, 2], count=3)
    scored[AESTHETIC_SCORE] = [5.5, 6.0, None]  # the stage ran; one image got no score
    commit_shard(on, "p-00000", [FragmentWriter(on)(scored)["fragment"][0]])

    [sample] = list(wds.WebDataset(off.path("shards/p-00000.tar"), shardshuffle=False))[:1]
    assert AESTHETIC_SCORE not in json.loads(sample["json"])  # not `null`, which has no type
    assert pq.read_schema(off.path("stats/p-00000.parquet")).field(AESTHETIC_SCORE).type == "float"  # typed there
    features = _load_webdataset(tmp_path / "off", [off.path("shards/p-00000.tar")]).features["json"]
    assert AESTHETIC_SCORE not in features and "null" not in {getattr(f, "dtype", "") for f in features.values()}
    loaded = _load_webdataset(tmp_path / "on", [on.path("shards/p-00000.tar")])
    assert loaded.features["json"][AESTHETIC_SCORE].dtype == "float64"
    assert [row[AESTHETIC_SCORE] for row in loaded["json"]] == [5.5, 6.0, None]
