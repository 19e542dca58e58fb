"""The report's drill-down sections: rejects by stage and reason, the shard table, the gallery."""
from __future__ import annotations

from typing import List

from pixcap.schemas.records import N_GROUNDED, N_NOUNS
from pixcap.schemas.rejects import REASONS

from .markup import Cell, esc, note, numeric, section, table
from .summary import OutputSummary
from .thumbnails import Example

SHARDS_TABLE_ID = "shards"
GALLERY_GROUPS = (("lowest", "Lowest CLIP scores"), ("median", "Around the median CLIP score"),
                  ("highest", "Highest CLIP scores"))


def rejects_section(summaries: List[OutputSummary]) -> str:
    pairs = sorted({pair for s in summaries for pair in s.rejects.by_stage_reason})
    parts = []
    for s in summaries:
        if not s.rejects.total:
            parts.append(note(f"{s.label}: no rejects."))
    if pairs:
        rows = [[Cell(stage, text_cell=True), Cell(reason, text_cell=True), Cell(REASONS.get(reason, ""), text_cell=True),
                 *[s.rejects.by_stage_reason.get((stage, reason), 0) for s in summaries]] for stage, reason in pairs]
        rows.append([Cell("all", text_cell=True), "", "", *[s.rejects.total for s in summaries]])
        parts.insert(0, table(["stage", "reason", "meaning", *[s.label for s in summaries]], rows, element_id="rejects-table"))
    images = ", ".join(f"{s.label}: {s.table['images']:,} written, {s.rejects.total:,} rejected" for s in summaries)
    parts.append(note(f"Rejects of committed shards only. {images}."))
    return section("rejects", "Rejects by stage and reason", *parts)


def shards_section(summaries: List[OutputSummary]) -> str:
    rows = [[Cell(s.label, text_cell=True), Cell(shard.name, text_cell=True), numeric(shard.samples),
             numeric(shard.rejects), numeric(shard.mean_clip_score, 4)]
            for s in summaries for shard in s.shards]
    return section(
        "shard-table", "Shards",
        note("Click a column to sort by it: a shard with many rejects or a low mean CLIP score stands out."),
        '<div class="scroll">' + table(["output", "shard", "samples", "rejects", "mean clip_score"], rows,
                                       css_class="sortable", element_id=SHARDS_TABLE_ID) + "</div>")


def _card(example: Example) -> str:
    pick, record = example.pick, example.record
    image = (f'<img alt="{esc(pick.key)}" src="data:image/jpeg;base64,{example.thumbnail}">'
             if example.thumbnail else f'<p class="note">{esc(example.problem)}</p>')
    scores = f"clip_score {pick.clip_score:.4f}"
    if record:
        scores += f" · nouns {record.get(N_NOUNS, '–')} · grounded {record.get(N_GROUNDED, '–')}"
    return (f'<div class="card">{image}<div><b>{esc(scores)}</b></div>'
            f'<div class="note">{esc(pick.key)}</div><div class="caption">{esc(example.caption)}</div></div>')


def gallery_section(summaries: List[OutputSummary]) -> str:
    parts = [note("Thumbnails read from the shards, with their captions (KEY.txt) and scores: what a threshold means.")]
    for s in summaries:
        for group, title in GALLERY_GROUPS:
            examples = s.gallery.get(group, [])
            cards = "".join(_card(e) for e in examples) or '<p class="note">no scored samples</p>'
            parts.append(f"<h3>{esc(s.label)}: {esc(title)}</h3>" + f'<div class="gallery">{cards}</div>')
    return section("gallery", "Gallery", *parts)
