"""A collection with duplicates across tars, for `pixcap select` and the report's dedup counts.

Two SA-1B tars of 320x256 photographs of coloured blocks (big enough for the trainer's 256
buckets). sa_000001.tar holds a byte-identical copy of sa_1 (an exact duplicate in another tar)
and a re-encoded sa_2 (other bytes, the same picture: a near duplicate), and sa_000000.tar one
broken member, so the parent has rejects.

The tiny random CLIP puts every picture within a cosine of about 0.99 of every other; a copy
re-encoded at a lower JPEG quality stays above 0.9999. NEAR_COSINE sits between the two.
"""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from tests.pipeline.tarfiles import write_tar

SIZE = (320, 256)
NEAR_COSINE = 0.999
EXACT_COPY = ("sa_000001/sa_7", "sa_000000/sa_1")  # (the copy, the original it repeats)
NEAR_COPY = ("sa_000001/sa_8", "sa_000000/sa_2")


def block_photo(seed: int, quality: int = 90) -> bytes:
    """A JPEG of a few random colour blocks, nearest- or bilinear-scaled: pictures that differ."""
    rng = np.random.default_rng(seed)
    columns, rows = rng.integers(2, 12, 2)
    blocks = rng.integers(0, 256, (rows, columns, 3)).astype(np.uint8)
    image = Image.fromarray(blocks).resize(SIZE, Image.NEAREST if seed % 2 else Image.BILINEAR)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def write_subset_collection(root) -> dict:
    """Write ROOT/tars/sa_00000{0,1}.tar; returns what the inputs hold."""
    os.makedirs(root / "tars")
    first = [(f"sa_{k}.jpg", block_photo(k)) for k in range(1, 7)]
    first.insert(3, ("sa_99.jpg", b"not an image"))  # a reject
    second = [(f"sa_{k}.jpg", block_photo(k)) for k in range(9, 13)]
    second.insert(0, ("sa_7.jpg", block_photo(1)))  # the same bytes as sa_000000's sa_1
    second.insert(1, ("sa_8.jpg", block_photo(2, quality=60)))  # sa_2's picture, other bytes
    write_tar(root / "tars" / "sa_000000.tar", first)
    write_tar(root / "tars" / "sa_000001.tar", second)
    return {"samples": len(first) - 1 + len(second), "rejected": 1}
