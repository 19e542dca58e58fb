import numpy as np
import pytest

from pixcap.schemas import batch as cols
from pixcap.schemas.stages import CaptionConfig, ClipConfig
from pixcap.schemas.records import CAPTION, CAPTION_MODEL
from pixcap.stages.caption import CaptionStage, SidecarCaptionStage, chat_prompt, generate_captions
from pixcap.stages.model_inputs import ModelInputsStage


@pytest.fixture(scope="module")
def config(tiny_models):
    return CaptionConfig(model=str(tiny_models["llava"]), max_new_tokens=8, batch_size=4)


@pytest.fixture(scope="module")
def stage(config):
    return CaptionStage(config)


def clip_config(tiny_models):
    return ClipConfig(model=str(tiny_models["clip_config"]), pretrained=str(tiny_models["clip_checkpoint"]))



def test_captions_are_words_and_deterministic_across_instances(stage, config, model_images, stage_batch):
    images = model_images(3)
    first = stage(stage_batch(images))
    second = CaptionStage(config)(stage_batch(images))
    assert first[CAPTION] == second[CAPTION]
    assert all(caption and caption.split()[0].isalpha() for caption in first[CAPTION])
    assert len(set(first[CAPTION])) == 3  # different images, different captions
    assert first[CAPTION_MODEL] == [config.model] * 3
    assert first[cols.REJECT_REASON] == ["", "", ""]


def test_caption_alone_equals_caption_in_a_batch(stage, model_images, stage_batch):
    images = model_images(6, seed=1)
    together = stage(stage_batch(images))[CAPTION]  # mini-batches of 4 and 2
    alone = [stage(stage_batch([image]))[CAPTION][0] for image in images]
    assert together == alone


def test_left_padding_keeps_the_caption_beside_a_longer_prompt(stage, model_images):
    image, other = model_images(2, seed=2)
    short = chat_prompt(stage.processor, "Describe this image")
    long = chat_prompt(stage.processor, "Describe this image and its style in a very detailed manner")
    padded = stage.processor(images=[image, other], text=[short, long], padding=True,
                             padding_side="left", return_tensors="pt")
    assert padded["attention_mask"][0, 0] == 0 and padded["attention_mask"][0, -1] == 1  # really padded
    alone = generate_captions(stage.model, stage.processor, [image], [short], 8)
    beside = generate_captions(stage.model, stage.processor, [image, other], [short, long], 8)
    assert beside[0] == alone[0] != ""


def test_rejected_row_passes_through_untouched(stage, model_images, stage_batch):
    batch = stage_batch(model_images(2), extra=["a", "b"])
    batch[cols.REJECT_STAGE] = ["decode", ""]
    batch[cols.REJECT_REASON] = ["too_small", ""]
    batch[cols.REJECT_ERROR] = ["3x3", ""]
    out = stage(batch)
    assert out[CAPTION][0] == "" and out[CAPTION][1] != ""
    assert (out[cols.REJECT_STAGE], out[cols.REJECT_REASON]) == (["decode", ""], ["too_small", ""])
    assert out[cols.REJECT_ERROR] == ["3x3", ""]
    assert out["extra"] == ["a", "b"] and out[cols.MODEL_IMAGE] is batch[cols.MODEL_IMAGE]


def test_bad_image_becomes_a_reject_and_spares_its_neighbours(stage, model_images, stage_batch):
    good = model_images(3, seed=3)
    images = np.empty(4, dtype=object)  # as Ray may hand a column over
    images[:] = [good[0], np.zeros((0, 0, 3), np.uint8), good[1], good[2]]
    out = stage(stage_batch(images))
    assert out[cols.REJECT_REASON] == ["", "caption_error", "", ""]
    assert out[cols.REJECT_STAGE][1] == "caption" and out[cols.REJECT_ERROR][1]
    assert out[CAPTION][1] == ""
    alone = stage(stage_batch(good))[CAPTION]
    assert [out[CAPTION][i] for i in (0, 2, 3)] == alone
    assert all(len(column) == 4 for column in out.values())


def test_sidecar_captions_and_missing_ones(stage_batch):
    stage = SidecarCaptionStage(CaptionConfig(backend="sidecar"))
    batch = stage_batch([None] * 3, **{cols.SIDECAR_CAPTION: ["  a red car \n", "", "x"]})
    batch[cols.REJECT_STAGE] = ["", "", "decode"]
    batch[cols.REJECT_REASON] = ["", "", "decode_error"]
    out = stage(batch)
    assert out[CAPTION] == ["a red car", "", ""]
    assert out[CAPTION_MODEL] == ["sidecar", "", ""]
    assert out[cols.REJECT_REASON] == ["", "no_caption", "decode_error"]
    assert out[cols.REJECT_STAGE] == ["", "caption", "decode"]


def test_the_static_kv_cache_gives_exactly_the_eager_captions(config, model_images, stage_batch):
    """caption.kv_cache=static (what `auto` takes on a GPU, where generate() compiles the decoding
    step over it) changes speed, never words: the same greedy captions as the dynamic cache."""
    import dataclasses

    images = model_images(4)
    static = CaptionStage(dataclasses.replace(config, kv_cache="static"))
    dynamic = CaptionStage(dataclasses.replace(config, kv_cache="dynamic"))
    assert static.model.generation_config.cache_implementation == "static"
    assert dynamic.model.generation_config.cache_implementation != "static"
    assert static(stage_batch(images))[CAPTION] == dynamic(stage_batch(images))[CAPTION]


def test_captions_from_the_cpus_crops_equal_the_processors(stage, config, tiny_models, model_images, stage_batch):
    model_inputs = ModelInputsStage(config, clip_config(tiny_models))
    images = model_images(6, seed=4)
    batch = stage_batch(images)
    batch[cols.REJECT_STAGE][5], batch[cols.REJECT_REASON][5] = "decode", "too_small"
    old = stage(batch)
    new = stage(model_inputs(stage_batch(images, **{k: batch[k] for k in (cols.REJECT_STAGE, cols.REJECT_REASON)})))
    assert new[CAPTION] == old[CAPTION] and all(old[CAPTION][:5]) and old[CAPTION][5] == ""
    assert cols.CAPTION_PIXELS not in new and cols.CLIP_PIXELS in new
    assert new[cols.REJECT_REASON] == old[cols.REJECT_REASON]


def test_a_crop_of_the_wrong_size_becomes_a_caption_reject(stage, config, tiny_models, model_images, stage_batch):
    out = ModelInputsStage(config, clip_config(tiny_models))(stage_batch(model_images(3, seed=5)))
    out[cols.CAPTION_PIXELS][1] = np.zeros((7, 7, 3), np.uint8)
    captioned = stage(out)
    assert captioned[cols.REJECT_REASON] == ["", "caption_error", ""]
    assert captioned[CAPTION][0] and captioned[CAPTION][2] and captioned[CAPTION][1] == ""
