"""The per-image statistics the report draws: how each is read from a stats batch, and its bins.

Bins are fixed here, once, so every output's histogram of a statistic has the same edges and
their curves overlay. Integer statistics get one bin per value up to a cap far above real data
(a stored side is at most decode.max_side; captions are hundreds of words, not thousands).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict

import numpy as np
import pyarrow as pa

from pixcap.schemas import stages as registry
from pixcap.schemas.records import AESTHETIC_SCORE, CLIP_SCORE, HEIGHT, N_GROUNDED, N_NOUNS, WIDTH

from .histogram import Histogram


@dataclasses.dataclass(frozen=True)
class Distribution:
    title: str
    axis: str
    new_histogram: Callable[[], Histogram]
    digits: int  # decimals its percentiles are printed with


def column_values(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """A numeric column as float64, NaN where null (histograms skip NaN)."""
    return batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64)


CAPTION_WORDS = "caption_words"
CAPTION_T5_TOKENS = "caption_t5_tokens"
ASPECT_RATIO = "aspect_ratio"

# name -> how it is shown and binned; the order is the report's.
DISTRIBUTIONS: Dict[str, Distribution] = {
    CLIP_SCORE: Distribution("CLIP score", "clip_score (cosine of image and caption)", lambda: Histogram(-1.0, 1.0, 2000), 4),
    N_NOUNS: Distribution("Nouns per image", "n_nouns", lambda: Histogram.of_integers(1023), 0),
    N_GROUNDED: Distribution("Grounded nouns per image", "n_grounded", lambda: Histogram.of_integers(1023), 0),
    CAPTION_WORDS: Distribution("Caption length in words", "words (split on whitespace)", lambda: Histogram.of_integers(4095), 0),
    CAPTION_T5_TOKENS: Distribution("Caption length in T5 tokens", "T5 tokens, </s> included", lambda: Histogram.of_integers(4095), 0),
    WIDTH: Distribution("Stored width", "width (px)", lambda: Histogram.of_integers(16383), 0),
    HEIGHT: Distribution("Stored height", "height (px)", lambda: Histogram.of_integers(16383), 0),
    ASPECT_RATIO: Distribution("Aspect ratio", "width / height", lambda: Histogram(0.0, 10.0, 2000), 3),
    # LAION's predictor scores about 1..10; the range is wide so an untrained (tiny) model's scores fit too.
    AESTHETIC_SCORE: Distribution("Aesthetic score", "aesthetic_score (LAION's improved aesthetic predictor)",
                                  lambda: Histogram(-10.0, 20.0, 3000), 2),
}
SCORE_THRESHOLDS = (0.5, 0.9)  # the report counts a classifier's images above each


def score_distribution(column: str) -> Distribution:
    """A classifier's column (a probability; the job names it, so it is not in DISTRIBUTIONS)."""
    return Distribution(f"{column} (image classifier)", f"{column} (probability of the classifier's label)",
                        lambda: Histogram(0.0, 1.0, 1000), 3)


OPTIONAL = registry.optional_columns()  # columns an output may lack (the stage did not run): shown when any output has values
