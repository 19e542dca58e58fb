"""Fixtures for stage tests: tiny offline models built once per session, and batch builders."""
import numpy as np
import pytest

from pixcap.models.tiny import build_tiny_models
from pixcap.schemas import batch as cols


@pytest.fixture(scope="session")
def tiny_models(models_cache):
    """{"llava": dir, "clip_config": json path, "clip_checkpoint": pt path}, built once per session."""
    return build_tiny_models(models_cache)


def _model_images(count: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48 + 8 * (i % 3), 64, 3), dtype=np.uint8) for i in range(count)]


def _stage_batch(images: list, **columns) -> dict:
    n = len(images)
    batch = {
        cols.KEY: [f"part/{i}" for i in range(n)],
        cols.MODEL_IMAGE: images,
        cols.REJECT_STAGE: [""] * n,
        cols.REJECT_REASON: [""] * n,
        cols.REJECT_ERROR: [""] * n,
    }
    batch.update(columns)
    return batch


@pytest.fixture
def model_images():
    """model_images(count, seed=0): random HxWx3 uint8 images of a few sizes, like decode's."""
    return _model_images


@pytest.fixture
def stage_batch():
    """stage_batch(images, **columns): keys, model images, empty reject columns, plus columns."""
    return _stage_batch
