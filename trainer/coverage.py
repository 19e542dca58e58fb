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
        self._first_key = None  # the first key read of the current shard
        self._since_first = 0

    def __call__(self, src):
        for sample in src:
            url, key = sample.get("__url__"), sample.get("__key__")
            # A new shard means the previous one was read to its end (or broke off). So does the current
            # shard's first key read again: resampling drew the same shard at once, which is all a stream
            # over one shard ever does. (A shard's keys are unique: pixcap writes one sample per key.)
            if url != self._current or (key == self._first_key and self._since_first):
                if self._current is not None:
                    self._ended.add(self._current)
                    if self.read_through is None and len(self._ended) >= self.shard_count:
                        self.read_through = self.read
                self._current, self._first_key, self._since_first = url, key, 0
            self.read += 1
            self._since_first += 1
            yield sample
