"""Blobs: each image's stored bytes, written to the output once, where the image was decoded.

The stored JPEG is the largest thing a row has (an SA-1B photo passed through is ~0.5 MB) and
no model needs it. The decode task writes it to OUT/_work/blobs/SHARD/INDEX.jpg and the row goes
on with only that path, so the bytes never ride through the model actors (on a cluster: to the
GPU nodes and back). A stage that makes another shard member from the stored image (a control map,
KEY.canny.png) has its bytes written beside it, INDEX.canny.png, and the row names those members.
The shard commit reads them once, and removes the shard's folder after its stats (the commit
point) are written; the ledger sweeps what a killed run left of committed shards.
"""
from __future__ import annotations

import typing

from pixcap.schemas import batch as B

from .layout import blob as blob_path
from .storage import Storage


class BlobWriter:
    """Moves a batch's STORED bytes to blobs; the batch goes on with STORED_AT instead. `members`:
    {member suffix: column} of other members' bytes (schemas/stages.py: blob_members), moved beside
    the image; a row names the ones it has in BLOB_MEMBERS."""

    def __init__(self, storage: Storage, members: typing.Mapping[str, str] = None):
        self.storage = storage
        self.members = dict(members or {})

    def __call__(self, batch: dict) -> dict:
        paths, names, blobs = [], [], {}
        n = len(batch[B.SHARD])
        reasons = batch[B.REJECT_REASON] if B.REJECT_REASON in batch else [""] * n
        for i, (shard, index, data) in enumerate(zip(batch[B.SHARD], batch[B.INDEX], batch[B.STORED])):
            stored = bool(len(data)) and not reasons[i]  # a rejected row stores nothing
            path = blob_path(shard, index) if stored else ""
            if path:
                blobs[path] = bytes(data)
            made = [member for member, column in self.members.items() if stored and len(batch[column][i])]
            for member in made:
                blobs[blob_path(shard, index, member)] = bytes(batch[self.members[member]][i])
            paths.append(path)
            names.append(made)
        self.storage.write_many(blobs)
        out = {column: values for column, values in batch.items()
               if column != B.STORED and column not in self.members.values()}
        out[B.STORED_AT] = paths
        out[B.BLOB_MEMBERS] = names
        return out
