"""PixArt's aspect-ratio buckets, and the rule that assigns an image to one.

40 (height, width) sizes per resolution, ratios height / width from 0.25 to 4.0. The 1024 table is
PixArt-alpha's ASPECT_RATIO_1024; its 512 and 256 tables are the same sizes halved and quartered
(diffusers' ASPECT_RATIO_512_BIN and _256_BIN are exactly that), so they are derived here rather
than copied. Every size stays a multiple of 16, which the 8x VAE and the 2x2 patches need.

The trainer and the analyst's report both read this file, so a report's "fits the 1024 buckets"
means what the trainer does.
"""
from __future__ import annotations

import typing

Size = typing.Tuple[int, int]  # (height, width), pixels

# ratio (height / width) -> (height, width) at 1024
ASPECT_RATIO_1024 = {
    0.25: (512, 2048), 0.26: (512, 1984), 0.27: (512, 1920), 0.28: (512, 1856),
    0.32: (576, 1792), 0.33: (576, 1728), 0.35: (576, 1664), 0.4: (640, 1600),
    0.42: (640, 1536), 0.48: (704, 1472), 0.5: (704, 1408), 0.52: (704, 1344),
    0.57: (768, 1344), 0.6: (768, 1280), 0.68: (832, 1216), 0.72: (832, 1152),
    0.78: (896, 1152), 0.82: (896, 1088), 0.88: (960, 1088), 0.94: (960, 1024),
    1.0: (1024, 1024), 1.07: (1024, 960), 1.13: (1088, 960), 1.21: (1088, 896),
    1.29: (1152, 896), 1.38: (1152, 832), 1.46: (1216, 832), 1.67: (1280, 768),
    1.75: (1344, 768), 2.0: (1408, 704), 2.09: (1472, 704), 2.4: (1536, 640),
    2.5: (1600, 640), 2.89: (1664, 576), 3.0: (1728, 576), 3.11: (1792, 576),
    3.62: (1856, 512), 3.75: (1920, 512), 3.88: (1984, 512), 4.0: (2048, 512),
}
ASPECT_RATIO_512 = {r: (h // 2, w // 2) for r, (h, w) in ASPECT_RATIO_1024.items()}
ASPECT_RATIO_256 = {r: (h // 4, w // 4) for r, (h, w) in ASPECT_RATIO_1024.items()}
BUCKETS = {256: ASPECT_RATIO_256, 512: ASPECT_RATIO_512, 1024: ASPECT_RATIO_1024}


def nearest_bucket(height: int, width: int, resolution: int) -> typing.Tuple[float, Size]:
    """(ratio, (bucket_height, bucket_width)) of the bucket whose ratio is nearest height / width."""
    table = BUCKETS[resolution]
    ratio = min(table, key=lambda r: abs(r - height / width))  # first of equals, as PixArt's min()
    return ratio, table[ratio]


def covers(height: int, width: int, size: Size) -> bool:
    """Whether an image fills `size` by shrinking (or as it is): resized to cover it, it is never enlarged."""
    return height >= size[0] and width >= size[1]
