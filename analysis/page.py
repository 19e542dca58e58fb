"""The report's HTML document: one file, its style and script inline, nothing fetched.

The Content-Security-Policy makes "offline" a rule the browser enforces rather than a promise:
any URL the page tried to load would be refused (and show up as a console error in the browser
test). The script is the few lines a sortable table needs; when it has run it marks the document
with data-report-ready="yes", and any uncaught error counts itself in data-report-errors, so a
headless browser's DOM dump shows both.
"""
from __future__ import annotations

import html
import json

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-bottom: .3em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child, td.text { text-align: left; }
thead th { background: #f3f3f3; }
table.sortable thead th { cursor: pointer; user-select: none; }
table.sortable thead th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable thead th[aria-sort=descending]::after { content: " \\25BC"; }
.scroll { max-height: 480px; overflow: auto; display: inline-block; }
.row { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.note { color: #666; font-size: .9em; }
img.figure { width: 100%; height: auto; display: block; margin: .5em 0; }  /* SVG: drawn at the page's width */
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: .8em; }
.card { border: 1px solid #ddd; padding: .4em; font-size: .85em; }
.card img { display: block; max-width: 160px; max-height: 160px; margin: 0 auto .3em; }
.card .caption { max-height: 8em; overflow: auto; }
"""

# Runs first: counts uncaught errors on the document, for the headless browser test to read.
ERROR_COUNTER = """
window.addEventListener("error", function () {
  var root = document.documentElement;
  root.setAttribute("data-report-errors", String(Number(root.getAttribute("data-report-errors") || 0) + 1));
});
"""

# Click a header of a table.sortable to sort by it; cells with data-sort sort by that number.
SORTING = """
(function () {
  function value(row, i) {
    var cell = row.cells[i], sort = cell.getAttribute("data-sort");
    return sort === null ? cell.textContent.trim() : Number(sort);
  }
  function missing(v) { return typeof v === "number" && isNaN(v); }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener("click", function () {
        var up = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(table.tBodies[0].rows);
        rows.sort(function (a, b) {
          var x = value(a, i), y = value(b, i);
          if (missing(x) || missing(y)) return missing(x) - missing(y);  // no score: always last
          var order = x < y ? -1 : x > y ? 1 : 0;
          return up ? order : -order;
        });
        rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
      });
    });
  });
  document.documentElement.setAttribute("data-report-ready", "yes");
})();
"""


def json_script(element_id: str, data) -> str:
    """Data for machines (tests, scrapers) inside the page; '</' escaped so it cannot end the script."""
    text = json.dumps(data, indent=1).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def standalone_page(title: str, style: str, body: str, head_script: str = "", tail_script: str = "",
                    csp: str = CSP) -> str:
    """One HTML file that works offline and from disk: everything inline, nothing fetched (its CSP says so)."""
    head = f"<script>{head_script}</script>\n" if head_script else ""
    tail = f"<script>{tail_script}</script>\n" if tail_script else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{style}</style>
{head}</head>
<body>
{body}
{tail}</body>
</html>
"""


def render_page(title: str, body: str) -> str:
    return standalone_page(title, STYLE, body, head_script=ERROR_COUNTER, tail_script=SORTING)
