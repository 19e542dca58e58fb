"""The bucket tables, the nearest-bucket rule, and fitting images as PixArt's own transforms do."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms.functional import InterpolationMode

from pixcap.schemas import buckets as contract
from pixcap.trainer.buckets import BUCKETS, covers, fit_bucket, fit_square, nearest_bucket, to_pixels


@pytest.mark.parametrize("resolution", [256, 512, 1024])
def test_tables_have_pixart_shape(resolution):
    table = BUCKETS[resolution]
    assert len(table) == 40 and min(table) == 0.25 and max(table) == 4.0
    for ratio, (h, w) in table.items():
        assert h % 16 == 0 and w % 16 == 0  # 8x VAE, then 2x2 patches
        assert abs(h * w / resolution**2 - 1) < 0.1
        assert abs(h / w - ratio) < 0.06


def test_tables_agree_with_diffusers():
    from diffusers.pipelines.pixart_alpha import pipeline_pixart_alpha as p

    for resolution, theirs in [(1024, p.ASPECT_RATIO_1024_BIN), (512, p.ASPECT_RATIO_512_BIN), (256, p.ASPECT_RATIO_256_BIN)]:
        for ratio, (h, w) in theirs.items():
            assert BUCKETS[resolution][float(ratio)] == (int(h), int(w))


def test_one_definition_for_trainer_and_report():
    assert BUCKETS is contract.BUCKETS and nearest_bucket is contract.nearest_bucket


def test_nearest_bucket():
    assert nearest_bucket(1000, 1000, 256) == (1.0, (256, 256))
    assert nearest_bucket(500, 1000, 512) == (0.5, (352, 704))
    assert nearest_bucket(2000, 1000, 1024) == (2.0, (1408, 704))
    assert nearest_bucket(1000, 1, 256) == (4.0, (512, 128))  # beyond the table: the last bucket
    assert nearest_bucket(1, 1000, 256) == (0.25, (128, 512))
    assert covers(704, 1408, (704, 1408)) and not covers(703, 2000, (704, 1408))


def gradient_image(width, height):
    """Different everywhere, so any shift of the resize or the crop shows."""
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], -1).astype(np.uint8))


def official_square(image, side):
    """PixArt's default_train (diffusion/data/transforms.py)."""
    return T.Compose([T.Lambda(lambda img: img.convert("RGB")), T.Resize(side), T.CenterCrop(side),
                      T.ToTensor(), T.Normalize([0.5], [0.5])])(image)


def official_bucket(image, closest_size):
    """PixArt's InternalDataMS.getdata (diffusion/data/datasets/InternalData_ms.py), raw-image branch."""
    ori_h, ori_w = image.height, image.width
    if closest_size[0] / ori_h > closest_size[1] / ori_w:
        resize_size = closest_size[0], int(ori_w * closest_size[0] / ori_h)
    else:
        resize_size = int(ori_h * closest_size[1] / ori_w), closest_size[1]
    return T.Compose([T.Lambda(lambda img: img.convert("RGB")),
                      T.Resize(resize_size, interpolation=InterpolationMode.BICUBIC), T.CenterCrop(closest_size),
                      T.ToTensor(), T.Normalize([0.5], [0.5])])(image)


@pytest.mark.parametrize("size", [(256, 256), (300, 257), (257, 300), (640, 480), (333, 999), (1001, 260)])
def test_square_fit_is_pixarts_default_train(size):
    image = gradient_image(*size)
    ours = torch.from_numpy(to_pixels(fit_square(image, 256)))
    torch.testing.assert_close(ours, official_square(image, 256), rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (1001, 260), (260, 1001), (600, 590), (1100, 1090)])
@pytest.mark.parametrize("resolution", [256, 512])
def test_bucket_fit_is_pixarts_multiscale_transform(size, resolution):
    image = gradient_image(*size)
    _, bucket = nearest_bucket(image.height, image.width, resolution)
    if not covers(image.height, image.width, bucket):
        pytest.skip("the trainer never fits an image it would have to enlarge")
    ours = torch.from_numpy(to_pixels(fit_bucket(image, bucket)))
    assert tuple(ours.shape[1:]) == bucket
    torch.testing.assert_close(ours, official_bucket(image, bucket), rtol=0, atol=1e-6)


def test_to_pixels_range():
    pixels = to_pixels(Image.fromarray(np.array([[[0, 255, 128]]], dtype=np.uint8)))
    assert pixels.shape == (3, 1, 1) and pixels.dtype == np.float32
    assert pixels[0, 0, 0] == -1.0 and pixels[1, 0, 0] == 1.0
