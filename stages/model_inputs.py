"""The models' inputs, made on the CPU: each model's square crop of decode's model image.

The resize and centre crop of LLaVA's and CLIP's eval views run here, in CPU tasks beside
decode, so the GPU actors only stack uint8 crops and normalise them on the device
(see preprocess.py). Adds CAPTION_PIXELS (not for the sidecar backend, which sees no image) and
CLIP_PIXELS; consumes MODEL_IMAGE. Loads the image processor's and open_clip's configs only,
never a model's weights. A row rejected upstream, or one that cannot be cropped, carries empty
arrays; the latter becomes a `preprocess_error` reject.
"""
from __future__ import annotations

import numpy as np

from pixcap.schemas import rejects as R
from pixcap.schemas import batch as B
from pixcap.schemas.stages import CAPTION_BACKENDS
from pixcap.schemas.stages import CaptionConfig, ClipConfig

from .clip import resolve_model_name, resolve_pretrained
from .outcomes import RowOutcomes, error_text
from .preprocess import SquareView, clip_view_of, llava_view

STAGE = "model_inputs"


def caption_view(config: CaptionConfig) -> SquareView | None:
    """LLaVA's view from its image processor's config, or None for a backend that runs no model."""
    if not CAPTION_BACKENDS[config.backend].runs_model:
        return None
    from transformers import AutoImageProcessor

    return llava_view(AutoImageProcessor.from_pretrained(config.model, trust_remote_code=config.trust_remote_code))


def _empty() -> np.ndarray:
    return np.zeros(B.MODEL_IMAGE_EMPTY_SHAPE, np.uint8)


class ModelInputsStage:
    """Crops for the caption and CLIP models from MODEL_IMAGE; built once per worker."""

    def __init__(self, caption_config: CaptionConfig, clip_config: ClipConfig):
        self.caption_view = caption_view(caption_config)
        self.clip_view = clip_view_of(resolve_model_name(clip_config.model), resolve_pretrained(clip_config.pretrained))
        self.views = {B.CLIP_PIXELS: self.clip_view}
        if self.caption_view is not None:
            self.views[B.CAPTION_PIXELS] = self.caption_view

    def __call__(self, batch: dict) -> dict:
        rows = RowOutcomes(batch, STAGE)
        images = batch[B.MODEL_IMAGE]
        columns = {column: [_empty() for _ in range(len(rows))] for column in self.views}
        for i in rows.live_rows():
            try:
                image = np.asarray(images[i], dtype=np.uint8)
                crops = {column: view.crop(image) for column, view in self.views.items()}
            except Exception as e:  # one image that cannot be cropped must not cost the batch
                rows.reject(i, R.PREPROCESS_ERROR, error_text(e))
                continue
            for column, crop in crops.items():
                columns[column][i] = crop
        out = {k: v for k, v in batch.items() if k != B.MODEL_IMAGE}
        out.update(rows.columns())
        out.update(columns)
        return out
