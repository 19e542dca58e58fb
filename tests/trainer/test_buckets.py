"""The aspect-ratio bucket tables, the nearest-bucket rule and resize + center crop."""
import numpy as np
import pytest
from PIL import Image

from pixcap.trainer.buckets import BUCKETS, nearest_bucket, resize_crop, to_pixels


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


def test_nearest_bucket():
    assert nearest_bucket(1000, 1000, 256) == (1.0, (256, 256))
    assert nearest_bucket(500, 1000, 512) == (0.5, (352, 704))
    assert nearest_bucket(2000, 1000, 1024) == (2.0, (1408, 704))
    assert nearest_bucket(1000, 1, 256) == (4.0, (512, 128))  # beyond the table: the last bucket
    assert nearest_bucket(1, 1000, 256) == (0.25, (128, 512))


@pytest.mark.parametrize("size", [(64, 64), (97, 33), (33, 97), (1000, 10), (300, 299)])
def test_resize_crop_gives_bucket_size_and_keeps_the_center(size):
    width, height = size
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[height // 2 - height // 8 : height // 2 + height // 8 + 1, width // 2 - width // 8 : width // 2 + width // 8 + 1] = 255
    _, bucket = nearest_bucket(height, width, 256)
    out = resize_crop(Image.fromarray(array), bucket)
    assert (out.height, out.width) == bucket
    assert np.asarray(out)[bucket[0] // 2, bucket[1] // 2].min() > 200  # the bright center survives the crop


def test_to_pixels_range():
    pixels = to_pixels(Image.fromarray(np.array([[[0, 255, 128]]], dtype=np.uint8)))
    assert pixels.shape == (3, 1, 1) and pixels.dtype == np.float32
    assert pixels[0, 0, 0] == -1.0 and pixels[1, 0, 0] == 1.0
