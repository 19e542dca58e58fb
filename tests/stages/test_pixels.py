"""pixels.py against PIL and torchvision, the libraries whose behaviour it stands in for."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from pixcap.stages.pixels import center_crop, resize, short_side_size, square_crop


def photo(height, width, seed=0):
    """Smooth gradients plus noise: resizes like a photograph, not like white noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("source, target", [((375, 563), (336, 504)), ((1500, 2250), (336, 504)),
                                            ((120, 200), (336, 560))])
def test_resize_is_pils_bicubic_within_a_level(source, target):
    image = photo(*source)
    ours = resize(image, target[1], target[0])
    pil = np.asarray(Image.fromarray(image).resize((target[1], target[0]), Image.BICUBIC))
    assert ours.shape == (*target, 3) and ours.dtype == np.uint8 and ours.flags.writeable
    assert np.abs(ours.astype(int) - pil).mean() < 0.5


def test_resize_to_the_same_size_copies_and_reads_read_only_arrays():
    image = photo(40, 60)
    image.flags.writeable = False
    same = resize(image, 60, 40)
    assert np.array_equal(same, image) and same.flags.writeable
    assert resize(image, 30, 20).shape == (20, 30, 3)


@pytest.mark.parametrize("width, height", [(504, 336), (337, 500), (1000, 999), (336, 336)])
def test_sizes_and_crop_offsets_follow_torchvision(width, height):
    image = photo(height, width)
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    expected_height, expected_width = TF.resize(tensor, 336, antialias=True).shape[1:]
    assert short_side_size(width, height, 336) == (expected_width, expected_height)
    resized = resize(image, expected_width, expected_height)
    torchvision_crop = TF.center_crop(torch.from_numpy(resized).permute(2, 0, 1), 224).permute(1, 2, 0).numpy()
    assert np.array_equal(center_crop(resized, 224), torchvision_crop)
    assert np.array_equal(square_crop(image, 224), center_crop(resize(image, *short_side_size(width, height, 224)), 224))


def test_an_odd_margin_is_rounded_or_truncated_as_asked():
    image = photo(32, 87)  # margin 55: torchvision starts at 28, transformers at 27
    assert np.array_equal(center_crop(image, 32), image[:, 28:60])
    assert np.array_equal(center_crop(image, 32, round_offsets=False), image[:, 27:59])
