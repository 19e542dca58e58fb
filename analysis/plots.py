"""The report's figures, drawn by matplotlib (Agg, no display) and returned as SVG data URIs.

As <img src="data:image/svg+xml;base64,..."> each figure is its own document: its element ids
cannot clash with another figure's, and the page fetches nothing. Text stays text in the SVG
(svg.fonttype none), which keeps a figure at a few tens of KB whatever the number of images.
Histograms are drawn from the fixed bins, regrouped into at most DISPLAY_BINS for the eye.
"""
from __future__ import annotations

import base64
import io
from typing import List, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, and no GUI toolkit imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .distributions import Distribution  # noqa: E402
from .histogram import Histogram  # noqa: E402
from .training_fit import RESOLUTIONS, TrainingFit  # noqa: E402

DISPLAY_BINS = 60
RANGE_PERCENTILES = (0.1, 99.9)  # the x range drawn: the far tails would squeeze the bulk into a spike
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "pixcap", "font.size": 9, "axes.spines.top": False,
         "axes.spines.right": False}


def svg_data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def display_edges(histograms: Sequence[Histogram]) -> np.ndarray:
    """Common bin edges for several outputs' histograms of one statistic (same fixed bins).

    Display bins are whole groups of the fixed bins, so every count falls in exactly one of them
    (an integer's bin stays centred on the integer), and a single value still gets a bin.
    """
    filled = [h for h in histograms if h.count]
    fine = filled[0]
    low = min(h.percentile(RANGE_PERCENTILES[0]) for h in filled)
    high = max(h.percentile(RANGE_PERCENTILES[1]) for h in filled)
    first = int(np.clip(np.floor((low - fine.low) / fine.width), 0, fine.bins - 1))
    last = int(np.clip(np.floor((high - fine.low) / fine.width), first, fine.bins - 1))
    step = int(np.ceil((last - first + 1) / DISPLAY_BINS))
    groups = int(np.ceil((last - first + 1) / step))
    return fine.low + (first + np.arange(groups + 1) * step) * fine.width


def distribution_figure(spec: Distribution, series: List[Tuple[str, Histogram]]) -> str:
    """Overlaid histograms (share of each output's images per bin) over box plots from percentiles."""
    series = [(label, h) for label, h in series if h.count]
    with plt.rc_context(STYLE):
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 2.6 + 0.3 * len(series)), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 0.6 + 0.4 * len(series)]})
        if not series:
            top.text(0.5, 0.5, "no values", ha="center", transform=top.transAxes)
            return svg_data_uri(fig)
        edges = display_edges([h for _, h in series])
        boxes = []
        for label, hist in series:
            centers, counts = hist.centers_and_counts()
            shown, _ = np.histogram(centers, bins=edges, weights=counts)
            top.stairs(100.0 * shown / hist.count, edges, label=label, linewidth=1.5)
            p = hist.percentiles((5, 25, 50, 75, 95))
            boxes.append({"label": label, "whislo": p[5], "q1": p[25], "med": p[50], "q3": p[75], "whishi": p[95],
                          "fliers": []})
        top.set_ylabel("% of images")
        top.set_title(spec.title)
        if len(series) > 1:
            top.legend(frameon=False)
        bottom.bxp(boxes[::-1], orientation="horizontal", showfliers=False, widths=0.6)
        bottom.set_xlabel(f"{spec.axis}   (box: 25-75th percentile and median; whiskers: 5th and 95th)")
        return svg_data_uri(fig)


def vn_curve_figure(thresholds: Sequence[int], series: List[Tuple[str, List[int]]], marked: int) -> str:
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 3))
        for label, curve in series:
            ax.plot(list(thresholds), curve, label=label, linewidth=1.5)
        ax.axvline(marked, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("threshold t: a valid noun appears more than t times")
        ax.set_ylabel("valid distinct nouns (VN)")
        ax.set_title("VN as its threshold moves")
        if len(series) > 1:
            ax.legend(frameon=False)
        return svg_data_uri(fig)


def bucket_fit_figure(series: List[Tuple[str, TrainingFit]]) -> str:
    """Per resolution: images covering each bucket without upscaling (bars), of those assigned (lines)."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(RESOLUTIONS), 1, figsize=(9, 2.3 * len(RESOLUTIONS)), sharex=True)
        width = 0.8 / max(1, len(series))
        for ax, res in zip(axes, RESOLUTIONS):
            ratios = series[0][1].tables[res].ratios
            x = np.arange(len(ratios))
            for i, (label, fit) in enumerate(series):
                colour = f"C{i}"
                ax.bar(x - 0.4 + width * (i + 0.5), fit.covering[res], width, color=colour,
                       label=f"{label}: covering" if len(series) > 1 else "covering, no upscaling")
                ax.step(x, fit.assigned[res], where="mid", color=colour, linewidth=1,
                        label=f"{label}: assigned" if len(series) > 1 else "assigned to the bucket")
            ax.set_ylabel(f"{res}: images")
            ax.set_xticks(x, [f"{r:g}" for r in ratios], rotation=90, fontsize=7)
        axes[0].legend(frameon=False, fontsize=7, ncols=2)
        axes[0].set_title("Training fit by aspect-ratio bucket (bucket ratio = height / width)")
        return svg_data_uri(fig)
