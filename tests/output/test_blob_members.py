"""A stage's members beside the image (a control map, KEY.canny.png), without Ray: a blob beside the image's,
a tar member of every written sample at commit, nothing for a rejected one, the same tar after a failed commit."""
import os

import pytest
import webdataset as wds

from pixcap.output.blobs import BlobWriter
from pixcap.output.commit import commit_shard
from pixcap.output.fragments import FragmentWriter
from pixcap.output.layout import blob as blob_path, shard_blobs, shard_file
from pixcap.output.storage import Storage
from pixcap.schemas import batch as B
from pixcap.schemas import load_job
from pixcap.schemas import stages as registry

from .batches import big_batch, finished_batch

JOB = {"inputs": ["x.tar"], "output": "out", "caption": {"model": "tiny:llava"}, "control": {"kinds": ["canny"]}}


def with_maps(batch: dict, failed=()) -> dict:
    """The batch as the control stage hands it on: a map per live row ("" where it could not make one)."""
    members = registry.blob_members(load_job(JOB))
    assert members == {"canny.png": "control_canny"}
    maps = [b"" if reason or i in failed else b"png %d" % index
            for i, (index, reason) in enumerate(zip(batch[B.INDEX], batch[B.REJECT_REASON]))]
    for i in failed:
        batch[B.REJECT_STAGE][i], batch[B.REJECT_REASON][i], batch[B.REJECT_ERROR][i] = "control", "control_error", "x"
    return {**batch, "control_canny": maps}


def test_every_written_sample_gets_its_map_as_a_member_and_a_rejected_one_nothing(tmp_path):
    storage = Storage(str(tmp_path))
    batch = with_maps(finished_batch("p-00000", [0, 1, 2, 3], count=4, rejected={1}), failed=[2])
    blobbed = BlobWriter(storage, registry.blob_members(load_job(JOB)))(batch)
    assert "control_canny" not in blobbed and B.STORED not in blobbed  # bytes go on as blobs only
    assert blobbed[B.BLOB_MEMBERS] == [["canny.png"], [], [], ["canny.png"]]
    assert (tmp_path / blob_path("p-00000", 3, "canny.png")).read_bytes() == b"png 3"
    assert not (tmp_path / blob_path("p-00000", 2)).exists()  # a row the control stage rejected stores nothing
    fragment = FragmentWriter(storage)(blobbed)["fragment"][0]
    result = commit_shard(storage, "p-00000", [fragment])
    assert (result["samples"], result["rejected"]) == (2, 2)
    samples = list(wds.WebDataset(str(tmp_path / shard_file("tar", "p-00000")), shardshuffle=False))
    assert [(s["__key__"], s["canny.png"]) for s in samples] == [("p/k0", b"png 0"), ("p/k3", b"png 3")]
    assert not (tmp_path / shard_blobs("p-00000")).exists()  # the maps leave with the images


def test_a_missing_map_fails_the_commit_and_the_rerun_writes_the_same_tar(tmp_path):
    """A written sample is whole or not at all: a map's blob gone is an error, never a sample without it."""
    storage = Storage(str(tmp_path))
    blobbed = BlobWriter(storage, {"canny.png": "control_canny"})(with_maps(big_batch()))
    fragment = FragmentWriter(storage)(blobbed)["fragment"][0]
    kept = (tmp_path / blob_path("p-00000", 1, "canny.png")).read_bytes()
    os.remove(tmp_path / blob_path("p-00000", 1, "canny.png"))
    with pytest.raises(FileNotFoundError):
        commit_shard(storage, "p-00000", [fragment])
    (tmp_path / blob_path("p-00000", 1, "canny.png")).write_bytes(kept)
    first = commit_shard(storage, "p-00000", [fragment])
    tar = (tmp_path / shard_file("tar", "p-00000")).read_bytes()

    again = tmp_path / "again"
    storage = Storage(str(again))
    fragment = FragmentWriter(storage)(BlobWriter(storage, {"canny.png": "control_canny"})(with_maps(big_batch())))["fragment"][0]
    assert commit_shard(storage, "p-00000", [fragment])["files"] == first["files"]
    assert (again / shard_file("tar", "p-00000")).read_bytes() == tar
