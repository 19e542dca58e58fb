"""The models' inputs, made on the CPU: each model's square view of decode's model image.

The resize and centre crop (or pad) of each captioner's and CLIP's eval views run here, in CPU tasks
beside decode, so the GPU actors only stack uint8 crops and normalise them on the device (see
preprocess.py, caption_views.py). Adds one crop column per captioner that takes a fixed size
(CAPTION_PIXELS, or caption_pixels_NAME; none for a sidecar or native one) and CLIP_PIXELS. Consumes
MODEL_IMAGE, unless a later stage takes the image itself (a native captioner, a classifier): then clip
lets it go. Loads the image processors' and open_clip's configs only, never a model's weights. A row
rejected upstream, or one that cannot be cropped, carries empty arrays; the latter becomes a
`preprocess_error` reject.
"""
from __future__ import annotations

import numpy as np

from pixcap.schemas import rejects as R
from pixcap.schemas import batch as B
from pixcap.schemas.stages import CAPTION_BACKENDS
from pixcap.schemas.stages import CaptionConfig, ClipConfig

from .caption_views import view_of
from .clip import resolve_model_name, resolve_pretrained
from .outcomes import RowOutcomes, error_text
from .preprocess import clip_view_of

STAGE = "model_inputs"


def caption_view(config: CaptionConfig):
    """A captioner's CPU view from its image processor's config, or None for a backend that runs no model
    or a native view."""
    if not CAPTION_BACKENDS[config.backend].runs_model:
        return None
    from transformers import AutoImageProcessor

    view = getattr(config, "view", "crop")
    if view == "native":
        return None
    return view_of(AutoImageProcessor.from_pretrained(config.model, trust_remote_code=config.trust_remote_code), view)


def _empty() -> np.ndarray:
    return np.zeros(B.MODEL_IMAGE_EMPTY_SHAPE, np.uint8)


class ModelInputsStage:
    """Crops for the captioners and CLIP from MODEL_IMAGE; built once per worker.

    captioners: a CaptionConfig (a `caption:` job), or [(crop column, config)] of `captioners:`;
    keep_image: MODEL_IMAGE goes on (a native captioner or a classifier takes it)."""

    def __init__(self, captioners, clip_config: ClipConfig, keep_image: bool = False):
        if isinstance(captioners, CaptionConfig):
            captioners = [(B.CAPTION_PIXELS, captioners)]
        self.clip_view = clip_view_of(resolve_model_name(clip_config.model), resolve_pretrained(clip_config.pretrained))
        self.views = {B.CLIP_PIXELS: self.clip_view}
        for column, config in captioners:
            view = caption_view(config)
            if view is not None:
                self.views[column] = view
        self.caption_view = self.views.get(B.CAPTION_PIXELS)
        self.keep_image = keep_image

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
        out = {k: v for k, v in batch.items() if k != B.MODEL_IMAGE or self.keep_image}
        out.update(rows.columns())
        out.update(columns)
        return out
