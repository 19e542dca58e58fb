"""Progress while a job runs: inputs read, captioned and written, and the rate.

Stages run in Ray workers, so each stage wrapper reports its row counts to one small actor;
the driver reads the counts and prints a line every `progress_seconds`.
"""
from __future__ import annotations

import time

import ray


@ray.remote(num_cpus=0)
class ProgressCounter:
    def __init__(self):
        self.counts = {}

    def add(self, stage: str, n: int) -> None:
        self.counts[stage] = self.counts.get(stage, 0) + n

    def get(self) -> dict:
        return dict(self.counts)


class ProgressPrinter:
    def __init__(self, counter, every_seconds: float, stream):
        self.counter = counter
        self.every = every_seconds
        self.stream = stream
        self.start = time.monotonic()
        self.last = self.start

    def maybe_print(self, written: int, rejected: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        counts = ray.get(self.counter.get.remote())
        elapsed = max(now - self.start, 1e-9)
        print(
            f"pixcap: read {counts.get('read', 0)} | decoded {counts.get('decode', 0)} | "
            f"captioned {counts.get('caption', 0)} | scored {counts.get('clip', 0)} | "
            f"committed {written} written + {rejected} rejected | {(written + rejected) / elapsed:.2f} inputs/s",
            file=self.stream,
            flush=True,
        )
