"""Where everything lives inside an output: the one module that builds a path under it.

Paths are relative to the output's root, with forward slashes, so the same names serve a local
folder and an object store (Storage joins them to its root; `under` joins them to a URL).

    manifest.json, README.md, .pixcap.lock
    shards/SHARD.tar      the samples (webdataset)
    embeddings/SHARD.npy  CLIP image embeddings, one row per stats row
    rejects/SHARD.parquet the shard's reject rows (maybe none)
    stats/SHARD.parquet   the shard's records; written last, it is the commit
    _work/fragments/*.parquet   finished rows not yet committed
    _work/parts/PART.done       a part whose shards are all committed
    _work/blobs/SHARD/INDEX.jpg each image's stored bytes until its shard commits
    _work/blobs/SHARD/INDEX.canny.png   its other members (control maps), beside it
    _work/selection.parquet     a subset's plan of kept rows
    _logs/                      Ray's console output
"""
from __future__ import annotations

import posixpath
import typing

from pixcap.schemas.manifest import (
    BLOBS_DIR, EMBEDDINGS_DIR, FRAGMENTS_DIR, LOGS_DIR, PARTS_DIR, REJECTS_DIR, SHARDS_DIR, STATS_DIR, WORK_DIR,
)
from pixcap.schemas.records import IMAGE_EXT
from pixcap.schemas.selection import PLAN_NAME

SHARDS, STATS, REJECTS, EMBEDDINGS, LOGS = SHARDS_DIR, STATS_DIR, REJECTS_DIR, EMBEDDINGS_DIR, LOGS_DIR
FRAGMENTS = posixpath.join(WORK_DIR, FRAGMENTS_DIR)
PARTS = posixpath.join(WORK_DIR, PARTS_DIR)
BLOBS = posixpath.join(WORK_DIR, BLOBS_DIR)
PLAN = posixpath.join(WORK_DIR, PLAN_NAME)
DONE_SUFFIX = ".done"

# Each kind of a shard's files: its folder and its suffix.
SHARD_FILE_KINDS = {
    "tar": (SHARDS, ".tar"),
    "embeddings": (EMBEDDINGS, ".npy"),
    "rejects": (REJECTS, ".parquet"),
    "stats": (STATS, ".parquet"),
}
COMMITTED_FOLDERS = (SHARDS, EMBEDDINGS, STATS, REJECTS)
OWN_FOLDERS = ("", *COMMITTED_FOLDERS, FRAGMENTS, PARTS)  # where a temporary file of pixcap's can be


def shard_file(kind: str, shard: str) -> str:
    folder, suffix = SHARD_FILE_KINDS[kind]
    return f"{folder}/{shard}{suffix}"


def shard_files(shard: str) -> dict:
    """{kind: path} of a shard's files."""
    return {kind: shard_file(kind, shard) for kind in SHARD_FILE_KINDS}


def shard_names(file_names: typing.Iterable[str], kind: str) -> typing.List[str]:
    """The shard names of the files of one kind among file names (a folder's listing)."""
    suffix = SHARD_FILE_KINDS[kind][1]
    return [name[: -len(suffix)] for name in file_names if name.endswith(suffix)]


def fragment(name: str) -> str:
    return f"{FRAGMENTS}/{name}.parquet"


def part_marker(part_id: str) -> str:
    return f"{PARTS}/{part_id}{DONE_SUFFIX}"


def part_of_marker(file_name: str) -> typing.Optional[str]:
    return file_name[: -len(DONE_SUFFIX)] if file_name.endswith(DONE_SUFFIX) else None


def shard_blobs(shard: str) -> str:
    return f"{BLOBS}/{shard}"


def blob(shard: str, index: int, member: str = IMAGE_EXT) -> str:
    """The blob of one input's shard member (its image; a control map: member canny.png)."""
    # Named by the input's place, not by a random id: a retried task writes the same bytes to the
    # same name, and a row finished twice still has one blob.
    return f"{shard_blobs(shard)}/{int(index):06d}.{member}"


def under(output: str, relative: str) -> str:
    """A path inside an output given as a local folder or a URL (s3://bucket/out)."""
    return posixpath.join(output.rstrip("/"), relative) if relative else output


def shard_of(path: str) -> str:
    """The shard a shard file belongs to, from its path or URL (stats/SHARD.parquet -> SHARD)."""
    name = posixpath.basename(path)
    return name.rsplit(".", 1)[0]


def output_of(shard_file_path: str) -> str:
    """The output a shard file's path or URL lies in (OUT/stats/SHARD.parquet -> OUT)."""
    return posixpath.dirname(posixpath.dirname(shard_file_path))


def shard_glob(kind: str) -> str:
    """The pattern that matches every shard file of a kind (shards/*.tar), for a reader's data_files."""
    folder, suffix = SHARD_FILE_KINDS[kind]
    return f"{folder}/*{suffix}"
