"""Control maps: what a ControlNet is conditioned on, made from each sample's stored image.

PixArt-alpha's ControlNet-Transformer was trained on HED edges; Canny edges need no weights, so
they are the kind made here (scikit-image's canny on the greyscale stored image, thresholds as
quantiles of its gradient). Each map is a greyscale PNG of the stored image's size, 255 on an edge,
so the trainer fits it with the same resize and crop as its image (trainer/control_maps.py), and it
becomes the shard member KEY.<kind>.png (KEY.canny.png). HED or depth maps, which need weights,
would be kinds of their own beside it.

Runs where the stored image's bytes (B.STORED) are still in the row: in the part's task, after decode
and before the blob writer, which stores each map beside its image (schemas/stages.py: the entry's members).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pixcap.schemas import batch as B
from pixcap.schemas.records import CANNY, control_column
from pixcap.schemas.rejects import CONTROL_ERROR
from pixcap.schemas.stage_configs import CONTROL_KINDS, ControlConfig

from .outcomes import RowOutcomes, error_text

STAGE = "control"
KINDS = CONTROL_KINDS


def canny_map(image: Image.Image, sigma: float, low: float, high: float) -> np.ndarray:
    """Canny edges of an image as uint8 [H, W]: 255 on an edge, 0 elsewhere."""
    from skimage.feature import canny

    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    edges = canny(grey, sigma=sigma, low_threshold=low, high_threshold=high, use_quantiles=True)
    return edges.astype(np.uint8) * 255


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


class ControlStage:
    """Adds control_column(kind) for each configured kind: PNG bytes, or b"" for a rejected row."""

    def __init__(self, config: ControlConfig):
        problems = config.problems()  # the job refused these already; a caller without one is told here
        if problems:
            raise ValueError(f"{STAGE}.{problems[0]}")
        self.config = config

    def maps(self, stored: bytes) -> dict:
        """{kind: PNG bytes} of one stored image."""
        image = Image.open(io.BytesIO(stored))
        image.load()
        c = self.config
        return {CANNY: png_bytes(canny_map(image, c.canny_sigma, c.canny_low, c.canny_high))}

    def __call__(self, batch: dict) -> dict:
        rows = RowOutcomes(batch, STAGE)
        columns = {control_column(kind): [b""] * len(rows) for kind in self.config.kinds}
        stored = batch[B.STORED]
        for i in rows.live_rows():
            try:
                made = self.maps(bytes(stored[i]))
            except Exception as e:  # one image that cannot be mapped costs that row, never the batch
                rows.reject(i, CONTROL_ERROR, error_text(e))
                continue
            for kind in self.config.kinds:
                columns[control_column(kind)][i] = made[kind]
        return {**batch, **rows.columns(), **columns}
