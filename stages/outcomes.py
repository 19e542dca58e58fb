"""Reject bookkeeping shared by the stages: which rows are live, and how a failure becomes a reject.

A stage never lets one bad row cost the batch: it runs live rows in chunks, and when a chunk
fails it runs that chunk's rows one by one, so only the row that breaks becomes a reject row
(with the stage's name, a reason from schemas/rejects.py, and a one-line error).
"""
from __future__ import annotations

import typing

from pixcap.schemas import batch as B

MAX_ERROR_CHARS = 500


def error_text(error: BaseException) -> str:
    """One line for the rejects table: the exception's type and the first line of its message."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:MAX_ERROR_CHARS]


class RowOutcomes:
    """The reject columns of a batch, as a stage extends them."""

    def __init__(self, batch: dict, stage: str):
        self.stage_name = stage
        self.stage = list(batch[B.REJECT_STAGE])
        self.reason = list(batch[B.REJECT_REASON])
        self.error = list(batch[B.REJECT_ERROR])

    def __len__(self) -> int:
        return len(self.reason)

    def live_rows(self) -> list:
        """Rows no stage has rejected so far."""
        return [i for i, reason in enumerate(self.reason) if not reason]

    def reject(self, i: int, reason: str, error: str = "") -> None:
        self.stage[i], self.reason[i], self.error[i] = self.stage_name, reason, error

    def columns(self) -> dict:
        return {B.REJECT_STAGE: self.stage, B.REJECT_REASON: self.reason, B.REJECT_ERROR: self.error}


def in_chunks(rows: list, size: int, run: typing.Callable[[list], None],
              on_failure: typing.Callable[[int, Exception], None]) -> None:
    """run(chunk) over rows in chunks of `size`; a failed chunk is run again row by row, and a
    row that fails alone goes to on_failure(row, error)."""
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        try:
            run(chunk)
        except Exception:  # one bad row must not cost its neighbours: retry them alone
            for i in chunk:
                try:
                    run([i])
                except Exception as e:
                    on_failure(i, e)
