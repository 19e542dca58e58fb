"""The CPU-side views against the models' own processors (the tiny models, built offline)."""
import numpy as np
import pytest
import torch
from PIL import Image

from pixcap.stages.clip import resolve_model_name, resolve_pretrained
from pixcap.stages.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, SquareView, clip_view, clip_view_of, llava_view

# Decode's model images come in every shape: wide, tall, odd, and smaller than the view.
SHAPES = [(48, 64), (64, 48), (33, 90), (20, 25), (337, 505)]


def images(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in SHAPES]


@pytest.fixture(scope="module")
def llava_processor(tiny_models):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_models["llava"])


def test_llava_view_gives_the_processors_pixel_values(llava_processor):
    view = llava_view(llava_processor.image_processor)
    for image in images():
        crop = view.crop(image)
        assert crop.shape == (view.size, view.size, 3) and crop.dtype == np.uint8
        ours = view.pixel_values([crop])
        theirs = llava_processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
        assert ours.shape == theirs.shape
        assert torch.allclose(ours, theirs, atol=1e-4), (image.shape, (ours - theirs).abs().max())


def test_llava_view_refuses_a_processor_that_does_not_crop_square(llava_processor):
    import copy

    processor = copy.deepcopy(llava_processor.image_processor)
    processor.crop_size = {"height": 32, "width": 40}
    with pytest.raises(ValueError, match="not a square view"):
        llava_view(processor)


@pytest.fixture(scope="module")
def tiny_clip(tiny_models):
    import open_clip

    name = resolve_model_name(str(tiny_models["clip_config"]))
    pretrained = resolve_pretrained(str(tiny_models["clip_checkpoint"]))
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, weights_only=True)
    return name, pretrained, model, preprocess


def test_clip_view_gives_open_clips_transform_within_pils_rounding(tiny_clip):
    name, pretrained, model, preprocess = tiny_clip
    view = clip_view(model)
    assert view == clip_view_of(name, pretrained)
    for image in images(seed=1):
        ours = view.pixel_values([view.crop(image)])[0]
        theirs = preprocess(Image.fromarray(image))
        assert ours.shape == theirs.shape
        # open_clip resizes with PIL's bicubic, pixels.py with torch's: a level or two apart at most.
        levels = (ours - theirs).abs() * torch.tensor(view.std).view(3, 1, 1) * 255
        assert levels.mean() < 0.5 and levels.max() <= 3.01, (image.shape, levels.max())


def test_the_sam_jobs_clip_view_from_the_registry_alone():
    assert clip_view_of("ViT-L-14", "openai") == SquareView(224, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


def test_pixel_values_are_cast_after_normalising():
    view = SquareView(4)
    crops = [np.full((4, 4, 3), 255, np.uint8), np.zeros((4, 4, 3), np.uint8)]
    values = view.pixel_values(crops, dtype=torch.bfloat16)
    assert values.shape == (2, 3, 4, 4) and values.dtype == torch.bfloat16
    white = (1 - torch.tensor(OPENAI_CLIP_MEAN)) / torch.tensor(OPENAI_CLIP_STD)
    assert torch.allclose(values[0, :, 0, 0].float(), white, atol=1e-2)
