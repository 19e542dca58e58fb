"""`pixcap report`: one self-contained HTML file about one or more outputs, side by side.

Each output is summarised in one streaming pass (summary.py), then the page is put together from
the summaries alone, so the report's size and memory do not grow with the number of images.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
from typing import List, Optional, Sequence

from pixcap.output.layout import REJECTS

from .caption_length import T5TokenCounter
from .eval_results import split_report_inputs
from .markup import esc
from .page import render_page
from .parquet_check import reading_failed, unreadable_file
from .sections_duplicates import duplicates_section
from .sections_eval import model_sections
from .sections_provenance import provenance_section
from .sections_inspection import gallery_section, rejects_section, shards_section
from .sections_statistics import distributions_section, nouns_section, table1_section, training_fit_section
from .stats import VALID_NOUN_MIN_COUNT, output_files, stats_files
from .summary import OutputSummary, summarise_output

CONTENTS = (("table1", "Table 1"), ("distributions", "Distributions"), ("training-fit", "Training fit"),
            ("nouns", "Nouns"), ("duplicates", "Duplicates"), ("rejects", "Rejects"), ("shard-table", "Shards"),
            ("gallery", "Gallery"), ("provenance", "Models and settings"))


@dataclasses.dataclass
class Report:
    path: str
    bytes: int
    summaries: List[OutputSummary]


def output_labels(outputs: Sequence[str]) -> List[str]:
    """Short names for the outputs: folder names, or the paths as given where two folder names clash."""
    names = [os.path.basename(os.path.normpath(path)) or path for path in outputs]
    return [name if names.count(name) == 1 else path for name, path in zip(names, outputs)]


def _header(summaries: List[OutputSummary]) -> str:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if not summaries:  # evals and studies only: their sections say what they come from
        return f"<h1>pixcap report</h1><p class=\"note\">Made {when}.</p>"
    outputs = "".join(f"<li><b>{esc(s.label)}</b>: {esc(os.path.abspath(s.path))}</li>" for s in summaries)
    contents = " · ".join(f'<a href="#{anchor}">{esc(title)}</a>' for anchor, title in CONTENTS)
    return (f"<h1>pixcap report</h1><p class=\"note\">Made {when} from the stats and rejects parquet "
            f"(and, for the gallery, the shards) of:</p><ul>{outputs}</ul><nav>{contents}</nav>")


def render_report(summaries: List[OutputSummary], evals=(), study_files=()) -> str:
    """Outputs' sections (when any), then models' evals and user studies (when any)."""
    outputs = [
        table1_section(summaries),
        distributions_section(summaries),
        training_fit_section(summaries),
        nouns_section(summaries),
        duplicates_section(summaries),
        rejects_section(summaries),
        shards_section(summaries),
        gallery_section(summaries),
        provenance_section(summaries),
    ] if summaries else []
    body = "\n".join([_header(summaries), *outputs, *model_sections(list(evals), list(study_files))])
    return render_page("pixcap report: " + ", ".join([s.label for s in summaries] + [r.label for r in evals]), body)


def _summarised(path: str, label: str, counter, valid_min_count: int) -> OutputSummary:
    """summarise_output, or one line naming the damaged stats or rejects parquet that stopped it."""
    try:
        return summarise_output(path, label, counter, valid_min_count)
    except Exception as e:
        if not reading_failed(e):
            raise
        named = unreadable_file(stats_files(path) + output_files(path, REJECTS, "*.parquet"))
        if named is None:
            raise
        raise named from None


def write_report(outputs: Sequence[str], report_path: str, t5_tokenizer: Optional[str] = None,
                 valid_min_count: int = VALID_NOUN_MIN_COUNT) -> Report:
    """Summarise each output and write the report; FileNotFoundError names an output without stats."""
    counter = T5TokenCounter(t5_tokenizer) if t5_tokenizer else None
    outputs, evals, study_files = split_report_inputs(outputs)  # pixcap eval folders and study files too
    summaries = [_summarised(path, label, counter, valid_min_count)
                 for path, label in zip(outputs, output_labels(outputs))]
    page = render_report(summaries, evals, study_files).encode("utf-8")
    folder = os.path.dirname(os.path.abspath(report_path))
    os.makedirs(folder, exist_ok=True)
    partial = report_path + ".partial"
    with open(partial, "wb") as f:
        f.write(page)
    os.replace(partial, report_path)  # a reader never sees half a report
    return Report(report_path, len(page), summaries)
