"""The report opened in a real headless browser: it renders, its script runs, the console stays
empty (no error, no refused fetch), and the figures shown are those of `pixcap stats --json`."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from pixcap.analysis.stats import table_rows as table1_rows

from tests.pipeline.synthetic_stats import write_stats

from .browser import render
from .commands import run_analysis
from .outputs import small_output
from .report_page import table1_data


def assert_renders(page_path, workdir):
    rendered = render(page_path, workdir)
    assert rendered.console == [], rendered.console  # the page logs nothing; anything here is a problem
    assert 'data-report-ready="yes"' in rendered.root_tag, rendered.root_tag  # the inline script ran
    assert "data-report-errors" not in rendered.root_tag, rendered.root_tag
    assert rendered.screenshot.stat().st_size > 20_000
    with Image.open(rendered.screenshot) as shot:
        assert shot.size == (1280, 4000)
        pixels = np.asarray(shot.convert("L"))
    inked = (pixels < 200).mean()
    assert inked > 0.01 and len(np.unique(pixels)) > 32, inked  # text and figures, not a blank page
    return rendered


def assert_shows_stats(capsys, rendered, outputs):
    for entry, output in zip(table1_data(rendered.dom), outputs):
        code, out, _ = run_analysis(capsys, "stats", output, "--json")
        assert code == 0 and entry["table"] == json.loads(out)
        for name, value in table1_rows(entry["table"]):
            assert re.search(rf"<td>{re.escape(value)}</td>", rendered.dom), (name, value)


def test_report_renders_in_a_headless_browser(tmp_path, capsys):
    small_output(tmp_path / "small")
    write_stats(tmp_path / "synthetic", rows=3000, files=3)
    outputs = (tmp_path / "small", tmp_path / "synthetic")
    code, _, err = run_analysis(capsys, "report", *outputs, "--output", tmp_path / "report.html")
    assert code == 0, err
    rendered = assert_renders(tmp_path / "report.html", tmp_path / "browser")
    assert_shows_stats(capsys, rendered, outputs)


@pytest.mark.slow
def test_report_on_a_pipeline_output_renders_in_a_headless_browser(tmp_path, capsys, pipeline_output):
    out, _ = pipeline_output
    code, _, err = run_analysis(capsys, "report", out, "--output", tmp_path / "report.html")
    assert code == 0, err
    rendered = assert_renders(tmp_path / "report.html", tmp_path / "browser")
    assert_shows_stats(capsys, rendered, (out,))
    assert rendered.dom.count('src="data:image/jpeg;base64,') > 0
