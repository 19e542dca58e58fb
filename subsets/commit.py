"""One shard of a subset, cut from the parent shard of the same name: its kept samples' tar
members copied as they are (nothing decoded, captioned or re-encoded), their stats rows and
embedding rows taken in order, and an empty rejects file.

The commit is pipeline/commit.py's: tar, embeddings, rejects, then the stats parquet, which is
the commit point; every file appears whole. Each parent file is hashed as it is read and must
match the parent's manifest, so a damaged parent is refused rather than copied.
"""
from __future__ import annotations

import hashlib
import io
import re
import tarfile
from typing import Callable, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixcap.schemas import rejects as R
from pixcap.schemas.manifest import (
    SHARD_META_BYTES, SHARD_META_EMBEDDINGS_SHA256, SHARD_META_REJECTED, SHARD_META_REJECTS_SHA256, SHARD_META_SHA256,
)
from pixcap.schemas.records import KEY

from pixcap.output.layout import shard_files
from pixcap.output.parquet import parquet_bytes
from pixcap.output.storage import Storage

FAILPOINT = "subset_commit"  # between a subset shard's tar and its stats (pipeline/failpoints.py)
# webdataset's rule: a member's sample key is its path up to the first dot of its file name.
MEMBER_KEY = re.compile(r"^((?:.*/|)[^./]+)\.[^/]*$")
READ_BLOCK = 1 << 20


class ParentDamaged(RuntimeError):
    """A parent file differs from what the parent's manifest says."""


class HashingReader:
    """A read-only file wrapper that hashes what passes through it."""

    def __init__(self, f):
        self.f, self.digest = f, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.digest.update(data)
        return data

    def drain(self) -> str:
        """Read to the end (a tar's padding, which tarfile stops short of) and return the sha256."""
        while self.read(READ_BLOCK):
            pass
        return self.digest.hexdigest()


def _member_key(name: str) -> str:
    match = MEMBER_KEY.match(name)
    return match.group(1) if match else name


def _checked(parent: Storage, entry: dict) -> bytes:
    data = parent.read_bytes(entry["path"])
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ParentDamaged(f"parent file {entry['path']} differs from its manifest; run `pixcap verify` on the parent")
    return data


def _copy_members(parent: Storage, entry: dict, keys: set, sink) -> set:
    """Copy the members of the kept samples from the parent tar into the tar stream `sink`;
    returns the keys found."""
    found = set()
    with parent.open(entry["path"]) as raw:
        source = HashingReader(raw)
        with tarfile.open(fileobj=source, mode="r|") as tar:
            for member in tar:
                key = _member_key(member.name)
                if key in keys:
                    sink.addfile(member, tar.extractfile(member) if member.isfile() else None)
                    found.add(key)
        if source.drain() != entry["sha256"]:
            raise ParentDamaged(f"parent file {entry['path']} differs from its manifest; run `pixcap verify` on the parent")
    return found


def _write_parquet(storage: Storage, path: str, table: pa.Table) -> dict:
    return _write_bytes(storage, path, parquet_bytes(table))  # no rows: no row group (output/parquet.py)


def _write_bytes(storage: Storage, path: str, data: bytes) -> dict:
    with storage.writer(path) as f:
        f.write(data)
    return {"bytes": f.bytes, "sha256": f.digest.hexdigest()}


def commit_subset_shard(parent: Storage, entry: dict, subset: Storage, rows: List[int], keys: List[str],
                        failpoint: Callable[[str], None]) -> dict:
    """Cut the parent shard `entry` (from the parent's manifest) down to `rows` (positions in its
    stats, ascending, with these keys) and commit it in the subset. Returns its files' sizes and hashes."""
    name = entry["name"]
    paths = shard_files(name)
    stats = pq.read_table(io.BytesIO(_checked(parent, entry["stats"])))
    kept = stats.take(pa.array(rows, pa.int64()))
    if kept.column(KEY).to_pylist() != keys:
        raise RuntimeError(f"parent shard {name}: its stats no longer hold the planned samples")
    files = {}
    with subset.writer(paths["tar"]) as f:
        with tarfile.open(fileobj=f, mode="w|") as sink:
            found = _copy_members(parent, entry["tar"], set(keys), sink)
        missing = set(keys) - found
        if missing:  # raised inside the writer: the tar is not published
            raise ParentDamaged(f"parent shard {name}: {len(missing)} samples of its stats are not in its tar "
                                f"(e.g. {sorted(missing)[0]})")
    files[paths["tar"]] = {"bytes": f.bytes, "sha256": f.digest.hexdigest()}
    if entry.get("embeddings"):
        vectors = np.load(io.BytesIO(_checked(parent, entry["embeddings"])), allow_pickle=False)[rows]
        buffer = io.BytesIO()
        np.save(buffer, vectors, allow_pickle=False)
        files[paths["embeddings"]] = _write_bytes(subset, paths["embeddings"], buffer.getvalue())
    # A subset rejects nothing itself: what the parent rejected stays in the parent's rejects.
    files[paths["rejects"]] = _write_parquet(subset, paths["rejects"], R.REJECT_SCHEMA.empty_table())
    failpoint(FAILPOINT)
    tar = files[paths["tar"]]
    kept = kept.replace_schema_metadata({
        SHARD_META_BYTES: str(tar["bytes"]), SHARD_META_SHA256: tar["sha256"], SHARD_META_REJECTED: "0",
        SHARD_META_REJECTS_SHA256: files[paths["rejects"]]["sha256"],
        SHARD_META_EMBEDDINGS_SHA256: files.get(paths["embeddings"], {}).get("sha256", ""),
    })
    files[paths["stats"]] = _write_parquet(subset, paths["stats"], kept)
    return {"name": name, "samples": len(rows), "files": files}
