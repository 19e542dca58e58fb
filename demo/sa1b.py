"""The demo collection: real photographs laid out like SA-1B, for demos, tests and benchmarks.

The photographs are the colour photos scikit-image ships inside its wheel (no download), plus
mirrored and cropped variants. They are written as SA-1B writes them: tars `sa_000000.tar`, ...
holding `sa_K.jpg` and `sa_K.json` with a running id K. The bytes are the same on every call:
fixed JPEG quality, and tar headers without times or owners.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

TARS = 2
JPEG_QUALITY = 90
# skimage.data loaders whose files are inside the package (others need pooch and the network).
PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina",
               "motorcycle_left", "motorcycle_right")


def load_photograph(name: str) -> np.ndarray:
    """One bundled photograph as an RGB uint8 array."""
    import skimage.data  # imported here: only the sample and the benchmark need it

    if name.startswith("motorcycle_"):  # the stereo pair comes as (left, right, disparity)
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(skimage.data, name)()


def demo_images() -> list:
    """Every photograph as it is, mirrored, and as a centre crop of 3/4 its sides."""
    images = []
    for name in PHOTOGRAPHS:
        photo = Image.fromarray(load_photograph(name)).convert("RGB")
        width, height = photo.size
        crop = (width // 8, height // 8, width - width // 8, height - height // 8)
        images += [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT), photo.crop(crop)]
    return images


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _write_tar(path: Path, members: list) -> None:
    """Write to a temporary name and rename, so a tar that exists is a complete one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide the sample from other users' workers
    try:
        with os.fdopen(handle, "wb") as file, tarfile.open(fileobj=file, mode="w") as tar:
            for name, data in members:
                _add_member(tar, name, data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _sa1b_members(image_id: int, image: Image.Image) -> list:
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", quality=JPEG_QUALITY)
    file_name = f"sa_{image_id}.jpg"
    record = {"image": {"image_id": image_id, "width": image.width, "height": image.height,
                        "file_name": file_name}, "annotations": []}
    return [(file_name, jpeg.getvalue()), (f"sa_{image_id}.json", json.dumps(record).encode())]


def write_demo_collection(dest_dir) -> list:
    """Write the demo collection's tars into dest_dir (kept when all are already there); returns their paths."""
    dest = Path(dest_dir)
    paths = [dest / f"sa_{n:06d}.tar" for n in range(TARS)]
    if all(path.is_file() for path in paths):
        return paths
    dest.mkdir(parents=True, exist_ok=True)
    images = demo_images()
    per_tar = -(-len(images) // TARS)
    for n, path in enumerate(paths):
        members = []
        for image_id in range(n * per_tar + 1, min((n + 1) * per_tar, len(images)) + 1):
            members += _sa1b_members(image_id, images[image_id - 1])
        _write_tar(path, members)
    return paths


if __name__ == "__main__":
    import sys

    written = write_demo_collection(sys.argv[1] if len(sys.argv) > 1 else "data/demo")
    print(f"demo collection: {len(written)} SA-1B-style tars in {written[0].parent}")
