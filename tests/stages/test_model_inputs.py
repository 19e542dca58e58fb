"""The CPU stage that crops decode's model image for LLaVA and CLIP (the stages fed by it are
tested beside their own: test_caption.py, test_clip.py)."""
import numpy as np
import pytest

from pixcap.schemas import batch as cols
from pixcap.schemas.stages import CaptionConfig, ClipConfig
from pixcap.stages.model_inputs import ModelInputsStage


@pytest.fixture(scope="module")
def caption_config(tiny_models):
    return CaptionConfig(model=str(tiny_models["llava"]), max_new_tokens=8, batch_size=4)


@pytest.fixture(scope="module")
def clip_config(tiny_models):
    return ClipConfig(model=str(tiny_models["clip_config"]), pretrained=str(tiny_models["clip_checkpoint"]),
                      batch_size=2)


@pytest.fixture(scope="module")
def model_inputs(caption_config, clip_config):
    return ModelInputsStage(caption_config, clip_config)


def test_crops_for_both_models_and_the_model_image_is_consumed(model_inputs, model_images, stage_batch):
    batch = stage_batch(model_images(3), extra=["a", "b", "c"])
    out = model_inputs(batch)
    assert cols.MODEL_IMAGE not in out and out["extra"] == ["a", "b", "c"]
    for column, view in ((cols.CAPTION_PIXELS, model_inputs.caption_view), (cols.CLIP_PIXELS, model_inputs.clip_view)):
        assert len(out[column]) == 3
        for image, crop in zip(batch[cols.MODEL_IMAGE], out[column]):
            assert crop.shape == (view.size, view.size, 3) and crop.dtype == np.uint8
            assert np.array_equal(crop, view.crop(image))
    assert out[cols.REJECT_REASON] == ["", "", ""]


def test_rejected_rows_carry_empty_arrays_and_a_bad_image_becomes_a_reject(model_inputs, model_images, stage_batch):
    good = model_images(2)
    batch = stage_batch([good[0], np.zeros((0, 0, 3), np.uint8), good[1]])
    batch[cols.REJECT_STAGE][2], batch[cols.REJECT_REASON][2], batch[cols.REJECT_ERROR][2] = "decode", "too_small", "x"
    batch[cols.MODEL_IMAGE][1] = np.zeros((0, 5, 3), np.uint8)  # no pixels: cannot be cropped
    out = model_inputs(batch)
    assert out[cols.REJECT_REASON] == ["", "preprocess_error", "too_small"]
    assert out[cols.REJECT_STAGE] == ["", "model_inputs", "decode"] and out[cols.REJECT_ERROR][1]
    for column in (cols.CAPTION_PIXELS, cols.CLIP_PIXELS):
        assert out[column][0].size > 0
        assert out[column][1].shape == out[column][2].shape == cols.MODEL_IMAGE_EMPTY_SHAPE


def test_the_sidecar_backend_gets_no_caption_pixels(clip_config, model_images, stage_batch):
    out = ModelInputsStage(CaptionConfig(backend="sidecar"), clip_config)(stage_batch(model_images(2)))
    assert cols.CAPTION_PIXELS not in out and len(out[cols.CLIP_PIXELS]) == 2
