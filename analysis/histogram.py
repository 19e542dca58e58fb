"""A fixed-bin histogram that streams: memory set by its bins, never by the rows it has seen.

The report's percentiles and plots come from these, so a million rows cost what a thousand do.
Bins are equal and fixed up front (numpy's histogram would need the range, and a merge of two
outputs' histograms would need the same edges anyway). Integer statistics get one bin per value,
so their percentiles are exact up to the cap; a float's percentile is interpolated within its bin,
so it is within one bin width of the exact one. Values beyond the range are counted beside the
bins, and the exact count, sum, min and max are kept too.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


class Histogram:
    def __init__(self, low: float, high: float, bins: int, integer: bool = False) -> None:
        self.low, self.high, self.bins, self.integer = float(low), float(high), int(bins), integer
        self.width = (self.high - self.low) / self.bins
        self.counts = np.zeros(self.bins + 2, dtype=np.int64)  # [below low, bins..., at or above high]
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")

    @classmethod
    def of_integers(cls, cap: int) -> "Histogram":
        """One bin per value 0..cap; larger values are counted as 'above' (max is still exact)."""
        return cls(-0.5, cap + 0.5, cap + 1, integer=True)

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        if not len(values):
            return
        index = np.floor((values - self.low) / self.width).astype(np.int64) + 1
        np.clip(index, 0, self.bins + 1, out=index)
        self.counts += np.bincount(index, minlength=self.bins + 2)
        self.count += len(values)
        self.sum += float(values.sum())
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else float("nan")

    def share_above(self, threshold: float) -> float:
        """The share of values greater than threshold (exact when threshold is a bin edge or, for
        integer histograms, an integer below the cap)."""
        if not self.count:
            return 0.0
        edge = int(np.floor((threshold - self.low) / self.width)) + 2  # first bin entirely above
        return float(self.counts[min(max(edge, 0), self.bins + 1):].sum()) / self.count

    def percentile(self, q: float) -> float:
        if not self.count:
            return float("nan")
        rank = q / 100 * self.count
        cumulative = np.cumsum(self.counts)
        i = int(np.searchsorted(cumulative, max(rank, 1e-9)))  # first bin whose cumulative reaches rank
        if i == 0:
            return self.min
        if i > self.bins:
            return self.max
        if self.integer:
            value = self.low + (i - 0.5) * self.width  # the bin's own value
        else:
            before = cumulative[i - 1]
            inside = (rank - before) / self.counts[i] if self.counts[i] else 0.0
            value = self.low + (i - 1 + inside) * self.width
        return float(min(max(value, self.min), self.max))

    def percentiles(self, qs: Sequence[float] = PERCENTILES) -> Dict[float, float]:
        return {q: self.percentile(q) for q in qs}

    def centers_and_counts(self) -> Tuple[np.ndarray, np.ndarray]:
        """The bins' centres and counts, without the out-of-range counters."""
        centers = self.low + (np.arange(self.bins) + 0.5) * self.width
        return centers, self.counts[1:-1]
