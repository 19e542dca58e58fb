"""`pixcap eval` (and its --pairwise study page) and `pixcap ablate`, registered by pixcap.cli.

Handlers turn arguments into typed calls and return the exit code; a bad command line raises
JobError (exit code 2, one line). torch and the models are imported inside the handlers.
"""
from __future__ import annotations

from pixcap.schemas import JobError

DEFAULT_PROMPTS = "builtin"


def eval_job_from(args):
    from pixcap.schemas import read_job_yaml
    from pixcap.schemas.eval_job import load_eval_job
    from pixcap.schemas.job import set_dotted

    data = read_job_yaml(args.job, []) if args.job else {}
    for item in args.set:
        set_dotted(data, item)
    if args.images_per_prompt is not None:
        data["images_per_prompt"] = args.images_per_prompt
    return load_eval_job(data)


def eval_command(args) -> int:
    if args.pairwise:
        if args.source or len(args.pairwise) != 2:
            raise JobError("--pairwise takes two eval folders: pixcap eval --pairwise EVAL_A EVAL_B --output study.html")
        from .pairwise import write_study_page

        page = write_study_page(args.pairwise[0], args.pairwise[1], args.output, seed=args.study_seed)
        print(f"pixcap: study page with {page.pairs} pairs written to {page.path}")
        return 0
    if not args.source:
        raise JobError("eval: name a training run or a pipeline folder (or --pairwise EVAL_A EVAL_B)")
    job = eval_job_from(args)
    from .run import run_eval  # it quiets the model libraries once the command line is found good

    summary = run_eval(args.source, args.prompts, args.output, job, reference=args.reference)
    from .table import format_summary

    print(format_summary(summary))
    return 0


def ablate_command(args) -> int:
    from .ablation import run_ablation
    from .generate import quiet_loading

    quiet_loading()

    result = run_ablation(args.output_dir, args.out, args.train_job, by=args.by, prompts=args.prompts,
                          eval_sets=args.set, train_sets=args.train_set, report=args.report)
    print(f"pixcap: ablation report written to {result.report}")
    return 0


def register(subparsers) -> None:
    """Add `eval` and `ablate`; each sets func(args) -> exit code."""
    ev = subparsers.add_parser("eval", help="generate a prompt set with a trained pipeline and score it "
                                            "(GenEval, T2I-CompBench, CLIP score, FID); or write a pairwise study page")
    ev.add_argument("source", nargs="?", help="a training run (RUN_DIR/pipeline) or a diffusers PixArt folder")
    ev.add_argument("--prompts", default=DEFAULT_PROMPTS,
                    help="builtin, geneval, compbench, or a .jsonl/.txt prompt file (default builtin)")
    ev.add_argument("--output", required=True, help="the EVAL folder (or, with --pairwise, the HTML page)")
    ev.add_argument("--images-per-prompt", type=int, help="images per prompt (default 4)")
    ev.add_argument("--reference", help="FID reference: a pixcap output, shard tars (glob) or an image folder")
    ev.add_argument("--job", help="an eval job YAML (keys of schemas/eval_job.py)")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an eval job key, e.g. vqa.model=PATH or fid.inception=PATH")
    ev.add_argument("--pairwise", nargs="+", metavar="EVAL", help="two eval folders: write a user-study page")
    ev.add_argument("--study-seed", type=int, default=0, help="the study page's order and sides")
    ev.set_defaults(func=eval_command)

    ab = subparsers.add_parser("ablate", help="the data ablation: two subsets of an output, the same training "
                                              "on each, both evaluated, one report")
    ab.add_argument("output_dir", metavar="OUT", help="a pixcap output folder")
    ab.add_argument("--out", required=True, help="the ablation folder (subsets, runs, evals, report.html)")
    ab.add_argument("--train-job", required=True, help="the train job YAML both subsets train with")
    ab.add_argument("--by", default="clip_score", help="the stats column that splits the output in halves")
    ab.add_argument("--prompts", default=DEFAULT_PROMPTS, help="the prompt set both models are evaluated on")
    ab.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an eval job key")
    ab.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE", help="a train job key")
    ab.add_argument("--report", default=None, help="the report file (default OUT/report.html)")
    ab.set_defaults(func=ablate_command)
