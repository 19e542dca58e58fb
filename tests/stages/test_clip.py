import math

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from pixcap.schemas import batch as cols
from pixcap.schemas.stages import CaptionConfig, ClipConfig
from pixcap.schemas.records import CAPTION, CLIP_MODEL, CLIP_SCORE, GROUNDED_NOUNS, N_GROUNDED
from pixcap.stages.clip import ClipStage
from pixcap.stages.model_inputs import ModelInputsStage


def clip_config(tiny_models, **overrides):
    return ClipConfig(model=str(tiny_models["clip_config"]), pretrained=str(tiny_models["clip_checkpoint"]),
                      **overrides)


@pytest.fixture(scope="module")
def stage(tiny_models):
    return ClipStage(clip_config(tiny_models, batch_size=2))


@pytest.fixture(scope="module")
def reference(tiny_models):
    """The tiny CLIP loaded straight through open_clip: cosine(image, text)."""
    open_clip.add_model_config(tiny_models["clip_config"])
    model, _, preprocess = open_clip.create_model_and_transforms(
        "tiny-clip", pretrained=str(tiny_models["clip_checkpoint"]))
    model.eval()
    tokenizer = open_clip.get_tokenizer("tiny-clip")

    @torch.no_grad()
    def cosine(image, text):
        image_features = model.encode_image(preprocess(Image.fromarray(image)).unsqueeze(0))[0]
        text_features = model.encode_text(tokenizer([text]))[0]
        return float(torch.nn.functional.cosine_similarity(image_features, text_features, dim=0))

    return cosine


def scored_batch(stage_batch, images, captions, nouns):
    return stage_batch(images, caption=captions, nouns=nouns)



def test_clip_score_is_the_open_clip_cosine(stage, reference, model_images, stage_batch):
    images = model_images(3)
    captions = ["a dog on the grass", "a red car", "two cats " * 40]  # the last is truncated to 77 tokens
    out = stage(scored_batch(stage_batch, images, captions, [[], [], []]))
    expected = [reference(image, caption) for image, caption in zip(images, captions)]
    np.testing.assert_allclose(out[CLIP_SCORE], expected, atol=1e-5)
    assert out[CLIP_MODEL] == ["tiny-clip:tiny-clip.pt"] * 3
    assert cols.MODEL_IMAGE not in out


def test_threshold_decides_which_nouns_are_grounded(tiny_models, reference, model_images, stage_batch):
    image = model_images(1, seed=4)[0]
    nouns = ["dog", "tree", "dog", "car", "sky", "tree"]
    distinct = ["dog", "tree", "car", "sky"]
    cosines = {noun: reference(image, f"a photo of a {noun}") for noun in distinct}
    threshold = float(np.median(list(cosines.values())))
    expected = [noun for noun in distinct if cosines[noun] >= threshold]
    assert 0 < len(expected) < len(distinct)

    def grounded(threshold):
        stage = ClipStage(clip_config(tiny_models, grounding_threshold=threshold))
        out = stage(scored_batch(stage_batch, [image], ["a dog and a tree"], [nouns]))
        assert out[N_GROUNDED] == [len(out[GROUNDED_NOUNS][0])]
        return out[GROUNDED_NOUNS][0]

    assert grounded(threshold) == expected
    assert grounded(-1.0) == distinct  # once each, in first-occurrence order
    assert grounded(1.01) == []


def test_batching_does_not_change_scores(tiny_models, stage, model_images, stage_batch):
    images = model_images(5, seed=5)
    captions = [f"a photo of {n} dogs" for n in ("one", "two", "three", "four", "five")]
    nouns = [["dog"], ["dog", "cat"], [], ["sky"], ["dog"]]
    in_twos = stage(scored_batch(stage_batch, images, captions, nouns))
    whole = ClipStage(clip_config(tiny_models, batch_size=8))(scored_batch(stage_batch, images, captions, nouns))
    np.testing.assert_allclose(in_twos[CLIP_SCORE], whole[CLIP_SCORE], atol=1e-5)


def test_rejected_row_passes_through(stage, model_images, stage_batch):
    images = [np.zeros(cols.MODEL_IMAGE_EMPTY_SHAPE, np.uint8), model_images(1)[0]]
    batch = scored_batch(stage_batch, images, ["", "a dog"], [[], ["dog"]])
    batch[cols.REJECT_STAGE] = ["caption", ""]
    batch[cols.REJECT_REASON] = ["no_caption", ""]
    out = stage(batch)
    assert math.isnan(out[CLIP_SCORE][0]) and not math.isnan(out[CLIP_SCORE][1])
    assert out[GROUNDED_NOUNS][0] == [] and out[N_GROUNDED][0] == 0 and out[CLIP_MODEL][0] == ""
    assert out[cols.REJECT_REASON] == ["no_caption", ""]


def test_bad_image_becomes_a_reject_and_spares_its_neighbours(stage, model_images, stage_batch):
    good = model_images(2, seed=6)
    images = [good[0], np.zeros((0, 0, 3), np.uint8), good[1]]
    out = stage(scored_batch(stage_batch, images, ["a dog"] * 3, [["dog"]] * 3))
    assert out[cols.REJECT_REASON] == ["", "clip_error", ""]
    assert out[cols.REJECT_STAGE][1] == "clip" and out[cols.REJECT_ERROR][1]
    assert math.isnan(out[CLIP_SCORE][1])
    alone = stage(scored_batch(stage_batch, good, ["a dog"] * 2, [["dog"]] * 2))
    np.testing.assert_allclose(out[CLIP_SCORE][[0, 2]], alone[CLIP_SCORE], atol=1e-5)
    assert all(len(column) == 3 for column in out.values())


def test_clip_scores_from_the_cpus_crops_are_the_transforms(stage, tiny_models, model_images, stage_batch):
    model_inputs = ModelInputsStage(CaptionConfig(backend="sidecar"), clip_config(tiny_models))
    images = model_images(5, seed=6)
    columns = {CAPTION: ["a red car", "a dog", "", "sky", "a cat"],
               cols.NOUNS: [["car"], ["dog"], [], ["sky"], ["cat"]]}
    old = stage(stage_batch(images, **columns))
    new = stage(model_inputs(stage_batch(images, **columns)))
    assert cols.CLIP_PIXELS not in new and cols.MODEL_IMAGE not in new
    assert np.allclose(new[CLIP_SCORE], old[CLIP_SCORE], atol=1e-3), np.abs(new[CLIP_SCORE] - old[CLIP_SCORE]).max()
    assert new[cols.REJECT_REASON] == old[cols.REJECT_REASON] == [""] * 5
    old_vectors = np.stack([np.frombuffer(v, np.float16) for v in old[cols.CLIP_EMBEDDING]]).astype(np.float32)
    new_vectors = np.stack([np.frombuffer(v, np.float16) for v in new[cols.CLIP_EMBEDDING]]).astype(np.float32)
    assert np.abs(old_vectors - new_vectors).max() < 1e-2
    assert len(new[GROUNDED_NOUNS]) == 5
