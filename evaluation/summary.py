"""summary.json from the per-image scores: each metric's mean and image count, overall and per
category, GenEval's overall score (the mean of its tasks' accuracies) and the FID figures."""
from __future__ import annotations

import math
from typing import Dict, List

from pixcap.schemas import evaluation as e


def _mean(values: List[float]) -> dict:
    return {"mean": (sum(values) / len(values)) if values else None, "count": len(values)}


def summarise_scores(rows: List[dict]) -> dict:
    """{"images", "metrics", "geneval_overall"} from score rows (a null score is left out of its metric)."""
    metrics: Dict[str, dict] = {}
    for metric in e.SCORE_METRICS:
        by_category: Dict[str, List[float]] = {}
        for row in rows:
            value = row[metric]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            by_category.setdefault(row["category"], []).append(float(value))
        if not by_category:
            continue
        everything = [v for values in by_category.values() for v in values]
        metrics[metric] = {"overall": _mean(everything),
                           "categories": {c: _mean(by_category[c]) for c in sorted(by_category)}}
    tasks = metrics.get("geneval", {}).get("categories", {})
    accuracies = [tasks[c]["mean"] for c in e.GENEVAL_CATEGORIES if c in tasks]
    images_by_category: Dict[str, int] = {}
    for row in rows:
        images_by_category[row["category"]] = images_by_category.get(row["category"], 0) + 1
    return {e.SUMMARY_IMAGES: len(rows), "images_by_category": dict(sorted(images_by_category.items())),
            e.SUMMARY_METRICS: metrics,
            e.SUMMARY_GENEVAL_OVERALL: (sum(accuracies) / len(accuracies)) if accuracies else None}
