"""Build small tars and folders of images for the pipeline tests."""
import glob
import io
import tarfile

import numpy as np
from PIL import Image


def jpeg_bytes(seed: int, size=(64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    # A smooth gradient plus noise: decodes like a photo, compresses like one.
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([x * 255 / size[0], y * 255 / size[1], (x + y) * 127 / sum(size)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_tar(path, members) -> None:
    """members: (name, bytes) pairs, or TarInfo objects for links and devices."""
    with tarfile.open(path, "w") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                add_bytes(tar, *member)


def sa1b_members(first: int, count: int, captions: bool = False) -> list:
    members = []
    for k in range(first, first + count):
        members.append((f"sa_{k}.jpg", jpeg_bytes(k)))
        members.append((f"sa_{k}.json", b'{"image": {"image_id": %d}, "annotations": []}' % k))
        if captions:
            members.append((f"sa_{k}.txt", f"a caption for image {k}".encode()))
    return members


def shard_members(out) -> dict:
    """{tar member name: bytes} of every shard of an output (KEY.jpg, KEY.txt, KEY.canny.png, ...)."""
    found = {}
    for path in sorted(glob.glob(f"{out}/shards/*.tar")):
        with tarfile.open(path) as tar:
            found.update({m.name: tar.extractfile(m).read() for m in tar.getmembers()})
    return found
