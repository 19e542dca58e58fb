"""The pairwise user-study page in headless Chromium: it loads offline, a scripted click records a
choice in localStorage (kept across a reload), and the downloaded JSON holds it; `pixcap report`
turns such files into win rates with Wilson intervals."""
import json
import re
import shutil
import time

import pytest

from pixcap.analysis.eval_results import wilson, win_rates
from pixcap.evaluation.pairwise import study_pairs, write_study_page
from pixcap.schemas import JobError

from .cdp import Browser
from .conftest import tiny_eval_job


@pytest.fixture(scope="module")
def two_evals(tmp_path_factory, finished_eval, trained_run, models_cache):
    """eval-a (the session's) and eval-b: the same run on the same prompts with other sampler steps."""
    from pixcap.evaluation.run import run_eval

    out = tmp_path_factory.mktemp("evals-b") / "eval-b"
    run_eval(str(trained_run), "builtin", str(out), tiny_eval_job(models_cache, steps=3, prompts_per_category=1),
             say=lambda line: None)
    return finished_eval[0], out


def test_pairs_share_prompt_and_seed_in_random_order_and_sides(two_evals):
    a, b = two_evals
    pairs = study_pairs(str(a), str(b), seed=0)
    assert len(pairs) == 20
    for p in pairs:
        left, right = p["images"]
        assert ("eval-a" in left) == (p["left"] == "a") and ("eval-b" in right) == (p["left"] == "a")
        assert re.search(rf"_{p['image_index']:02d}\.png$", left)
    assert {p["left"] for p in pairs} == {"a", "b"}
    assert [p["prompt_id"] for p in pairs] != sorted(p["prompt_id"] for p in pairs)
    assert study_pairs(str(a), str(b), seed=0) == pairs and study_pairs(str(a), str(b), seed=1) != pairs


def test_pairwise_needs_two_finished_evals(tmp_path, two_evals):
    with pytest.raises(JobError, match="not a finished pixcap eval"):
        write_study_page(str(two_evals[0]), str(tmp_path), str(tmp_path / "s.html"))


def test_study_page_in_headless_chromium(tmp_path, two_evals):
    page = write_study_page(str(two_evals[0]), str(two_evals[1]), str(tmp_path / "study.html"), seed=0)
    pairs = study_pairs(str(two_evals[0]), str(two_evals[1]), seed=0)
    html = (tmp_path / "study.html").read_text()
    assert "http://" not in html and "https://" not in html
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = Browser(tmp_path)
    try:
        browser.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
        url = (tmp_path / "study.html").resolve().as_uri()
        browser.open(url, "document.documentElement.getAttribute('data-study-ready') === 'yes'")
        assert browser.evaluate("document.getElementById('progress').textContent").startswith("Pair 1 of 20")
        first = pairs[0]
        # the person prefers the left image for alignment and the right one for quality
        browser.evaluate("document.querySelector('button[data-aspect=alignment][data-side=left]').click()")
        assert browser.evaluate("document.getElementById('progress').getAttribute('data-done')") == "0"
        browser.evaluate("document.querySelector('button[data-aspect=quality][data-side=right]').click()")
        assert browser.evaluate("document.getElementById('progress').getAttribute('data-done')") == "1"
        assert browser.evaluate("document.getElementById('progress').textContent").startswith("Pair 2 of 20")
        stored = json.loads(browser.evaluate(f"localStorage.getItem('pixcap-study:{page.study}')"))
        left, right = first["left"], "b" if first["left"] == "a" else "a"
        assert stored["choices"][str(first["pair"])] == {"alignment": left, "quality": right}
        # a second pair, a tie on alignment
        browser.evaluate("document.querySelector('button[data-aspect=alignment][data-side=tie]').click()")
        browser.evaluate("document.querySelector('button[data-aspect=quality][data-side=left]').click()")
        # a reload keeps the choices and the place
        browser.open(url, "document.documentElement.getAttribute('data-study-ready') === 'yes'")
        assert browser.evaluate("document.getElementById('progress').getAttribute('data-done')") == "2"
        assert browser.evaluate("document.getElementById('progress').textContent").startswith("Pair 3 of 20")
        browser.evaluate("document.getElementById('download').click()")
        deadline = time.time() + 60
        while not [p for p in downloads.glob("*.json")]:
            assert time.time() < deadline, list(downloads.iterdir())
            time.sleep(0.1)
        assert browser.evaluate("document.documentElement.getAttribute('data-study-errors')") is None
    finally:
        browser.close()
    saved = next(downloads.glob("*.json"))
    assert saved.name == f"pixcap-study-{page.study}.json"
    time.sleep(0.2)
    result = json.loads(saved.read_text())
    assert result["kind"] == "pixcap-study" and (result["a"], result["b"]) == ("eval-a", "eval-b")
    assert len(result["choices"]) == 2
    one = result["choices"][0]
    assert (one["pair"], one["prompt_id"], one["seed"]) == (first["pair"], first["prompt_id"], first["seed"])
    assert (one["alignment"], one["quality"]) == (left, right)
    second_left = pairs[1]["left"]
    assert (result["choices"][1]["alignment"], result["choices"][1]["quality"]) == ("tie", second_left)
    # the report's win rates from the downloaded file
    copy = tmp_path / "second-person.json"
    shutil.copy(saved, copy)
    rates = {r.aspect: r for r in win_rates([str(saved), str(copy)])}
    expected_a = 2 * [left].count("a")
    assert (rates["alignment"].a_wins, rates["alignment"].b_wins, rates["alignment"].ties) == (expected_a, 2 - expected_a, 2)
    assert rates["alignment"].files == 2


def test_wilson_interval_known_values():
    """Wilson's 95% interval for 8 of 10: 0.4902 .. 0.9433 (the textbook figures); for 0 of 0: nothing."""
    rate, low, high = wilson(8, 10)
    assert rate == 0.8 and low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) == (None, None, None)
    rate, low, high = wilson(0, 5)
    assert low == 0.0 and high == pytest.approx(0.4345, abs=1e-4)
