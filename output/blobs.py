"""Blobs: each image's stored bytes, written to the output once, where the image was decoded.

The stored JPEG is the largest thing a row has (an SA-1B photo passed through is ~0.5 MB) and
no model needs it. The decode task writes it to OUT/_work/blobs/SHARD/INDEX.jpg and the row goes
on with only that path, so the bytes never ride through the model actors (on a cluster: to the
GPU nodes and back). The shard commit reads them once, and removes the shard's folder after its
stats (the commit point) are written; the ledger sweeps what a killed run left of committed shards.
"""
from __future__ import annotations

from pixcap.schemas import batch as B

from .layout import blob as blob_path
from .storage import Storage


class BlobWriter:
    """Moves a batch's STORED bytes to blobs; the batch goes on with STORED_AT instead."""

    def __init__(self, storage: Storage):
        self.storage = storage

    def __call__(self, batch: dict) -> dict:
        paths, blobs = [], {}
        for shard, index, data in zip(batch[B.SHARD], batch[B.INDEX], batch[B.STORED]):
            path = blob_path(shard, index) if len(data) else ""  # a rejected row stores nothing
            if path:
                blobs[path] = bytes(data)
            paths.append(path)
        self.storage.write_many(blobs)
        out = {column: values for column, values in batch.items() if column != B.STORED}
        out[B.STORED_AT] = paths
        return out
