"""The `pixcap` command: run, stats, tiny-models, and the trainer's commands.

Exit codes: 0 success (rejected inputs do not fail a run), 2 a bad command line or job file
(one line naming the problem), 1 a failure.
"""
from __future__ import annotations

import argparse
import sys

from pixcap.schemas import JobError


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixcap", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    # Each subcommand sets func(args) -> exit code.
    from pixcap.trainer.cli import register as register_trainer

    register_trainer(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (JobError, UsageError) as e:
        print(f"pixcap: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixcap: interrupted; run the same command again to continue", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
