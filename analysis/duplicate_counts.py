"""How many samples each dedup of `pixcap select` would drop from an output, for the report.

Exact duplicates are counted in the report's one streaming pass, from 8 bytes of each sha256
(8 MB a million samples). Near duplicates need every CLIP embedding in memory at once, so they
are counted only up to NEAR_MAX_BYTES of embeddings; above that the report says so, and
`pixcap select OUT --dedup clip:0.95 --dry-run` counts them.
"""
from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixcap.schemas.manifest import EMBEDDINGS_DIR
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
    out_dir = os.path.dirname(os.path.dirname(stats_file))
    name = os.path.splitext(os.path.basename(stats_file))[0]
    return os.path.join(out_dir, EMBEDDINGS_DIR, f"{name}.npy")


def near_duplicate_count(stats_files: List[str], threshold: float = NEAR_COSINE,
                         max_bytes: int = NEAR_MAX_BYTES) -> Tuple[Optional[int], str]:
    """(samples `--dedup clip:threshold` drops, "") or (None, why it was not counted)."""
    shards, total = [], 0
    for stats in stats_files:
        rows = pq.read_metadata(stats).num_rows
        if not rows:
            continue
        path = _embeddings_file(stats)
        if not os.path.exists(path):
            return None, "no CLIP embeddings stored (an output made before pixcap stored them)"
        vectors = np.load(path, mmap_mode="r")  # the header only, until rows are taken
        if len(vectors) != rows:
            return None, f"{os.path.basename(path)} holds {len(vectors)} embeddings for {rows} samples"
        shards.append((stats, path))
        total += vectors.nbytes
    if not shards:
        return 0, ""
    if total > max_bytes:
        return None, (f"not counted here: {total / 2**20:,.0f} MiB of embeddings; "
                      f"`pixcap select OUT --dedup clip:{threshold:g} --dry-run` counts them")
    keys = np.concatenate([np.array(pq.read_table(stats, columns=[KEY]).column(KEY).to_pylist(), dtype=object)
                           for stats, _ in shards])
    vectors = np.concatenate([np.load(path) for _, path in shards])
    order = np.argsort(keys, kind="stable")  # select keeps the first by key
    return int(near_duplicates(vectors[order], threshold).sum()), ""
