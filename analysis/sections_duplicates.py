"""The report's duplicates section: how many samples each `pixcap select --dedup` would drop."""
from __future__ import annotations

from typing import List

from .duplicate_counts import NEAR_COSINE
from .markup import Cell, note, number, percent, section, table
from .page import json_script
from .summary import OutputSummary

DUPLICATES_JSON_ID = "duplicates-data"


def _share(dropped, images: int) -> str:
    return "–" if dropped is None else f"{number(dropped)} ({percent(dropped, images)})"


def duplicates_section(summaries: List[OutputSummary]) -> str:
    rows = [[Cell(s.label, text_cell=True), s.table["images"], _share(s.duplicates.exact, s.table["images"]),
             _share(s.duplicates.near, s.table["images"])] for s in summaries]
    notes = [note(f"{s.label}: near duplicates {s.duplicates.near_note}.") for s in summaries if s.duplicates.near_note]
    data = [{"output": s.path, "label": s.label, "images": s.table["images"], "exact": s.duplicates.exact,
             "near": s.duplicates.near, "near_cosine": NEAR_COSINE} for s in summaries]
    return section(
        "duplicates", "Duplicates",
        table(["output", "images", "same bytes (sha256)", f"CLIP near duplicates (cosine ≥ {NEAR_COSINE:g})"], rows,
              element_id="duplicates-table"),
        *notes,
        note(f"How many samples `pixcap select OUT --dedup exact` and `--dedup clip:{NEAR_COSINE:g}` would drop, across "
             "the whole output: the first sample by key of each group stays. Same bytes are counted from 8 bytes of "
             "each sha256."),
        json_script(DUPLICATES_JSON_ID, data))
