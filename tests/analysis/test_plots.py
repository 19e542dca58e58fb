"""Figures: display bins regroup the fixed bins whole, and every figure is an SVG data URI."""
import base64

import numpy as np
import pytest

from pixcap.analysis.distributions import DISTRIBUTIONS
from pixcap.analysis.histogram import Histogram
from pixcap.analysis.plots import DISPLAY_BINS, display_edges, distribution_figure


def regrouped(hist, edges):
    centers, counts = hist.centers_and_counts()
    return np.histogram(centers, bins=edges, weights=counts)[0]


@pytest.mark.parametrize("hist, values", [
    (Histogram(0.0, 10.0, 2000), np.full(12, 4 / 3)),  # one value: still a bin, and it holds all 12
    (Histogram.of_integers(1023), np.array([7, 8, 8, 8])),
    (Histogram.of_integers(16383), np.arange(512, 1025)),
])
def test_display_bins_hold_every_value_in_range(hist, values):
    hist.add(values)
    edges = display_edges([hist])
    assert 2 <= len(edges) <= DISPLAY_BINS + 1
    assert regrouped(hist, edges).sum() == len(values)
    if hist.integer:  # an integer sits in the middle of its display bin's fixed bins, never on an edge
        assert not np.isin(values, edges).any()


def test_overlaid_outputs_share_edges_covering_both():
    a, b = Histogram(-1.0, 1.0, 2000), Histogram(-1.0, 1.0, 2000)
    a.add(np.linspace(0.1, 0.2, 500))
    b.add(np.linspace(0.25, 0.3, 500))
    edges = display_edges([a, b])
    assert edges[0] <= 0.1 + 1e-9 and edges[-1] >= 0.3 - 1e-9
    assert regrouped(a, edges).sum() + regrouped(b, edges).sum() >= 995  # all but the drawn range's tails


def test_figures_are_svg_data_uris_even_without_values():
    full, empty = Histogram(-1.0, 1.0, 2000), Histogram(-1.0, 1.0, 2000)
    full.add(np.random.default_rng(0).normal(0.3, 0.05, 1000))
    for series in ([("a", full), ("b", empty)], [("b", empty)]):
        uri = distribution_figure(DISTRIBUTIONS["clip_score"], series)
        prefix = "data:image/svg+xml;base64,"
        assert uri.startswith(prefix) and b"<svg" in base64.b64decode(uri[len(prefix):])
