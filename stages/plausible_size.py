"""Whether a large member's size is plausible for an image, judged from its first bytes.

A member is held in memory whole, so a small compressed tar can make a worker hold gigabytes:
a `.tar.gz` of 64 MiB members of zeros named `.jpg` is 1 MB on disk. A member bigger than
PEEK_ABOVE is therefore peeked first: PIL identifies the format and size from the prefix, and
a member much bigger than its pixels could need is rejected before the rest is read.
"""
from __future__ import annotations

import io
import warnings

from PIL import Image

from pixcap.schemas import rejects as R

PEEK_ABOVE = 4 << 20  # smaller members are read whole at once: a batch's byte bound covers them
PEEK_BYTES = 1 << 20  # holds any header PIL reads (JPEG markers up to the scan, PNG chunks up to IDAT)
# What an image may carry beside its pixels (EXIF, ICC profiles, XMP, thumbnails, MPO pictures).
METADATA_BYTES = 16 << 20
# Compressed pixels never take 4x their raw size; formats that hold several frames may hold many.
RAW_FACTOR = 4
FRAMES_FACTOR = 64
FRAME_FORMATS = frozenset({"GIF", "PNG", "TIFF", "WEBP", "MPO"})


def _bytes_per_pixel(image: Image.Image) -> int:
    sample = 4 if image.mode in ("I", "F") else 2 if "16" in image.mode else 1
    return max(1, len(image.getbands())) * sample


def plausible_bytes(image: Image.Image) -> int:
    """The most bytes a file of this format and size can reasonably take."""
    width, height = image.size
    factor = FRAMES_FACTOR if image.format in FRAME_FORMATS else RAW_FACTOR
    return METADATA_BYTES + factor * width * height * _bytes_per_pixel(image)


def _has_image_signature(prefix: bytes) -> bool:
    """PIL's own signature checks: a known format whose header PIL could not read from the
    prefix (WebP needs the whole file) is not judged by its size here."""
    Image.init()
    return any(accept is not None and accept(prefix[:16]) for _, accept in Image.OPEN.values())


def size_problem(name: str, size: int, prefix: bytes) -> tuple:
    """(reason, error) for a member of `size` bytes whose first bytes are `prefix`, or ("", "")
    when it may be read whole."""
    if size <= PEEK_ABOVE:
        return "", ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a truncated header or a bomb warning: judged below
            image = Image.open(io.BytesIO(prefix))
    except Image.DecompressionBombError:
        return R.TOO_LARGE, f"{name}: its header declares more pixels than PIL opens; not read"
    except Exception:  # PIL raises what its parser meets on a cut header: not an error here
        if _has_image_signature(prefix):
            return "", ""
        return R.NOT_AN_IMAGE, (f"{name}: {size} bytes whose first {len(prefix)} no image format "
                                "recognises; not read")
    bound = plausible_bytes(image)
    if size > bound:
        width, height = image.size
        return R.TOO_LARGE, (f"{name}: {size} bytes is more than a {width}x{height} {image.format} "
                             f"can take ({bound}); not read")
    return "", ""


def read_checked(f, name: str, size: int) -> tuple:
    """(data, reason, error) for a member of `size` bytes open as f: its bytes, or b"" and why it
    is rejected unread (the rest of it is never held)."""
    if size <= PEEK_ABOVE:
        return f.read(), "", ""
    head = f.read(PEEK_BYTES)
    reason, error = size_problem(name, size, head)
    if reason:
        return b"", reason, error
    return head + f.read(), "", ""
