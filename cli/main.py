"""The `pixcap` command: one parser, with each package's subcommands registered on it.

The handlers live beside the code they call (pipeline/cli.py, analysis/cli.py, trainer/cli.py)
and only turn arguments into typed calls. Exit codes: 0 success (rejected inputs do not fail a
run), 2 a bad command line or job file (one line naming the problem), 1 a failure, 143 stopped by
SIGTERM (Slurm, Kubernetes, kill; run the same command again to continue), 141 the reader of its
output went away (`pixcap stats OUT | head`), quietly.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from pixcap.schemas import JobError

from .console import LOGGER, configure_console


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

    def __init__(self, message: str, prog: str = "pixcap"):
        super().__init__(message)
        self.prog = prog  # "pixcap run": the line says which command's usage was wrong


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, except where there is none to show (None, empty, a flag)."""

    def _get_help_string(self, action):
        default = action.default
        if default is None or default == [] or default == "" or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        if "help" not in kwargs and kwargs.get("default") is not None:  # argparse shows no default without a help
            kwargs["help"] = "(default: %(default)s)"
        return super().add_argument(*args, **kwargs)

    def error(self, message):  # argparse's usage dump -> our one line, exit code 2
        raise UsageError(message, self.prog)


def _version() -> str:
    import pixcap

    return f"pixcap {pixcap.__version__}"


def build_parser() -> argparse.ArgumentParser:
    from pixcap.analysis.cli import register as register_analysis
    from pixcap.evaluation.cli import register as register_evaluation
    from pixcap.pipeline.cli import register as register_pipeline
    from pixcap.subsets.cli import register as register_select
    from pixcap.trainer.cli import register as register_trainer

    from .jobs import register as register_jobs

    parser = _Parser(prog="pixcap", description="PixArt-alpha training data: caption, score, shard, analyse, train")
    parser.add_argument("-V", "--version", action="version", version=_version())
    parser.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    register_pipeline(sub)
    register_select(sub)
    register_analysis(sub)
    register_trainer(sub)
    register_evaluation(sub)
    register_jobs(sub)
    for command in sub.choices.values():  # --quiet after the command too; SUPPRESS keeps one given before it
        command.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                             help="print only warnings and errors")
    return parser


def main(argv=None) -> int:
    previous = _handle_sigterm()
    level = logging.getLogger(LOGGER).level  # a --quiet command does not quiet what its caller does next
    try:
        args = build_parser().parse_args(argv)
        configure_console(quiet=args.quiet)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
        return code
    except Terminated:
        _say(STOPPED)
        return SIGTERM_EXIT
    except BrokenPipeError:
        _quiet_after_broken_pipe()
        return BROKEN_PIPE_EXIT
    except UsageError as e:
        _say(f"{e.prog}: error: {e}")
        return 2
    except JobError as e:
        _say(f"pixcap: error: {e}")
        return 2
    except KeyboardInterrupt:
        _say("pixcap: interrupted; run the same command again to continue")
        return 1
    except Exception as e:  # one line for the user; the traceback is Ray's or in its logs
        _say(f"pixcap: failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return 1
    finally:
        logging.getLogger(LOGGER).setLevel(level)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
