"""`pixcap ablate OUT --out ABL --train-job JOB.yaml`: does the better half of a dataset train the
better model? The recipe, as one command (it is seven otherwise):

1. two subsets of OUT with `pixcap select`: the top half by a stats column (default clip_score), and
   the samples below the top half's lowest value (the bottom half, ties at the cut left out);
2. the same train job on each (only shards and output differ);
3. `pixcap eval` of both models on one prompt set, with the same seeds, FID against OUT's shards;
4. one `pixcap report` with both subsets' Table 1 and both models' scores side by side.

Each step is resumable on its own terms (select and train continue, eval resumes), so the command
run again after a stop finishes the ablation. Folders: ABL/top, ABL/bottom (subsets),
ABL/runs/{top,bottom}, ABL/evals/{top,bottom}-model, ABL/report.html.
"""
from __future__ import annotations

import dataclasses
import io
import os
import sys
from typing import Optional, Sequence

from pixcap.schemas import JobError
from pixcap.output import layout
from pixcap.schemas.records import SAMPLE_SCHEMA

HALVES = ("top", "bottom")


@dataclasses.dataclass
class Ablation:
    subsets: dict
    runs: dict
    evals: dict
    summaries: dict
    report: str


def _lowest(subset: str, column: str) -> float:
    import duckdb

    pattern = layout.under(subset, layout.shard_glob("stats"))
    value = duckdb.sql(f"SELECT min(\"{column}\") FROM read_parquet('{pattern}')").fetchall()[0][0]
    if value is None:
        raise JobError(f"--by {column}: the top half has no {column} values")
    return float(value)


def _check_column(by: str) -> None:
    import pyarrow as pa

    if by not in SAMPLE_SCHEMA.names or not pa.types.is_floating(SAMPLE_SCHEMA.field(by).type) and \
            not pa.types.is_integer(SAMPLE_SCHEMA.field(by).type):
        numeric = [f.name for f in SAMPLE_SCHEMA if pa.types.is_floating(f.type) or pa.types.is_integer(f.type)]
        raise JobError(f"--by: {by!r} is not a numeric stats column; one of {', '.join(numeric)}")


def _select_halves(output_dir: str, out: str, by: str, say) -> dict:
    from pixcap.schemas.selection import Selection
    from pixcap.subsets.select import select_subset

    subsets = {half: os.path.join(out, half) for half in HALVES}
    select_subset(output_dir, subsets["top"], Selection(top_fraction=0.5, by=by),
                  command=["pixcap", "ablate", "top"], stream=io.StringIO())
    cut = _lowest(subsets["top"], by)
    select_subset(output_dir, subsets["bottom"], Selection(where=f'"{by}" < {cut!r}'),
                  command=["pixcap", "ablate", "bottom"], stream=io.StringIO())
    say(f"subsets: top half by {by} (>= {cut:.4g}) and the rest below it")
    return subsets


def _train(train_job: str, train_sets: Sequence[str], subset: str, run: str, say) -> None:
    from pixcap.schemas import load_train_job, read_job_yaml
    from pixcap.trainer.loop import train

    data = read_job_yaml(train_job, list(train_sets))
    data["shards"] = [layout.under(subset, layout.shard_glob("tar"))]
    data["output"] = run
    job = load_train_job(data)
    say(f"training on {subset} -> {run}")
    train(job)


def run_ablation(output_dir: str, out: str, train_job: str, by: str = "clip_score", prompts: str = "builtin",
                 eval_sets: Sequence[str] = (), train_sets: Sequence[str] = (), report: Optional[str] = None,
                 say=None) -> Ablation:
    from pixcap.analysis.report import write_report
    from pixcap.schemas.eval_job import load_eval_job
    from pixcap.schemas.job import set_dotted

    from .run import run_eval

    say = say or (lambda line: print(f"pixcap ablate: {line}", file=sys.stderr, flush=True))
    if not os.path.isfile(train_job):
        raise JobError(f"--train-job: no such file: {train_job}")
    _check_column(by)
    eval_data: dict = {}
    for item in eval_sets:
        set_dotted(eval_data, item)
    eval_job = load_eval_job(eval_data)  # refused here, before anything is selected or trained
    os.makedirs(out, exist_ok=True)
    subsets = _select_halves(output_dir, out, by, say)
    runs = {half: os.path.join(out, "runs", half) for half in HALVES}
    evals = {half: os.path.join(out, "evals", f"{half}-model") for half in HALVES}
    summaries = {}
    for half in HALVES:
        _train(train_job, train_sets, subsets[half], runs[half], say)
    for half in HALVES:
        say(f"evaluating {runs[half]}")
        summaries[half] = run_eval(runs[half], prompts, evals[half], eval_job, reference=output_dir, say=say)
    report = report or os.path.join(out, "report.html")
    write_report([subsets["top"], subsets["bottom"], evals["top"], evals["bottom"]], report)
    return Ablation(subsets, runs, evals, summaries, report)
