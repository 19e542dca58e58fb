"""Small HTML builders for the report: escaped text, number formats, tables."""
from __future__ import annotations

import dataclasses
import html
import math
from typing import Optional, Sequence, Union


@dataclasses.dataclass(frozen=True)
class Cell:
    text: str
    sort: Optional[float] = None  # the number a sortable table sorts this cell by
    text_cell: bool = False  # left-aligned, as words are


CellLike = Union[Cell, str, int, float]


def esc(value) -> str:
    return html.escape(str(value))


def number(value: float, digits: int = 0) -> str:
    """Thousands separated; a missing value (NaN) prints as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def percent(part: float, whole: float, digits: int = 1) -> str:
    return f"{100.0 * part / whole:.{digits}f}%" if whole else "–"


def numeric(value: float, digits: int = 0) -> Cell:
    """A number shown formatted and sorted by its value (NaN sorts last)."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return Cell(number(value, digits), float("nan") if missing else float(value))


def _cell(cell: CellLike, tag: str) -> str:
    if not isinstance(cell, Cell):
        cell = Cell(number(cell) if isinstance(cell, int) and not isinstance(cell, bool) else str(cell))
    attrs = ""
    if cell.sort is not None:
        attrs += f' data-sort="{"NaN" if math.isnan(cell.sort) else repr(cell.sort)}"'
    if cell.text_cell:
        attrs += ' class="text"'
    return f"<{tag}{attrs}>{esc(cell.text)}</{tag}>"


def table(headers: Sequence[CellLike], rows: Sequence[Sequence[CellLike]], css_class: str = "",
          element_id: str = "") -> str:
    attrs = (f' class="{css_class}"' if css_class else "") + (f' id="{element_id}"' if element_id else "")
    head = "".join(_cell(h, "th") for h in headers)
    body = "\n".join("<tr>" + "".join(_cell(c, "td") for c in row) + "</tr>" for row in rows)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def figure(data_uri: str, alt: str) -> str:
    return f'<img class="figure" alt="{esc(alt)}" src="{data_uri}">'


def section(element_id: str, title: str, *parts: str) -> str:
    return f'<section id="{element_id}">\n<h2>{esc(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'
