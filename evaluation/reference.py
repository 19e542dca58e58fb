"""The reference images FID compares against: a pixcap output (its shards), shard tars given as
paths or globs, or a folder of image files. Read in a fixed order, up to a limit."""
from __future__ import annotations

import glob
import io
import os
import tarfile
from typing import Iterator, List

from PIL import Image

from pixcap.schemas import JobError
from pixcap.output import layout
from pixcap.schemas.records import IMAGE_EXT

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def reference_files(spec: str) -> List[str]:
    """Tar files or image files, sorted; JobError when there are none."""
    if os.path.isdir(layout.under(spec, layout.SHARDS)):
        files = sorted(glob.glob(layout.under(spec, layout.shard_glob("tar"))))
    elif os.path.isdir(spec):
        files = sorted(os.path.join(root, name) for root, _, names in os.walk(spec) for name in names
                       if name.lower().endswith(IMAGE_SUFFIXES + (".tar",)))
    else:
        files = sorted(glob.glob(spec))
    if not files:
        raise JobError(f"--reference: no shards or images at {spec}")
    return files


def _decoded(data: bytes):
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except Exception:  # a broken file is left out of the reference, counted by the caller
        return None


def reference_images(spec: str, limit: int) -> Iterator:
    """Decoded RGB images (None for one that does not decode), at most `limit`."""
    seen = 0
    for path in reference_files(spec):
        if path.endswith(".tar"):
            with tarfile.open(path) as tar:
                for member in tar:
                    if member.isfile() and member.name.endswith("." + IMAGE_EXT):
                        yield _decoded(tar.extractfile(member).read())
                        seen += 1
                        if seen >= limit:
                            return
        else:
            with open(path, "rb") as f:
                yield _decoded(f.read())
            seen += 1
            if seen >= limit:
                return
