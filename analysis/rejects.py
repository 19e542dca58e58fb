"""Rejects of committed shards: counts by (stage, reason) and by shard, one small file at a time.

A rejects file counts only beside its stats file: the stats parquet is the commit, and a rejects
file without one is a crashed run's leftover that the next run removes.
"""
from __future__ import annotations

import os
from collections import Counter

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixcap.schemas.manifest import REJECTS_DIR
from pixcap.schemas.rejects import REASON, STAGE


def rejects_path(out_dir: str, shard: str) -> str:
    return os.path.join(out_dir, REJECTS_DIR, f"{shard}.parquet")


class RejectTally:
    def __init__(self) -> None:
        self.by_stage_reason: Counter = Counter()  # (stage, reason) -> rows
        self.total = 0

    def add_shard(self, out_dir: str, shard: str) -> int:
        """Count one committed shard's rejects; returns how many it has (0 when it has no file)."""
        path = rejects_path(out_dir, shard)
        if not os.path.exists(path):
            return 0
        rows = 0
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(columns=[STAGE, REASON]):
                pairs = pc.value_counts(pc.binary_join_element_wise(batch.column(STAGE), batch.column(REASON), "\0"))
                for pair, n in zip(pairs.field("values").to_pylist(), pairs.field("counts").to_pylist()):
                    self.by_stage_reason[tuple(pair.split("\0", 1))] += n
                rows += batch.num_rows
        self.total += rows
        return rows
