"""The pipeline's subcommands of `pixcap`: run and tiny-models (registered by pixcap.cli)."""
from __future__ import annotations

import sys

from pixcap.schemas import JobError, load_job, read_job_yaml
from pixcap.schemas.manifest import MANIFEST_NAME


def run_command(args) -> int:
    data = read_job_yaml(args.job, args.set)
    if args.input:
        data["inputs"] = list(args.input)
    if args.output:
        data["output"] = args.output
    job = load_job(data)
    if not job.inputs:
        raise JobError("inputs: no inputs; list them in the job or pass --input")
    # Only a job that can run loads Ray, torch and the models' libraries: a refusal takes well under a second.
    from pixcap.analysis.stats import concept_density, format_table

    from .run import run_job

    # On a terminal the progress bar draws on stderr itself; elsewhere (a log, --quiet) the run's lines go
    # through the `pixcap` logger, which the command shows on stderr.
    terminal = sys.stderr.isatty() and not getattr(args, "quiet", False)
    manifest = run_job(job, address=args.address, stream=sys.stderr if terminal else None,
                       command=["pixcap", *sys.argv[1:]], verbose=args.verbose)
    totals = manifest["totals"]
    print(
        f"pixcap: inputs {totals['inputs']} = written {totals['written']} + rejected {totals['rejected']}"
        f" in {totals['shards']} shards"
    )
    from pixcap.output import layout

    for kind, label in (("tar", "shards"), ("stats", "stats"), ("rejects", "rejects")):
        print(f"  {label:<9} {layout.under(job.output, layout.shard_glob(kind))}")
    print(f"  manifest  {layout.under(job.output, MANIFEST_NAME)}")
    if totals["written"]:
        print("\nconcept density (pixcap stats):")
        print(format_table(concept_density(job.output)))
    return 0


def verify_command(args) -> int:
    from pixcap.output.verify import verify_output

    problems = verify_output(args.output)
    for problem in problems:
        print(f"pixcap verify: {problem}")
    if problems:
        print(f"pixcap verify: {args.output}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"pixcap verify: {args.output}: every file matches the manifest")
    return 0


def tiny_models_command(args) -> int:
    from pixcap.models.tiny import build_tiny_models

    for name, path in build_tiny_models(args.dir).items():
        print(f"{name}: {path}")
    return 0


def register(subparsers) -> None:
    """Add the pipeline's subcommands; each sets func(args) -> exit code."""
    run = subparsers.add_parser("run", help="caption and score a collection into WebDataset shards")
    run.add_argument("job", help="job YAML file, e.g. jobs/local.yaml")
    run.add_argument("--input", action="append", help="input tar, folder, glob or URL (repeatable; replaces the job's)")
    run.add_argument("--output", help="output folder (replaces the job's)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a job key, e.g. caption.batch_size=4")
    run.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    run.add_argument("--verbose", action="store_true", help="show Ray's own messages here instead of in OUT/_logs")
    run.set_defaults(func=run_command)

    verify = subparsers.add_parser("verify", help="check every file of an output against its manifest (exit 1 on a mismatch)")
    verify.add_argument("output", help="an output folder or URL of pixcap run")
    verify.set_defaults(func=verify_command)

    tiny = subparsers.add_parser("tiny-models", help="build the tiny offline models (LLaVA, open_clip, T5, VAE, DiT)")
    tiny.add_argument("dir")
    tiny.set_defaults(func=tiny_models_command)
