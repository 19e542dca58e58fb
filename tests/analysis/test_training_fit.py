"""Training fit assigns buckets by schemas/buckets.py's rule, image by image, and counts covering images."""
import numpy as np

from pixcap.analysis.training_fit import RESOLUTIONS, TrainingFit
from pixcap.schemas.buckets import covers, nearest_bucket


def test_buckets_and_coverage_match_the_shared_rule_image_by_image():
    rng = np.random.default_rng(0)
    width = rng.integers(64, 2400, 3000)
    height = rng.integers(64, 2400, 3000)
    # Exact bucket sizes and ratios halfway between two buckets test the edges and the ties.
    width[:4], height[:4] = [1024, 2048, 100, 1000], [1024, 512, 107, 1005]
    fit = TrainingFit()
    for part in np.array_split(np.arange(len(width)), 5):
        fit.add(width[part], height[part])
    for res in RESOLUTIONS:
        table = fit.tables[res]
        assigned = np.zeros(len(table.ratios), dtype=np.int64)
        covering = np.zeros(len(table.ratios), dtype=np.int64)
        for w, h in zip(width.tolist(), height.tolist()):
            ratio, size = nearest_bucket(h, w, res)
            b = int(np.flatnonzero(table.ratios == ratio)[0])
            assigned[b] += 1
            covering[b] += covers(h, w, size)
        assert (fit.assigned[res] == assigned).all(), res
        assert (fit.covering[res] == covering).all(), res
    assert fit.totals()[1024][1] < fit.totals()[256][1] == len(width) - (fit.assigned[256] - fit.covering[256]).sum()


def test_images_without_a_size_are_left_out():
    fit = TrainingFit()
    fit.add(np.array([0, 512]), np.array([512, 512]))
    assert fit.totals()[512] == (1, 1)
