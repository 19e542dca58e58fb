"""One output's summary: nouns, shards, rejects, gallery picks and caption lengths, from a small
hand-made output whose every figure is known."""
from collections import Counter

import duckdb
import numpy as np
import pytest

from pixcap.analysis.caption_length import T5_MAX_TOKENS, T5TokenCounter, approximate_t5_tokens
from pixcap.analysis.gallery import nearest_scores
from pixcap.analysis.stats import concept_density, stats_files
from pixcap.analysis.summary import VN_THRESHOLDS, summarise_output, valid_noun_curve

from .outputs import sample, small_output, write_output


@pytest.fixture
def small(tmp_path):
    small_output(tmp_path)
    return tmp_path


def stats_rows(out, columns):
    return duckdb.sql(f"select {columns} from '{out}/stats/*.parquet'").fetchall()


def test_table_and_nouns_are_those_of_pixcap_stats(small):
    summary = summarise_output(str(small), "small", batch_rows=3)  # batches smaller than a shard
    assert summary.table == concept_density(str(small))
    counts = Counter(noun for (nouns,) in stats_rows(small, "nouns") for noun in nouns)
    assert summary.top_nouns == sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert summary.vn_curve == [sum(c > t for c in counts.values()) for t in VN_THRESHOLDS]
    assert summary.vn_curve[summary.table["valid_min_count"] - 1] == summary.table["valid_distinct_nouns"]


def test_valid_noun_curve_counts_nouns_seen_more_than_t_times():
    assert valid_noun_curve(np.array([1, 2, 2, 5, 100]))[:5] == [4, 2, 2, 2, 1]


def test_shards_rejects_and_distributions(small):
    summary = summarise_output(str(small), "small")
    assert [(s.name, s.samples, s.rejects) for s in summary.shards] == [("p-00000", 10, 3), ("p-00001", 10, 0)]
    assert summary.shards[1].mean_clip_score == pytest.approx(np.mean([0.10 + 0.01 * i for i in range(10, 20)]))
    assert summary.rejects.by_stage_reason == {("decode", "decode_error"): 2, ("decode", "empty_file"): 1}
    clip = summary.histograms["clip_score"]
    assert clip.count == 19 and clip.min == pytest.approx(0.10) and clip.max == pytest.approx(0.29)
    widths = summary.histograms["width"]
    assert (widths.count, widths.min, widths.max) == (20, 400, 1160)
    words = [len(c.split()) for (c,) in stats_rows(small, "caption")]
    assert summary.histograms["caption_words"].percentile(50) == np.percentile(words, 50, method="inverted_cdf")
    assert not summary.tokens_exact
    assert summary.histograms["caption_t5_tokens"].max == approximate_t5_tokens(np.array([max(words)]))[0]


def test_gallery_shows_the_lowest_median_and_highest_scores_from_the_shards(small):
    summary = summarise_output(str(small), "small")
    scores = sorted(s for (s,) in stats_rows(small, "clip_score") if s is not None)
    lowest = [e.pick.clip_score for e in summary.gallery["lowest"]]
    highest = [e.pick.clip_score for e in summary.gallery["highest"]]
    assert lowest == pytest.approx(scores[:6]) and highest == pytest.approx(scores[::-1][:6])
    median = summary.histograms["clip_score"].percentile(50)
    nearest = sorted(scores, key=lambda s: abs(s - median))[:6]
    assert sorted(e.pick.clip_score for e in summary.gallery["median"]) == pytest.approx(sorted(nearest))
    captions = dict(stats_rows(small, "key, caption"))
    for example in summary.gallery["lowest"] + summary.gallery["highest"]:
        assert example.thumbnail and example.caption == captions[example.pick.key]
        assert example.record["key"] == example.pick.key


def test_nearest_scores_breaks_ties_by_key(tmp_path):
    rows = [sample(f"k{i}", "t-00000", ["dog"], 0.5 if i % 2 else 0.7) for i in range(6)]
    write_output(tmp_path, {"t-00000": rows}, tars=False)
    picks = nearest_scores(stats_files(str(tmp_path)), 0.5, k=2)
    assert [p.key for p in picks] == ["k1", "k3"]


def test_gallery_without_shards_says_so(tmp_path):
    write_output(tmp_path, {"t-00000": [sample("k", "t-00000", ["dog"], 0.5)]}, tars=False)
    example = summarise_output(str(tmp_path), "t").gallery["lowest"][0]
    assert example.thumbnail is None and "t-00000.tar not found" in example.problem


def test_t5_tokens_counted_by_a_real_t5_tokenizer(tmp_path):
    from pixcap.models.tiny import build_tiny_model

    t5 = build_tiny_model(tmp_path / "models", "tiny-t5")
    long_caption = " ".join(["zebra"] * 30)  # not in the tiny vocabulary: a piece per letter
    rows = [sample("k0", "t-00000", ["cat"], 0.3, caption="a photo of the cat"),
            sample("k1", "t-00000", ["zebra"], 0.3, caption=long_caption),
            sample("k2", "t-00000", [], 0.3, caption="")]
    write_output(tmp_path / "out", {"t-00000": rows}, tars=False)
    summary = summarise_output(str(tmp_path / "out"), "t", T5TokenCounter(str(t5)))
    tokenizer = T5TokenCounter(str(t5)).tokenizer
    expected = [len(tokenizer(r["caption"])["input_ids"]) for r in rows]
    assert expected[0] == 6 and expected[1] > T5_MAX_TOKENS and expected[2] == 1  # 5 words and </s>; 5 pieces a zebra
    tokens = summary.histograms["caption_t5_tokens"]
    assert summary.tokens_exact and (tokens.min, tokens.max, tokens.count) == (min(expected), max(expected), 3)
    assert tokens.share_above(T5_MAX_TOKENS) == pytest.approx(1 / 3)
