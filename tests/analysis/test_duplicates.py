"""Duplicates: the functions `pixcap select --dedup` and the report share, and the report's section
(exact and near counts, the aesthetic distribution) on small hand-made outputs."""
import hashlib
import json
import os
import re

import numpy as np
import pyarrow as pa
import pytest

from pixcap.analysis import duplicates
from pixcap.analysis.duplicate_counts import NEAR_COSINE, near_duplicate_count
from pixcap.analysis.duplicates import (
    count_exact_duplicates, exact_duplicates, near_duplicates, sha256_digests, sha256_prefixes,
)
from pixcap.analysis.report import write_report
from pixcap.analysis.stats import stats_files
from pixcap.analysis.summary import summarise_output
from pixcap.schemas.manifest import EMBEDDINGS_DIR

from .outputs import sample, write_output


def hexes(values):
    return pa.array([hashlib.sha256(bytes([v])).hexdigest() for v in values])


def brute_force_near(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """The rule written out: a sample goes when an earlier sample that stays is that close."""
    cosines = vectors.astype(np.float32) @ vectors.astype(np.float32).T
    dropped = np.zeros(len(vectors), dtype=bool)
    for i in range(len(vectors)):
        dropped[i] = any(cosines[i, j] >= threshold and not dropped[j] for j in range(i))
    return dropped


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float16)


def test_exact_duplicates_keep_the_first_of_each_digest():
    digests = sha256_digests(hexes([3, 1, 3, 2, 1, 3]))
    assert digests[0].tobytes() == hashlib.sha256(b"\x03").digest()
    assert exact_duplicates(digests).tolist() == [False, False, True, False, True, True]
    assert count_exact_duplicates(digests) == 3
    assert count_exact_duplicates(sha256_prefixes(hexes([3, 1, 3, 2, 1, 3]))) == 3


def test_a_value_that_is_no_sha256_is_refused():
    with pytest.raises(ValueError, match="64 lowercase hex"):
        sha256_digests(pa.array(["A" * 64]))


def test_a_chain_of_near_duplicates_keeps_both_ends():
    angles = np.deg2rad([0, 15, 30])  # neighbours at cosine 0.966, the ends at 0.866
    vectors = np.stack([np.cos(angles), np.sin(angles), np.zeros(3)], axis=1)
    assert near_duplicates(vectors, 0.95).tolist() == [False, True, False]


def test_near_duplicates_in_clusters_equal_the_brute_force_rule(monkeypatch):
    monkeypatch.setattr(duplicates, "CLUSTER_SIZE", 100)  # 20 k-means clusters, probed two at a time
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 64))
    rows = centres[rng.integers(0, 40, 2000)] + rng.normal(size=(2000, 64))
    copies = rng.choice(2000, 60, replace=False)
    rows[copies] = rows[rng.choice(2000, 60, replace=False)] + rng.normal(size=(60, 64)) * 0.02
    vectors = unit(rows)
    found = near_duplicates(vectors, 0.95)
    assert found.sum() >= 50  # the planted copies (a few may repeat each other's source)
    assert np.array_equal(found, brute_force_near(vectors, 0.95))


def write_dedup_output(out, vectors: np.ndarray, sha_values, aesthetic=None) -> None:
    """Two shards of len(vectors) samples with these embeddings, digests and aesthetic scores."""
    rows = []
    for i, value in enumerate(sha_values):
        row = sample(f"p/s_{i:02d}", "p-00000" if i < len(sha_values) // 2 else "p-00001", ["dog"], 0.2 + 0.01 * i)
        row["sha256"] = hashlib.sha256(bytes([value])).hexdigest()
        row["aesthetic_score"] = None if aesthetic is None else aesthetic[i]
        rows.append(row)
    half = len(rows) // 2
    write_output(out, {"p-00000": rows[:half], "p-00001": rows[half:]}, tars=False)
    os.makedirs(os.path.join(out, EMBEDDINGS_DIR), exist_ok=True)
    np.save(os.path.join(out, EMBEDDINGS_DIR, "p-00000.npy"), vectors[:half])
    np.save(os.path.join(out, EMBEDDINGS_DIR, "p-00001.npy"), vectors[half:])


@pytest.fixture
def dedup_output(tmp_path):
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(10, 16))
    rows[7] = rows[2] + 0.01  # a near copy in the other shard
    rows[9] = rows[4]  # an exact copy, same bytes too
    out = tmp_path / "dups"
    write_dedup_output(str(out), unit(rows), [0, 1, 2, 3, 4, 5, 6, 7, 8, 4], aesthetic=np.linspace(3.0, 7.5, 10))
    return out, unit(rows)


def test_the_report_counts_what_each_dedup_would_drop(dedup_output, tmp_path):
    out, vectors = dedup_output
    summary = summarise_output(str(out), "dups")
    assert summary.duplicates.exact == 1
    assert summary.duplicates.near == int(brute_force_near(vectors, NEAR_COSINE).sum()) >= 2
    report = write_report([str(out)], str(tmp_path / "report.html"))
    page = open(report.path, encoding="utf-8").read()
    data = json.loads(re.search(r'id="duplicates-data">(.*?)</script>', page, re.S).group(1))
    assert data[0]["exact"] == 1 and data[0]["near"] == summary.duplicates.near and data[0]["images"] == 10


def test_the_aesthetic_score_is_a_distribution_when_present(dedup_output, tmp_path):
    out, _ = dedup_output
    summary = summarise_output(str(out), "dups")
    histogram = summary.histograms["aesthetic_score"]
    assert histogram.count == 10 and histogram.min == 3.0 and histogram.max == 7.5
    scores = np.linspace(3.0, 7.5, 10)
    for q in (5, 50, 95):  # within one 0.01 bin of the exact percentile
        assert abs(histogram.percentile(q) - np.percentile(scores, q, method="inverted_cdf")) <= 0.01 + 1e-9
    page = open(write_report([str(out)], str(tmp_path / "r.html")).path, encoding="utf-8").read()
    assert 'id="dist-aesthetic_score"' in page


def test_an_output_without_aesthetic_scores_or_embeddings_says_so(tmp_path):
    out = tmp_path / "plain"
    write_output(str(out), {"p-00000": [sample(f"p/s_{i}", "p-00000", ["cat"], 0.3) for i in range(4)]}, tars=False)
    summary = summarise_output(str(out), "plain")
    assert summary.duplicates.exact == 3  # the hand-made rows share one sha256
    assert summary.duplicates.near is None and "no CLIP embeddings" in summary.duplicates.near_note
    page = open(write_report([str(out)], str(tmp_path / "r.html")).path, encoding="utf-8").read()
    assert 'id="dist-aesthetic_score"' not in page
    assert "no CLIP embeddings" in page


def test_near_duplicates_beyond_the_memory_cap_are_left_to_select(dedup_output):
    out, _ = dedup_output
    count, note = near_duplicate_count(stats_files(str(out)), max_bytes=100)
    assert count is None and "--dedup clip:0.95 --dry-run" in note
