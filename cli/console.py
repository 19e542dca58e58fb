"""The console of the `pixcap` command: a handler for the `pixcap` logger, installed by the command only.

pixcap's messages (progress, notices, warnings, errors) go through `logging.getLogger("pixcap")`
(modules log as `pixcap.<package>.<module>`). The command shows them on stderr in the one-line form
they always had, the text alone; `--quiet` keeps only the warnings and errors. What a command
produces (the run's summary, `pixcap stats`' table, paths written) is printed on stdout, not logged.
A program or a notebook that calls the library installs nothing of this: it silences pixcap with
`logging.getLogger("pixcap").setLevel(logging.WARNING)`, or sends it anywhere with its own handlers.
"""
from __future__ import annotations

import logging
import sys

LOGGER = "pixcap"


class _ConsoleHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is at each message, not as it was at set-up (pytest's capture and
    `contextlib.redirect_stderr` replace it)."""

    def __init__(self):
        logging.Handler.__init__(self)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.setStream; the stream is looked up at each message
        pass

    def handleError(self, record):
        # The reader of our output went away (`pixcap run ... | head`): the command exits 141 quietly,
        # where logging would print a "--- Logging error ---" report per message.
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            raise sys.exc_info()[1]
        super().handleError(record)


def configure_console(quiet: bool = False) -> logging.Logger:
    """Show the `pixcap` logger's messages on stderr (installed once; a second call only sets the level)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False  # a root handler (basicConfig, a framework's) must not print each line twice
    return logger
