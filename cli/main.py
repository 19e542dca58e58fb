"""The `pixcap` command: one parser, with each package's subcommands registered on it.

The handlers live beside the code they call (pipeline/cli.py, analysis/cli.py, trainer/cli.py)
and only turn arguments into typed calls. Exit codes: 0 success (rejected inputs do not fail a
run), 2 a bad command line or job file (one line naming the problem), 1 a failure.
"""
from __future__ import annotations

import argparse
import sys

from pixcap.schemas import JobError


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage dump -> our one line, exit code 2
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    from pixcap.analysis.cli import register as register_analysis
    from pixcap.pipeline.cli import register as register_pipeline
    from pixcap.trainer.cli import register as register_trainer

    parser = _Parser(prog="pixcap", description="PixArt-alpha training data: caption, score, shard, analyse, train")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    register_pipeline(sub)
    register_analysis(sub)
    register_trainer(sub)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except (JobError, UsageError) as e:
        print(f"pixcap: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixcap: interrupted; run the same command again to continue", file=sys.stderr)
        return 1
    except Exception as e:  # one line for the user; the traceback is Ray's or in its logs
        print(f"pixcap: failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
