"""Progress while a job runs: parts and inputs done, the rate, an ETA, and what stalls.

Stages run in Ray workers, so each stage wrapper reports its row counts (and the read stage its
bytes) to one small actor. A timer thread in the driver reads them: on a terminal it draws a
live bar; elsewhere (a log file, a cluster job) it prints one line every `progress_seconds`,
whether or not a batch has arrived. When nothing moves for `stall_seconds`, it says which stage
waits and on what.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import ray

# Counter names besides the stages': parts read through, their bytes, and the inputs they held.
PARTS_READ, PARTS_READ_BYTES, PARTS_READ_INPUTS = "parts_read", "parts_read_bytes", "parts_read_inputs"


@ray.remote(num_cpus=0)
class ProgressCounter:
    def __init__(self):
        self.counts = {}

    def add(self, stage: str, n: int) -> None:
        self.counts[stage] = self.counts.get(stage, 0) + n

    def get(self) -> dict:
        return dict(self.counts)


@dataclass
class Committed:
    """What the driver has committed so far; updated by the driver, read by the timer thread."""

    parts: int = 0
    written: int = 0
    rejected: int = 0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    def __init__(self, counter, parts: int, part_bytes: int, every_seconds: float, stall_seconds: float, stream,
                 stages: tuple, waiting=lambda: ""):
        self.stages = tuple(stages)  # the counted stages in graph order (schemas/stages.py: progress_stages)
        self.counter, self.parts, self.part_bytes = counter, parts, max(part_bytes, 1)
        self.every, self.stall_seconds, self.stream, self.waiting = every_seconds, stall_seconds, stream, waiting
        self.committed = Committed()
        self.counts = {}
        self._seen = None  # what _refresh saw last: counts and commits; a change resets the stall clock
        self.start = time.monotonic()
        self.last_change = self.start
        self._printed = None  # the counts of the last line printed in log mode: an unchanged one is not repeated
        self.stop_event = threading.Event()
        self.bar = self._bar() if getattr(stream, "isatty", lambda: False)() else None
        self.thread = threading.Thread(target=self._loop, name="pixcap-progress", daemon=True)

    def _bar(self):
        from tqdm import tqdm

        return tqdm(total=None, unit="input", file=self.stream, dynamic_ncols=True, desc="pixcap", leave=True)

    def __enter__(self) -> "Progress":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)
        self._refresh()
        self._show(final=True)
        if self.bar is not None:
            self.bar.close()

    def _refresh(self) -> None:
        try:
            counts = ray.get(self.counter.get.remote(), timeout=5)
        except Exception:  # Ray going down at the end of a run: keep the last counts
            return
        seen = (counts, self.committed.written, self.committed.rejected)
        if seen != self._seen:
            self._seen, self.last_change = seen, time.monotonic()
        self.counts = counts

    def _loop(self) -> None:
        interval = 0.5 if self.bar is not None else self.every
        last_line = time.monotonic()
        while not self.stop_event.wait(interval):
            self._refresh()
            now = time.monotonic()
            if self.bar is not None or now - last_line >= self.every:
                self._show()
                last_line = now
            if now - self.last_change >= self.stall_seconds:
                self._say(f"pixcap: no stage has moved for {_duration(now - self.last_change)}; {self._stalled()}")
                self.last_change = now  # say it again only after another stall_seconds

    def _stalled(self) -> str:
        stages = self.stages
        ahead = [stage for stage in stages if self.counts.get(stage, 0) > 0]
        stage = stages[stages.index(ahead[-1]) + 1] if ahead and ahead[-1] != stages[-1] else (ahead[-1] if ahead else stages[0])
        waits = self.waiting() or "Ray reports nothing pending"
        return f"{stage} waits: {waits}"

    def done(self) -> int:
        """Inputs through every stage (the last stage's count), or committed, whichever is more: the
        line moves from the first batch that the last stage finishes, not only at the first commit."""
        return max(self.counts.get(self.stages[-1], 0), self.committed.written + self.committed.rejected)

    def estimate(self, final: bool = False) -> tuple:
        """(inputs expected in this run, or None while unknown; seconds left, or None).
        The total counts inputs (images, and what is rejected), not the sidecars beside them: it is
        the inputs of the parts read through, and for the rest of the bytes the same inputs per byte.
        Until a first part is read through, it is unknown."""
        if final:
            return self.committed.written + self.committed.rejected, None
        parts_bytes, parts_inputs = self.counts.get(PARTS_READ_BYTES, 0), self.counts.get(PARTS_READ_INPUTS, 0)
        if not parts_bytes:
            return None, None
        unread = max(self.part_bytes - parts_bytes, 0)
        expected = max(parts_inputs + round(unread * parts_inputs / parts_bytes), self.counts.get(self.stages[0], 0))
        done = self.done()
        elapsed = time.monotonic() - self.start
        left = (expected - done) * elapsed / done if done else None
        return expected, left

    def stage_counts(self) -> str:
        return " | ".join(f"{stage} {self.counts.get(stage, 0)}" for stage in self.stages)

    def line(self, final: bool = False) -> str:
        expected, left = self.estimate(final)
        c = self.committed
        total = "" if final or not expected else f"/~{expected}"
        rate = self.done() / max(time.monotonic() - self.start, 1e-9)
        eta = f" | ETA {_duration(left)}" if left is not None else ""
        return (f"parts {c.parts}/{self.parts} | inputs {self.done()}{total} done, {c.written + c.rejected} committed "
                f"({c.written} written + {c.rejected} rejected) | {self.stage_counts()} | {rate:.2f} inputs/s{eta}")

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _show(self, final: bool = False) -> None:
        if self.bar is None:
            state = (self.counts, self.committed.parts, self.committed.written, self.committed.rejected)
            if final or state != self._printed:  # a log gets a line when something moved, not the same line again
                self._printed = dict(self.counts), *state[1:]
                self._say(f"pixcap: {self.line(final)}")
            return
        expected, _ = self.estimate(final)
        self.bar.total = expected
        self.bar.n = self.done()
        c = self.committed
        self.bar.set_postfix_str(f"parts {c.parts}/{self.parts}, {c.written + c.rejected} committed, {c.rejected} rejected"
                                 f" | {self.stage_counts()}", refresh=False)
        self.bar.refresh()
