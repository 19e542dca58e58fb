"""The console of the `pixcap` command: handlers for the `pixcap` logger, installed by the command only.

pixcap's messages go through `logging.getLogger("pixcap")` (modules log as `pixcap.<package>.<module>`).
The command shows them in the one-line form they always had, the text alone: info on stdout,
warnings and errors on stderr; `--quiet` keeps only the warnings and errors. A program or a notebook
that calls the library installs nothing of this: it silences pixcap with
`logging.getLogger("pixcap").setLevel(logging.WARNING)`, or sends it anywhere with its own handlers.
"""
from __future__ import annotations

import logging
import sys

LOGGER = "pixcap"


class _ConsoleHandler(logging.StreamHandler):
    """Writes to sys.stdout or sys.stderr as they are at each message, not as they were at set-up
    (pytest's capture and `contextlib.redirect_stdout` replace them)."""

    def __init__(self, stream_name: str):
        logging.Handler.__init__(self)
        self.stream_name = stream_name
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, value):  # StreamHandler.setStream; the stream is looked up at each message
        pass

    def handleError(self, record):
        # The reader of our output went away (`pixcap run ... | head`): the command exits 141 quietly,
        # where logging would print a "--- Logging error ---" report per message.
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            raise sys.exc_info()[1]
        super().handleError(record)


class _Below(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record) -> bool:
        return record.levelno < self.level


def configure_console(quiet: bool = False) -> logging.Logger:
    """Show the `pixcap` logger's messages on the console (once; a second call only sets the level)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        out, err = _ConsoleHandler("stdout"), _ConsoleHandler("stderr")
        out.addFilter(_Below(logging.WARNING))
        err.setLevel(logging.WARNING)
        logger.addHandler(out)
        logger.addHandler(err)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False  # a root handler (basicConfig, a framework's) must not print each line twice
    return logger
