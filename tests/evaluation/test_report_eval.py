"""`pixcap report` with evals and study files: the models' scores side by side with the datasets'
Table 1, and the study's win rates."""
import json
import re

import pytest

from pixcap.analysis.report import write_report

from tests.analysis.outputs import small_output


def eval_data(html: str) -> list:
    return json.loads(re.search(r'<script type="application/json" id="eval-data">(.*?)</script>', html, re.S)
                      .group(1).replace("<\\/", "</"))


def test_report_shows_outputs_evals_and_a_study(tmp_path, finished_eval):
    out, summary = finished_eval
    small_output(str(tmp_path / "dataset"))
    other = json.loads(json.dumps(summary))
    other["metrics"]["clip_score"]["overall"]["mean"] = 0.5
    (tmp_path / "eval-z").mkdir()
    (tmp_path / "eval-z" / "summary.json").write_text(json.dumps(other))
    study = {"kind": "pixcap-study", "study": "s", "a": "eval-a", "b": "eval-z", "pairs": 10,
             "choices": [{"pair": i, "alignment": "a" if i < 7 else "b", "quality": "tie"} for i in range(10)]}
    (tmp_path / "study.json").write_text(json.dumps(study))
    report = write_report([str(tmp_path / "dataset"), str(out), str(tmp_path / "eval-z"), str(tmp_path / "study.json")],
                          str(tmp_path / "report.html"))
    assert [s.label for s in report.summaries] == ["dataset"]  # the one output; evals and studies apart
    html = (tmp_path / "report.html").read_text()
    assert 'id="concept-density"' in html and 'id="eval-scores"' in html and 'id="study-win-rates"' in html
    data = eval_data(html)
    assert [d["label"] for d in data] == ["eval-a", "eval-z"]
    assert data[0]["summary"] == summary and data[1]["summary"]["metrics"]["clip_score"]["overall"]["mean"] == 0.5
    table = re.search(r'<table id="eval-scores">.*?</table>', html, re.S).group(0)
    assert "<th>eval-a</th><th>eval-z</th>" in table
    assert f">{summary['metrics']['clip_score']['overall']['mean']:.3f}<" in table and ">0.500<" in table
    study_table = re.search(r'<table id="study-win-rates">.*?</table>', html, re.S).group(0)
    # 7 of 10 for A: Wilson 95% 39.7% .. 89.2%
    assert "70.0%" in study_table and "39.7% – 89.2%" in study_table


def test_report_of_evals_alone(tmp_path, finished_eval):
    from pixcap.cli.main import main

    out, summary = finished_eval
    assert main(["report", str(out), "--output", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert eval_data(html)[0]["summary"] == summary and 'id="concept-density"' not in html
