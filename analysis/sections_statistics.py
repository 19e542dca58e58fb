"""The report's aggregate sections: Table 1, distributions, training fit, nouns.

Each output is a column (or a curve) side by side with the others, as PixArt's Table 1 sets
LAION, SAM-LLaVA and the rest side by side.
"""
from __future__ import annotations

from typing import List

from .caption_length import APPROXIMATION, T5_MAX_TOKENS
from .distributions import CAPTION_T5_TOKENS, DISTRIBUTIONS, OPTIONAL, SCORE_THRESHOLDS, score_distribution
from .histogram import Histogram
from .histogram import PERCENTILES
from .markup import Cell, esc, figure, note, number, numeric, percent, section, table
from .page import json_script
from .plots import bucket_fit_figure, distribution_figure, vn_curve_figure
from .stats import table_rows
from .summary import VN_THRESHOLDS, OutputSummary
from .training_fit import RESOLUTIONS

TABLE1_ID = "concept-density"
TABLE1_JSON_ID = "table1-data"  # the figures of `pixcap stats --json` for each output, for machines
VN_MARKS = (1, 5, 10, 20, 50, 100)


def table1_section(summaries: List[OutputSummary]) -> str:
    # An output of several captioners shows one column per captioner (its primary caption's is the first's).
    columns = [(f"{s.label}: {name}" if name else s.label, table)
               for s in summaries for name, table in (s.table.get("captioners") or {"": s.table}).items()]
    per_output = [table_rows(table) for _, table in columns]
    rows = [[Cell(name, text_cell=True)] + [rows[i][1] for rows in per_output] for i, (name, _) in enumerate(per_output[0])]
    data = [{"output": s.path, "label": s.label, "table": s.table} for s in summaries]
    return section("table1", "Concept density (PixArt-alpha's Table 1)",
                   table(["", *[label for label, _ in columns]], rows, element_id=TABLE1_ID),
                   note("The same figures, from the same code, as `pixcap stats --json` prints for each output."),
                   json_script(TABLE1_JSON_ID, data))


def _percentile_rows(name: str, summaries: List[OutputSummary], spec=None) -> tuple:
    spec = spec or DISTRIBUTIONS[name]
    digits = spec.digits
    headers = ["output", "images", "mean", "min", *[f"p{q}" for q in PERCENTILES], "max"]
    if name == CAPTION_T5_TOKENS:
        headers.append(f"> {T5_MAX_TOKENS} (truncated)")
    if spec is not DISTRIBUTIONS.get(name):  # a classifier's score: how many images each threshold would drop
        headers += [f"> {t:g}" for t in SCORE_THRESHOLDS]
    rows = []
    for s in summaries:
        h = s.histograms.get(name) or spec.new_histogram()
        p = h.percentiles()
        row = [Cell(s.label, text_cell=True), h.count, number(h.mean, max(digits, 2)),
               number(h.min if h.count else float("nan"), digits),
               *[number(p[q], digits) for q in PERCENTILES], number(h.max if h.count else float("nan"), digits)]
        if name == CAPTION_T5_TOKENS:
            row.append(f"{100 * h.share_above(T5_MAX_TOKENS):.1f}%")
        if spec is not DISTRIBUTIONS.get(name):
            row += [f"{round(h.share_above(t) * h.count)} ({100 * h.share_above(t):.1f}%)" for t in SCORE_THRESHOLDS]
        rows.append(row)
    return headers, rows


def distributions_section(summaries: List[OutputSummary]) -> str:
    parts = [note("Percentiles from fixed-bin histograms: exact for whole-number statistics, within one bin "
                  "(0.001 for clip_score, 0.005 for aspect ratio) for the others. Images without a value are left out.")]
    for name, spec in DISTRIBUTIONS.items():
        if name in OPTIONAL and not any(s.histograms[name].count for s in summaries):
            continue  # an optional stage no output ran
        series = [(s.label, s.histograms[name]) for s in summaries]
        headers, rows = _percentile_rows(name, summaries)
        parts.append(f'<h3 id="dist-{esc(name)}">{esc(spec.title)}</h3>')
        parts.append(figure(distribution_figure(spec, series), spec.title))
        parts.append(table(headers, rows))
        if name == CAPTION_T5_TOKENS:
            exact = [s.label for s in summaries if s.tokens_exact]
            parts.append(note(f"PixArt-alpha's T5 reads {T5_MAX_TOKENS} tokens; the rest of a longer caption is cut. "
                              + ("Counted with the T5 tokenizer given." if len(exact) == len(summaries)
                                 else f"Approximate: {APPROXIMATION}.")))
    for name in dict.fromkeys(column for s in summaries for column in s.scores):
        spec = score_distribution(name)
        series = [(s.label, s.histograms.get(name) or Histogram(0.0, 1.0, 1)) for s in summaries]
        headers, rows = _percentile_rows(name, summaries, spec)
        parts.append(f'<h3 id="dist-{esc(name)}">{esc(spec.title)}</h3>')
        parts.append(figure(distribution_figure(spec, series), spec.title))
        parts.append(table(headers, rows))
    return section("distributions", "Distributions", *parts)


def training_fit_section(summaries: List[OutputSummary]) -> str:
    headers = ["output", *[f"{res}: covering" for res in RESOLUTIONS]]
    rows = []
    for s in summaries:
        totals = s.fit.totals()
        rows.append([Cell(s.label, text_cell=True)]
                    + [f"{number(totals[r][1])} of {number(totals[r][0])} ({percent(totals[r][1], totals[r][0])})"
                       for r in RESOLUTIONS])
    detail_rows = []
    first = summaries[0].fit
    for b, ratio in enumerate(first.tables[RESOLUTIONS[0]].ratios):
        row = [f"{ratio:g}"]
        for res in RESOLUTIONS:
            t = first.tables[res]
            row.append(f"{t.heights[b]}×{t.widths[b]}")
            row += [f"{number(int(s.fit.covering[res][b]))} / {number(int(s.fit.assigned[res][b]))}" for s in summaries]
        detail_rows.append(row)
    detail_headers = ["ratio h/w"]
    for res in RESOLUTIONS:
        detail_headers += [f"{res} bucket", *[f"{res}: {s.label}" for s in summaries]]
    return section(
        "training-fit", "Training fit",
        note("Each image goes to the PixArt bucket whose height/width ratio is nearest its own (as the trainer "
             "assigns it); it covers the bucket when its stored height and width are both at least the bucket's, "
             "so it is cropped, never upscaled."),
        table(headers, rows),
        figure(bucket_fit_figure([(s.label, s.fit) for s in summaries]), "training fit by bucket"),
        "<details><summary>Per bucket: covering / assigned</summary>",
        table(detail_headers, detail_rows),
        "</details>")


def nouns_section(summaries: List[OutputSummary]) -> str:
    tops = []
    for s in summaries:
        total = s.table["total_nouns"]
        rows = [[i + 1, Cell(noun, text_cell=True), count, percent(count, total, 2)]
                for i, (noun, count) in enumerate(s.top_nouns)]
        tops.append(f"<div><h3>{esc(s.label)}</h3>" + table(["#", "noun", "count", "of all nouns"], rows) + "</div>")
    marks = [[Cell(s.label, text_cell=True), *[numeric(s.vn_curve[t - VN_THRESHOLDS.start]) for t in VN_MARKS]]
             for s in summaries]
    valid_min = summaries[0].table["valid_min_count"]
    return section(
        "nouns", "Nouns",
        f"<h3>Top {len(summaries[0].top_nouns)} nouns</h3>",
        '<div class="row">' + "".join(tops) + "</div>",
        "<h3>Valid distinct nouns (VN) by threshold</h3>",
        figure(vn_curve_figure(VN_THRESHOLDS, [(s.label, s.vn_curve) for s in summaries], valid_min), "VN by threshold"),
        table(["output", *[f"VN, > {t}" for t in VN_MARKS]], marks))
