"""The report's model sections: eval summaries side by side (a table per metric and category, a
figure), and the user study's win rates with their 95% intervals."""
from __future__ import annotations

from typing import List

from pixcap.schemas import evaluation as e

from .eval_results import EvalResult, WinRate
from .markup import Cell, figure, note, number, section, table
from .page import json_script

EVAL_TABLE_ID = "eval-scores"
EVAL_JSON_ID = "eval-data"
STUDY_TABLE_ID = "study-win-rates"
METRIC_TITLES = {
    "clip_score": "CLIP score (cosine)", "attribute_binding": "attribute binding (BLIP-VQA)",
    "object": "objects (GenEval)", "counting": "counting (GenEval)", "colour": "colour (GenEval)",
    "position": "position (GenEval)", "geneval": "GenEval, per image", "spatial": "2D spatial (T2I-CompBench)",
}


def _figure(value, digits=3) -> Cell:
    return Cell(number(value, digits) if value is not None else "–", float("nan") if value is None else float(value))


def _overall_rows(evals: List[EvalResult]) -> list:
    rows = [[Cell("images", text_cell=True), *[e_.summary[e.SUMMARY_IMAGES] for e_ in evals]]]
    for metric, title in METRIC_TITLES.items():
        cells = []
        for result in evals:
            figures = result.summary[e.SUMMARY_METRICS].get(metric)
            cells.append(_figure(figures["overall"]["mean"]) if figures else _figure(None))
        rows.append([Cell(title, text_cell=True), *cells])
    rows.append([Cell("GenEval overall (mean of its 6 tasks)", text_cell=True),
                 *[_figure(r.summary[e.SUMMARY_GENEVAL_OVERALL]) for r in evals]])
    rows.append([Cell("FID (Inception)", text_cell=True), *[_figure(r.summary[e.SUMMARY_FID].get("fid"), 2) for r in evals]])
    rows.append([Cell("CLIP-FID", text_cell=True), *[_figure(r.summary[e.SUMMARY_FID].get("clip_fid"), 4) for r in evals]])
    return rows


def _category_rows(evals: List[EvalResult]) -> list:
    rows = []
    for metric, title in METRIC_TITLES.items():
        categories = sorted({c for r in evals for c in r.summary[e.SUMMARY_METRICS].get(metric, {}).get("categories", {})})
        for category in categories:
            cells = []
            for result in evals:
                figures = result.summary[e.SUMMARY_METRICS].get(metric, {}).get("categories", {}).get(category)
                cells.append(Cell(f"{number(figures['mean'], 3)} ({figures['count']})") if figures else Cell("–"))
            rows.append([Cell(title, text_cell=True), Cell(category, text_cell=True), *cells])
    return rows


def _bars(evals: List[EvalResult]) -> str:
    from .eval_plots import eval_bars_figure

    metrics = [m for m in METRIC_TITLES if any(m in r.summary[e.SUMMARY_METRICS] for r in evals)]
    series = [(r.label, [(r.summary[e.SUMMARY_METRICS].get(m) or {}).get("overall", {}).get("mean") for m in metrics])
              for r in evals]
    return figure(eval_bars_figure(metrics, series), "eval scores by model")


def eval_section(evals: List[EvalResult]) -> str:
    labels = [r.label for r in evals]
    data = [{"eval": r.path, "label": r.label, "summary": r.summary} for r in evals]
    return section(
        "models", "Models: pixcap eval",
        note("Each column is one `pixcap eval` of a trained pipeline; every model saw the same prompts with the "
             "same seeds. Scores are means over images; a score is counted only on the prompts that ask it."),
        table(["", *labels], _overall_rows(evals), element_id=EVAL_TABLE_ID),
        _bars(evals),
        "<h3>Per category (mean, images)</h3>",
        table(["metric", "category", *labels], _category_rows(evals), css_class="sortable"),
        json_script(EVAL_JSON_ID, data))


def study_section(rates: List[WinRate]) -> str:
    rows = [[Cell(f"{r.a} vs {r.b}", text_cell=True), Cell(r.aspect, text_cell=True), r.a_wins, r.b_wins, r.ties,
             Cell("–" if r.rate is None else f"{100 * r.rate:.1f}%"),
             Cell("–" if r.rate is None else f"{100 * r.low:.1f}% – {100 * r.high:.1f}%"), r.files]
            for r in rates]
    return section(
        "study", "User study: pairwise choices",
        table(["models (A vs B)", "aspect", "A chosen", "B chosen", "ties", "A's win rate", "95% interval", "files"],
              rows, element_id=STUDY_TABLE_ID),
        note("A's win rate is its share of the choices that were not ties; the interval is Wilson's score "
             "interval. Files of the same two models are pooled."))


def model_sections(evals: List[EvalResult], study_files: List[str]) -> List[str]:
    """The eval and study sections of a report, for those given (none: nothing)."""
    from .eval_results import win_rates

    parts = [eval_section(evals)] if evals else []
    if study_files:
        parts.append(study_section(win_rates(study_files)))
    return parts
