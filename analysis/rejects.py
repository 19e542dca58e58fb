"""Rejects of committed shards: counts by (stage, reason) and by shard, one small file at a time.

A rejects file counts only beside its stats file: the stats parquet is the commit, and a rejects
file without one is a crashed run's leftover that the next run removes.
"""
from __future__ import annotations

from collections import Counter

import fsspec
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixcap.output import layout
from pixcap.schemas.rejects import REASON, STAGE


def rejects_path(out_dir: str, shard: str) -> str:
    return layout.under(out_dir, layout.shard_file("rejects", shard))


class RejectTally:
    def __init__(self) -> None:
        self.by_stage_reason: Counter = Counter()  # (stage, reason) -> rows
        self.total = 0

    def add_shard(self, out_dir: str, shard: str) -> int:
        """Count one committed shard's rejects; returns how many it has (0 when it has no file)."""
        path = rejects_path(out_dir, shard)
        fs, fs_path = fsspec.core.url_to_fs(path)
        if not fs.exists(fs_path):
            return 0
        rows = 0
        with fs.open(fs_path, "rb") as f, pq.ParquetFile(f) as parquet:
            for batch in parquet.iter_batches(columns=[STAGE, REASON]):
                pairs = pc.value_counts(pc.binary_join_element_wise(batch.column(STAGE), batch.column(REASON), "\0"))
                for pair, n in zip(pairs.field("values").to_pylist(), pairs.field("counts").to_pylist()):
                    self.by_stage_reason[tuple(pair.split("\0", 1))] += n
                rows += batch.num_rows
        self.total += rows
        return rows


def rejects_by_reason(out_dir: str) -> Counter:
    """{reason: rows} over the rejects of the output's committed shards."""
    from .stats import stats_files

    tally = RejectTally()
    try:
        files = stats_files(out_dir)
    except FileNotFoundError:
        files = []
    for stats in files:
        tally.add_shard(out_dir, layout.shard_of(stats))
    reasons = Counter()
    for (_, reason), n in tally.by_stage_reason.items():
        reasons[reason] += n
    return reasons


def format_rejects(out_dir: str) -> str:
    """The rejects by reason, as `pixcap stats` prints them under Table 1."""
    reasons = rejects_by_reason(out_dir)
    if not reasons:
        return "\nrejected: none"
    width = max(map(len, reasons))
    lines = [f"  {reason:<{width}}  {n:>12,}" for reason, n in reasons.most_common()]
    return f"\nrejected: {sum(reasons.values()):,} inputs, by reason\n" + "\n".join(lines)
