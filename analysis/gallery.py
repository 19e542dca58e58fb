"""Which samples the gallery shows: the few with the lowest, the median and the highest CLIP scores.

Lowest and highest are kept while the report's one pass streams by (a bounded list per end).
The median is known only after that pass, from the histogram, so a second pass reads three
small columns (key, shard, clip_score) and keeps the few scores nearest it. Ties fall by key, so
the same output always shows the same samples.
"""
from __future__ import annotations

import dataclasses
from typing import List

import numpy as np
import pyarrow as pa

from pixcap.schemas.records import CLIP_SCORE, KEY, SHARD

from .stats import iter_batches

PER_GROUP = 6  # thumbnails per group (lowest, median, highest)
COLUMNS = [KEY, SHARD, CLIP_SCORE]


@dataclasses.dataclass(frozen=True, order=True)
class Pick:
    clip_score: float
    key: str
    shard: str


def _picks(batch: pa.RecordBatch, rows: np.ndarray, scores: np.ndarray) -> List[Pick]:
    keys, shards = batch.column(KEY), batch.column(SHARD)
    return [Pick(float(scores[i]), keys[int(i)].as_py(), shards[int(i)].as_py()) for i in rows]


def _scores(batch: pa.RecordBatch) -> np.ndarray:
    """clip_score as float64, NaN where null (so a null is never picked)."""
    return batch.column(CLIP_SCORE).to_numpy(zero_copy_only=False).astype(np.float64)


class ScoreExtremes:
    """The PER_GROUP lowest and highest clip_score samples of all batches added."""

    def __init__(self, k: int = PER_GROUP) -> None:
        self.k = k
        self.lowest: List[Pick] = []
        self.highest: List[Pick] = []

    def add(self, batch: pa.RecordBatch) -> None:
        scores = _scores(batch)
        valid = np.flatnonzero(~np.isnan(scores))
        if not len(valid):
            return
        order = valid[np.argsort(scores[valid], kind="stable")]
        low, high = order[: self.k], order[-self.k:]
        self.lowest = sorted(self.lowest + _picks(batch, low, scores))[: self.k]
        self.highest = sorted(self.highest + _picks(batch, high, scores), key=lambda p: (-p.clip_score, p.key))[: self.k]


def nearest_scores(stats_paths: List[str], value: float, k: int = PER_GROUP) -> List[Pick]:
    """The k samples whose clip_score is nearest value, in score order (a pass over 3 columns)."""
    best: List[tuple] = []  # (distance, key, pick)
    for path in stats_paths:
        for batch in iter_batches(path, COLUMNS):
            scores = _scores(batch)
            distance = np.abs(scores - value)
            valid = np.flatnonzero(~np.isnan(distance))
            near = valid[np.argsort(distance[valid], kind="stable")[:k]]
            best = sorted(best + [(abs(p.clip_score - value), p.key, p) for p in _picks(batch, near, scores)])[:k]
    return sorted(p for _, _, p in best)
