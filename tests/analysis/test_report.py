"""`pixcap report` on small hand-made outputs: Table 1 equals `pixcap stats --json`, outputs sit
side by side, an output without rejects, and a page that fetches nothing."""
import json
import math
import re

import pytest

from pixcap.analysis.report import output_labels
from pixcap.analysis.sections_statistics import TABLE1_ID
from pixcap.analysis.stats import table_rows as table1_rows
from pixcap.analysis.summary import TOP_NOUNS

from tests.pipeline.synthetic_stats import write_stats

from .commands import run_analysis
from .outputs import reject, sample, small_output, write_output
from .report_page import table1_data, table_rows, urls


@pytest.fixture
def small(tmp_path):
    small_output(tmp_path / "small")
    return tmp_path / "small"


@pytest.fixture
def synthetic(tmp_path):
    """5,000 rows of made-up nouns in 5 shards, with no rejects and no tars: stats only."""
    write_stats(tmp_path / "synthetic", rows=5000, files=5)
    return tmp_path / "synthetic"


def report(capsys, path, *outputs, extra=()):
    code, out, err = run_analysis(capsys, "report", *outputs, "--output", path, *extra)
    assert code == 0, err
    assert str(path) in out
    return path.read_text()


def stats_json(capsys, output) -> dict:
    code, out, err = run_analysis(capsys, "stats", output, "--json")
    assert code == 0, err
    return json.loads(out)


def test_table1_in_the_report_is_what_pixcap_stats_prints(tmp_path, capsys, small):
    page = report(capsys, tmp_path / "r.html", small, extra=("--valid-min-count", "3"))
    [entry] = table1_data(page)
    code, out, _ = run_analysis(capsys, "stats", small, "--json", "--valid-min-count", "3")
    assert entry["table"] == json.loads(out) and entry["label"] == "small"
    shown = table_rows(page, TABLE1_ID)
    assert [row[1] for row in shown] == [value for _, value in table1_rows(entry["table"])]


def test_several_outputs_side_by_side(tmp_path, capsys, small, synthetic):
    page = report(capsys, tmp_path / "r.html", small, synthetic)
    data = table1_data(page)
    assert [d["label"] for d in data] == ["small", "synthetic"]
    for entry, output in zip(data, (small, synthetic)):
        assert entry["table"] == stats_json(capsys, output)
    assert all(len(row) == 3 for row in table_rows(page, TABLE1_ID))  # the name, then one column per output
    shards = table_rows(page, "shards")
    assert [row[0] for row in shards] == ["small"] * 2 + ["synthetic"] * 5
    assert sum(int(row[2].replace(",", "")) for row in shards) == 20 + 5000
    assert page.count('class="figure"') == 8 + 2  # a figure per distribution, the training fit, the VN curve
    assert page.count("<h3>synthetic</h3>") == 1 and page.count(f"<td>{TOP_NOUNS}</td>") == 1


def test_rejects_by_stage_and_reason_and_an_output_without_rejects(tmp_path, capsys, small, synthetic):
    page = report(capsys, tmp_path / "r.html", small, synthetic)
    rows = table_rows(page, "rejects-table")
    assert [r[:2] + r[3:] for r in rows] == [["decode", "decode_error", "2", "0"], ["decode", "empty_file", "1", "0"],
                                             ["all", "", "3", "0"]]
    assert "synthetic: no rejects." in page
    alone = report(capsys, tmp_path / "alone.html", synthetic)
    assert 'id="rejects-table"' not in alone and "synthetic: no rejects." in alone


def test_the_page_fetches_nothing(tmp_path, capsys, small):
    page = report(capsys, tmp_path / "r.html", small)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert urls(page) and all(url.startswith(("data:", "#")) for url in urls(page))
    assert page.count("data:image/jpeg;base64,") == 6 + 6 + 6  # lowest, median, highest thumbnails


def test_an_output_without_stats_exits_2(tmp_path, capsys, small):
    code, _, err = run_analysis(capsys, "report", small, tmp_path / "empty", "--output", tmp_path / "r.html")
    assert code == 2 and "no stats parquet" in err and not (tmp_path / "r.html").exists()
    code, _, err = run_analysis(capsys, "stats", tmp_path / "empty")
    assert code == 2 and "no stats parquet" in err


def test_labels_are_folder_names_unless_two_clash():
    assert output_labels(["/data/a/out", "/data/b/"]) == ["out", "b"]
    assert output_labels(["a/out", "b/out"]) == ["a/out", "b/out"]


def test_element_ids_are_unique(tmp_path, capsys, small, synthetic):
    page = report(capsys, tmp_path / "r.html", small, synthetic)
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_unscored_samples_and_a_shard_with_every_input_rejected(tmp_path, capsys):
    rows = [sample(f"u/k{i}", "u-00000", ["dog"], None) for i in range(3)]
    write_output(tmp_path / "u", {"u-00000": rows, "u-00001": []},
                 {"u-00001": [reject("u-00001", "u/bad", "decode", "decode_error")]})
    page = report(capsys, tmp_path / "r.html", tmp_path / "u")
    [entry] = table1_data(page)
    assert entry["table"]["images"] == 3 and math.isnan(entry["table"]["mean_clip_score"])
    assert table_rows(page, "shards") == [["u", "u-00000", "3", "0", "–"], ["u", "u-00001", "0", "1", "–"]]
    assert 'data-sort="NaN"' in page and "no scored samples" in page


def damaged(path, how: str) -> None:
    """A parquet file cut short (its footer gone), or with its first pages overwritten."""
    data = bytearray(path.read_bytes())
    if how == "cut":
        data = data[: len(data) // 2]
    else:
        data[8: len(data) // 2] = b"\xff" * (len(data) // 2 - 8)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("file,how", [("stats/p-00001.parquet", "cut"), ("stats/p-00001.parquet", "pages"),
                                      ("rejects/p-00000.parquet", "pages")])
def test_a_damaged_parquet_is_named_in_one_line(tmp_path, capsys, small, file, how):
    from pixcap.cli.main import main

    damaged(small / file, how)
    assert main(["report", str(small), "--output", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{small / file}: not a readable parquet" in err, err
    assert not (tmp_path / "r.html").exists()
