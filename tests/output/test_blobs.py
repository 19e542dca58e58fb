"""Stored images (output/blobs.py), without Ray: they travel through the graph as a path, not
bytes, and leave with their shard's commit."""
import os

import pyarrow.parquet as pq
import webdataset as wds

from pixcap.output.blobs import BlobWriter
from pixcap.output.layout import blob as blob_path, shard_blobs
from pixcap.output.commit import commit_shard
from pixcap.output.fragments import FragmentWriter
from pixcap.output.storage import Storage
from pixcap.schemas import batch as B
from tests.pipeline.tarfiles import jpeg_bytes

from .batches import finished_batch


def test_stored_bytes_travel_as_a_path_and_leave_with_the_commit(tmp_path):
    out = str(tmp_path)
    storage = Storage(out)
    batch = finished_batch("p-00000", [0, 1, 2], count=3, rejected={1})
    blobbed = BlobWriter(storage)(batch)
    assert B.STORED not in blobbed  # what goes on to the models
    assert blobbed[B.STORED_AT] == [blob_path("p-00000", 0), "", blob_path("p-00000", 2)]
    assert (tmp_path / blob_path("p-00000", 2)).read_bytes() == jpeg_bytes(2)
    fragment = FragmentWriter(storage)(blobbed)["fragment"][0]
    assert str(pq.read_table(os.path.join(out, fragment)).schema.field(B.STORED_AT).type) == "string"
    commit_shard(storage, "p-00000", [fragment])
    samples = list(wds.WebDataset(os.path.join(out, "shards", "p-00000.tar"), shardshuffle=False))
    assert [s["jpg"] for s in samples] == [jpeg_bytes(0), jpeg_bytes(2)]
    assert not (tmp_path / shard_blobs("p-00000")).exists()
