"""The report's figure of eval scores (matplotlib, as SVG data URIs like the rest of plots.py)."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from .plots import STYLE, plt, svg_data_uri


def eval_bars_figure(metrics: Sequence[str], series: List[Tuple[str, List]]) -> str:
    """Grouped bars: each metric's overall mean, one bar per eval (metrics in [0, 1] mostly)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 2.8))
        width = 0.8 / max(len(series), 1)
        x = np.arange(len(metrics))
        for i, (label, values) in enumerate(series):
            heights = [np.nan if v is None else v for v in values]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=label)
        ax.set_xticks(x, metrics, rotation=20, ha="right")
        ax.set_ylabel("mean")
        ax.legend(frameon=False, fontsize=8)
        return svg_data_uri(fig)
