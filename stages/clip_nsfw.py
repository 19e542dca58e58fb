"""NSFW probability from the CLIP embedding: LAION's CLIP-based NSFW detector (models/clip_nsfw_head.py)
on the image embedding the clip stage stored, the way NeMo Curator's NSFW classifier reuses it: no second
image model, and cheap enough to run on every image.

Optional: runs after clip when the job names weights. Like the aesthetic stage it reads the embedding
without consuming it; a row without one passes through unscored (null in the record, so a trainer's
`filters.max_scores` drops it and `select --where` sees null).
"""
from __future__ import annotations

from pixcap.models.clip_nsfw_head import load_clip_nsfw_head
from pixcap.schemas import rejects as R
from pixcap.schemas.records import NSFW_CLIP_SCORE

from .aesthetic import AestheticStage


class ClipNsfwStage(AestheticStage):
    """Adds NSFW_CLIP_SCORE: the probability (0..1) that the image is NSFW, from its normalised CLIP embedding."""
    STAGE, COLUMN, REJECT, WHAT = "clip_nsfw", NSFW_CLIP_SCORE, R.CLIP_NSFW_ERROR, "LAION's CLIP-based NSFW head"
    load = staticmethod(load_clip_nsfw_head)
