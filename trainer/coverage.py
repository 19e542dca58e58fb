"""When a resampled stream has read every shard of its share to its end at least once.

A resampled stream never ends, so filters or bucket settings that no sample passes would make a
data-loader worker skip samples forever, and the training wait on it in silence. Knowing how
many samples it took to read every shard through once lets `PrepareSamples` stop with one line
once all of those were skipped: then no sample of the share can ever pass.
"""
from __future__ import annotations


class ShareCoverage:
    """A stage over raw samples (before the shuffle buffer), which keeps their shard order."""

    def __init__(self, shard_count: int):
        self.shard_count = shard_count
        self.read = 0
        self.read_through = None  # samples read when every shard had been read to its end once
        self._ended = set()
        self._current = None

    def __call__(self, src):
        for sample in src:
            url = sample.get("__url__")
            if url != self._current:  # the previous shard was read to its end (or broke off)
                if self._current is not None:
                    self._ended.add(self._current)
                    if self.read_through is None and len(self._ended) >= self.shard_count:
                        self.read_through = self.read
                self._current = url
            self.read += 1
            yield sample
