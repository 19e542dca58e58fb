"""A small SA-1B-style collection with broken inputs mixed in, for end-to-end tests."""
import io
import os

import numpy as np
from PIL import Image

from .tarfiles import jpeg_bytes, sa1b_members, write_tar


def png_bytes(seed: int, size=(80, 60), mode="RGBA") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode).save(out, format="PNG")
    return out.getvalue()


def write_collection(root) -> dict:
    """Two SA-1B tars and a folder; returns how many inputs and how many are broken."""
    os.makedirs(root / "tars")
    good = sa1b_members(1, 5)
    broken = [
        ("sa_100.jpg", jpeg_bytes(100)[:300]),  # truncated
        ("sa_101.jpg", b"just some text, not an image"),
        ("sa_102.jpg", b""),
    ]
    write_tar(root / "tars" / "sa_000000.tar", good[:6] + broken + good[6:])
    write_tar(root / "tars" / "sa_000001.tar", sa1b_members(6, 4))
    folder = root / "photos" / "nested dir"
    os.makedirs(folder)
    (folder / "holiday.beach 1.jpg").write_bytes(jpeg_bytes(7))
    (folder / "logo.PNG").write_bytes(png_bytes(8))
    (root / "photos" / "lies.png").write_bytes(jpeg_bytes(9))  # a JPEG named .png
    return {"inputs": 5 + 3 + 4 + 3, "broken": 3}
