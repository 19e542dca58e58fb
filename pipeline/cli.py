"""The `pixcap` command: run, stats, tiny-models, and the trainer's commands.

Exit codes: 0 success (rejected inputs do not fail a run), 2 a bad command line or job file
(one line naming the problem), 1 a failure.
"""
from __future__ import annotations

import argparse
import sys

from pixcap.schemas import JobError, load_job, read_job_yaml


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage dump -> our one line, exit code 2
        raise UsageError(f"{self.prog}: {message}")


def run_command(args) -> int:
    from .run import run_job

    data = read_job_yaml(args.job, args.set)
    if args.input:
        data["inputs"] = list(args.input)
    if args.output:
        data["output"] = args.output
    job = load_job(data)
    if not job.inputs:
        raise JobError("inputs: no inputs; list them in the job or pass --input")
    manifest = run_job(job, address=args.address)
    totals = manifest["totals"]
    print(
        f"pixcap: inputs {totals['inputs']} = written {totals['written']} + rejected {totals['rejected']}"
        f" in {totals['shards']} shards"
    )
    print(f"  shards    {job.output}/shards/*.tar")
    print(f"  stats     {job.output}/stats/*.parquet")
    print(f"  rejects   {job.output}/rejects/*.parquet")
    print(f"  manifest  {job.output}/manifest.json")
    from .stats import concept_density, format_table

    if totals["written"]:
        print("\nconcept density (pixcap stats):")
        print(format_table(concept_density(job.output)))
    return 0


def stats_command(args) -> int:
    from .stats import stats_command as run_stats

    try:
        return run_stats(args)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None


def tiny_models_command(args) -> int:
    from .tiny_models import build_tiny_models

    for name, path in build_tiny_models(args.dir).items():
        print(f"{name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pixcap", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="caption and score a collection into WebDataset shards")
    run.add_argument("job", help="job YAML file, e.g. jobs/local.yaml")
    run.add_argument("--input", action="append", help="input tar, folder, glob or URL (repeatable; replaces the job's)")
    run.add_argument("--output", help="output folder (replaces the job's)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a job key, e.g. caption.batch_size=4")
    run.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    run.set_defaults(func=run_command)

    stats = sub.add_parser("stats", help="print PixArt-alpha's concept-density table for an output")
    stats.add_argument("output", help="an output folder of pixcap run")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument("--valid-min-count", type=int, default=10, help="a valid noun appears more than this many times")
    stats.set_defaults(func=stats_command)

    tiny = sub.add_parser("tiny-models", help="build the tiny offline models (LLaVA, open_clip)")
    tiny.add_argument("dir")
    tiny.set_defaults(func=tiny_models_command)

    from pixcap.trainer.cli import register as register_trainer

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
