"""Training fit: which of PixArt's aspect-ratio buckets each image falls in, and whether it covers
that bucket's size without upscaling, at 256, 512 and 1024.

The trainer assigns an image the bucket whose ratio (height / width) is nearest its own, the first
of equals on a tie, then resizes it to cover the bucket and crops. An image smaller than its bucket
on either side would be enlarged, which softens it: those are the images that do not fit. The
tables and the rule are schemas/buckets.py's (the trainer's too), vectorised here so a batch costs
one searchsorted rather than a Python call per image.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from pixcap.schemas.buckets import BUCKETS

RESOLUTIONS = tuple(sorted(BUCKETS))


class BucketTable:
    """One resolution's buckets as sorted arrays: ratio, height, width."""

    def __init__(self, resolution: int) -> None:
        table = BUCKETS[resolution]
        self.ratios = np.array(sorted(table), dtype=np.float64)
        self.heights = np.array([table[r][0] for r in self.ratios], dtype=np.int64)
        self.widths = np.array([table[r][1] for r in self.ratios], dtype=np.int64)

    def nearest(self, height: np.ndarray, width: np.ndarray) -> np.ndarray:
        """Index of each image's bucket, as schemas.buckets.nearest_bucket picks it."""
        ratio = height / width
        right = np.clip(np.searchsorted(self.ratios, ratio), 1, len(self.ratios) - 1)
        left = right - 1
        # The same subtraction the trainer's min() compares, so ties fall the same way: to the left.
        take_left = np.abs(self.ratios[left] - ratio) <= np.abs(self.ratios[right] - ratio)
        return np.where(take_left, left, right)


class TrainingFit:
    """Per resolution and bucket: images assigned to it, and those covering it without upscaling."""

    def __init__(self) -> None:
        self.tables = {res: BucketTable(res) for res in RESOLUTIONS}
        self.assigned = {res: np.zeros(len(t.ratios), dtype=np.int64) for res, t in self.tables.items()}
        self.covering = {res: np.zeros(len(t.ratios), dtype=np.int64) for res, t in self.tables.items()}

    def add(self, width: np.ndarray, height: np.ndarray) -> None:
        known = (width > 0) & (height > 0)
        width, height = width[known].astype(np.float64), height[known].astype(np.float64)
        if not len(width):
            return
        for res, table in self.tables.items():
            bucket = table.nearest(height, width)
            covers = (height >= table.heights[bucket]) & (width >= table.widths[bucket])  # schemas.buckets.covers
            n = len(table.ratios)
            self.assigned[res] += np.bincount(bucket, minlength=n)
            self.covering[res] += np.bincount(bucket[covers], minlength=n)

    def totals(self) -> Dict[int, tuple]:
        """resolution -> (images assigned, images covering their bucket)."""
        return {res: (int(self.assigned[res].sum()), int(self.covering[res].sum())) for res in RESOLUTIONS}
