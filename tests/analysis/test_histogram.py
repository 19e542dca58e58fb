"""Fixed-bin histograms: percentiles exact for integers, within a bin for floats, whatever the batches."""
import numpy as np
import pytest

from pixcap.analysis.histogram import PERCENTILES, Histogram


def test_integer_percentiles_are_exact_and_batches_do_not_matter():
    values = np.random.default_rng(0).poisson(14, 10_001)
    whole, batched = Histogram.of_integers(1023), Histogram.of_integers(1023)
    whole.add(values)
    for part in np.array_split(values, 7):
        batched.add(part)
    for q in PERCENTILES:
        expected = np.percentile(values, q, method="inverted_cdf")
        assert whole.percentile(q) == batched.percentile(q) == expected, q
    assert (whole.count, whole.min, whole.max) == (len(values), values.min(), values.max())
    assert whole.mean == pytest.approx(values.mean())
    assert whole.share_above(20) == pytest.approx((values > 20).mean())


def test_float_percentiles_are_within_one_bin():
    values = np.random.default_rng(1).normal(0.3, 0.05, 50_000)
    hist = Histogram(-1.0, 1.0, 2000)
    hist.add(values)
    for q in PERCENTILES:
        assert abs(hist.percentile(q) - np.percentile(values, q)) <= hist.width, q


def test_out_of_range_and_missing_values():
    hist = Histogram.of_integers(10)
    hist.add(np.array([1, 2, 3, 50, np.nan]))
    assert hist.count == 4 and hist.max == 50  # the NaN is no value; 50 is above the cap but counted
    assert hist.percentile(100) == 50 and hist.percentile(0) == 1
    assert hist.share_above(10) == pytest.approx(0.25)
    empty = Histogram(0, 1, 10)
    assert np.isnan(empty.percentile(50)) and np.isnan(empty.mean) and empty.share_above(0.5) == 0.0
