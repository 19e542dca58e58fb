"""What `pixcap report` reads besides outputs: eval folders (EVAL/summary.json of `pixcap eval`) and
user-study choice files (the JSON a study page downloads), and the win rates those give.

Pure reading and arithmetic over the files' contracts (schemas/evaluation.py): no model, no torch.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Dict, List, Optional, Sequence

from pixcap.schemas import evaluation as e

Z_95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval


@dataclasses.dataclass
class EvalResult:
    path: str
    label: str
    summary: dict


@dataclasses.dataclass
class WinRate:
    aspect: str
    a: str  # model labels
    b: str
    a_wins: int
    b_wins: int
    ties: int
    rate: Optional[float]  # A's share of the decisive choices
    low: Optional[float]  # Wilson score interval, 95%
    high: Optional[float]
    files: int


def read_json(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_eval(path: str) -> bool:
    summary = read_json(os.path.join(path, e.EVAL_SUMMARY)) if os.path.isdir(path) else None
    return bool(summary) and summary.get(e.SUMMARY_KIND) == e.EVAL_KIND


def is_study(path: str) -> bool:
    data = read_json(path) if os.path.isfile(path) and path.endswith(".json") else None
    return bool(data) and data.get("kind") == e.STUDY_KIND


def read_eval(path: str, label: str) -> EvalResult:
    return EvalResult(path, label, read_json(os.path.join(path, e.EVAL_SUMMARY)))


def wilson(successes: int, n: int, z: float = Z_95) -> tuple:
    """(rate, low, high): the Wilson score interval, which stays within [0, 1] and is sound for few choices."""
    if n == 0:
        return None, None, None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return p, max(0.0, centre - half), min(1.0, centre + half)


def win_rates(paths: Sequence[str]) -> List[WinRate]:
    """Choices pooled over the files of each pair of models, per aspect (alignment, quality)."""
    pooled: Dict[tuple, dict] = {}
    for path in paths:
        study = read_json(path)
        key = (study["a"], study["b"])
        entry = pooled.setdefault(key, {"files": 0, **{aspect: [] for aspect in e.STUDY_ASPECTS}})
        entry["files"] += 1
        for choice in study.get("choices", []):
            for aspect in e.STUDY_ASPECTS:
                if choice.get(aspect) in e.STUDY_ANSWERS:
                    entry[aspect].append(choice[aspect])
    out = []
    for (a, b), entry in pooled.items():
        for aspect in e.STUDY_ASPECTS:
            answers = entry[aspect]
            a_wins, b_wins = answers.count("a"), answers.count("b")
            rate, low, high = wilson(a_wins, a_wins + b_wins)
            out.append(WinRate(aspect, a, b, a_wins, b_wins, answers.count("tie"), rate, low, high, entry["files"]))
    return out


def split_report_inputs(paths: Sequence[str]) -> tuple:
    """`pixcap report`'s arguments as (outputs, evals, study files): an eval folder holds a pixcap
    eval's summary.json, a study file is a study page's JSON download; anything else is an output."""
    outputs = [p for p in paths if not is_eval(p) and not is_study(p)]
    eval_paths = [p for p in paths if is_eval(p)]
    names = [os.path.basename(os.path.normpath(p)) for p in eval_paths]
    evals = [read_eval(p, name if names.count(name) == 1 else p) for p, name in zip(eval_paths, names)]
    return outputs, evals, [p for p in paths if is_study(p)]
