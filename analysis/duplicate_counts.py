"""How many samples each dedup of `pixcap select` would drop from an output, for the report.

Exact duplicates are counted in the report's one streaming pass, from 8 bytes of each sha256
(8 MB a million samples). Near duplicates need every CLIP embedding in memory at once, so they
are counted only up to NEAR_MAX_BYTES of embeddings; above that the report says so, and
`pixcap select OUT --dedup clip:0.95 --dry-run` counts them.
"""
from __future__ import annotations

import dataclasses
import io
from typing import List, Optional, Tuple

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixcap.output import layout
from pixcap.schemas.records import KEY

from .duplicates import near_duplicates, sha256_prefixes

NEAR_COSINE = 0.95  # the report's threshold, NeMo Curator's and the example
NEAR_MAX_BYTES = 256 << 20  # embeddings the report loads to count near duplicates (about 170,000 at 768-d)


@dataclasses.dataclass
class DuplicateCounts:
    exact: int  # samples `--dedup exact` drops
    near: Optional[int]  # samples `--dedup clip:NEAR_COSINE` drops; None when not counted
    near_note: str = ""  # why near duplicates were not counted


class ExactTally:
    """sha256 prefixes gathered batch by batch into one array sized up front (8 bytes a sample,
    no copies: the report's memory may grow by little more than that with the rows); the count at the end."""

    def __init__(self, rows: int) -> None:
        self.prefixes = np.empty(rows, dtype=np.uint64)
        self.filled = 0

    def add(self, sha256: pa.Array) -> None:
        n = len(sha256)
        if n:
            self.prefixes[self.filled:self.filled + n] = sha256_prefixes(sha256)
            self.filled += n

    def count(self) -> int:
        """How many samples `--dedup exact` would drop, up to a shared 8-byte prefix (sorted in place)."""
        prefixes = self.prefixes[:self.filled]
        prefixes.sort()
        distinct = 1 + int(np.count_nonzero(prefixes[1:] != prefixes[:-1])) if len(prefixes) else 0
        self.prefixes = np.empty(0, dtype=np.uint64)
        return len(prefixes) - distinct


def _embeddings_file(stats_file: str) -> str:
    return layout.under(layout.output_of(stats_file), layout.shard_file("embeddings", layout.shard_of(stats_file)))


def _embedding_rows(path: str) -> Optional[int]:
    """Rows of a stored .npy from its header alone (on any fsspec filesystem); None when missing."""
    try:
        with fsspec.open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = header(f)
    except FileNotFoundError:
        return None
    return shape[0]


def _nbytes(path: str) -> int:
    fs, root = fsspec.core.url_to_fs(path)
    return fs.size(root)


def _keys(stats: str) -> list:
    with fsspec.open(stats, "rb") as f:
        return pq.read_table(f, columns=[KEY]).column(KEY).to_pylist()


def _load(path: str) -> np.ndarray:
    with fsspec.open(path, "rb") as f:
        return np.load(io.BytesIO(f.read()))


def near_duplicate_count(stats_files: List[str], threshold: float = NEAR_COSINE,
                         max_bytes: int = NEAR_MAX_BYTES) -> Tuple[Optional[int], str]:
    """(samples `--dedup clip:threshold` drops, "") or (None, why it was not counted)."""
    shards, total = [], 0
    for stats in stats_files:
        with fsspec.open(stats, "rb") as f:
            rows = pq.read_metadata(f).num_rows
        if not rows:
            continue
        path = _embeddings_file(stats)
        stored = _embedding_rows(path)
        if stored is None:
            return None, "no CLIP embeddings stored (an output made before pixcap stored them)"
        if stored != rows:
            return None, f"{layout.shard_of(path)}.npy holds {stored} embeddings for {rows} samples"
        shards.append((stats, path))
        total += _nbytes(path)
    if not shards:
        return 0, ""
    if total > max_bytes:
        return None, (f"not counted here: {total / 2**20:,.0f} MiB of embeddings; "
                      f"`pixcap select OUT --dedup clip:{threshold:g} --dry-run` counts them")
    keys = np.concatenate([np.array(_keys(stats), dtype=object) for stats, _ in shards])
    vectors = np.concatenate([_load(path) for _, path in shards])
    order = np.argsort(keys, kind="stable")  # select keeps the first by key
    return int(near_duplicates(vectors[order], threshold).sum()), ""
