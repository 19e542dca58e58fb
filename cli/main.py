"""The `pixcap` command: one parser, with each package's subcommands registered on it.

The handlers live beside the code they call (pipeline/cli.py, analysis/cli.py, trainer/cli.py)
and only turn arguments into typed calls. Exit codes: 0 success (rejected inputs do not fail a
run), 2 a bad command line or job file (one line naming the problem), 1 a failure, 143 stopped by
SIGTERM (Slurm, Kubernetes, kill; run the same command again to continue), 141 the reader of its
output went away (`pixcap stats OUT | head`), quietly.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from pixcap.schemas import JobError


SIGTERM_EXIT = 143  # 128 + SIGTERM: what a shell reports for a process SIGTERM stopped
BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE: what `yes | head` reports for yes
STOPPED = "pixcap: stopped by SIGTERM; run the same command again to continue"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread wherever it is, so that the run's finally blocks run
    (the commit pool stops, the output lock is released). An interrupt, like Ctrl-C: no
    `except Exception` on the way takes it for an error, and the run records it as stopped."""


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second SIGTERM must not cut the clean-up short
    raise Terminated()


def _handle_sigterm():
    """Install the SIGTERM handler (the main thread only may); returns the previous one."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def _quiet_after_broken_pipe() -> None:
    """The reader of our output is gone: point stdout and stderr at /dev/null, so that nothing
    more (Python's flush at exit included) tries to write to the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            pass
    os.close(devnull)


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except BrokenPipeError:
        _quiet_after_broken_pipe()


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage dump -> our one line, exit code 2
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    from pixcap.analysis.cli import register as register_analysis
    from pixcap.pipeline.cli import register as register_pipeline
    from pixcap.subsets.cli import register as register_select
    from pixcap.trainer.cli import register as register_trainer

    parser = _Parser(prog="pixcap", description="PixArt-alpha training data: caption, score, shard, analyse, train")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    register_pipeline(sub)
    register_select(sub)
    register_analysis(sub)
    register_trainer(sub)
    return parser


def main(argv=None) -> int:
    previous = _handle_sigterm()
    try:
        args = build_parser().parse_args(argv)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
        return code
    except Terminated:
        _say(STOPPED)
        return SIGTERM_EXIT
    except BrokenPipeError:
        _quiet_after_broken_pipe()
        return BROKEN_PIPE_EXIT
    except (JobError, UsageError) as e:
        _say(f"pixcap: error: {e}")
        return 2
    except KeyboardInterrupt:
        _say("pixcap: interrupted; run the same command again to continue")
        return 1
    except Exception as e:  # one line for the user; the traceback is Ray's or in its logs
        _say(f"pixcap: failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
