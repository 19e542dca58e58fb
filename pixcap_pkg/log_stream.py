"""A file-like object whose lines become log records: where the library writes its one-line messages
(and its progress lines) to a `stream` and the caller gave none, they go to the `pixcap` logger, so
that a program or a notebook silences or redirects them with `logging`, as with any library."""
from __future__ import annotations

import logging


class LogStream:
    """write() collects text; each complete line is logged at `level` on `logger`. Never a TTY: the
    progress bar draws only on a terminal stream the caller passes itself (`pixcap run` does)."""

    def __init__(self, logger: logging.Logger, level: int = logging.INFO):
        self.logger, self.level, self.pending = logger, level, ""

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        for line in lines:
            if line:
                self.logger.log(self.level, line)
        return len(text)

    def flush(self) -> None:
        """A partial line stays until its end arrives: a record is one whole line."""

    def isatty(self) -> bool:
        return False
