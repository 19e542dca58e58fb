"""decode: original bytes -> upright RGB for the models, plus the bytes to store in the shard.

Each image is opened once. Its header alone decides the cheap rejects (too large, too small,
bad aspect), so a decompression bomb is never decoded. A JPEG is then decoded at a reduced
size (libjpeg's DCT scaling via `draft`) large enough for both outputs, which is most of the
speed on SA-1B photos. A JPEG that is already RGB, sRGB, upright and small enough is stored as
its original bytes; everything else is re-encoded as an upright sRGB JPEG (see colour.py).
"""
from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from pixcap.schemas import batch as B
from pixcap.schemas.job import DecodeConfig

from .colour import needs_conversion, to_srgb

STAGE = "decode"
EXIF_ORIENTATION = 0x0112
TURNED_ORIENTATIONS = (2, 3, 4, 5, 6, 7, 8)  # 1 is upright; other values are invalid and ignored
# The stored image is the training target and is kept, so it gets the sharper filter; the model
# image is resized again by the models' own (bicubic) transforms, and bicubic costs a third less.
STORED_RESAMPLE = Image.Resampling.LANCZOS
MODEL_RESAMPLE = Image.Resampling.BICUBIC
MAX_ERROR_CHARS = 500

# Columns decode adds (besides STORED and MODEL_IMAGE), with what a rejected row carries.
NEUTRAL = {"sha256": "", "format": "", "width": 0, "height": 0, "orig_width": 0,
           "orig_height": 0, "passthrough": False}


class Reject(Exception):
    """An input decode refuses; `reason` is one of schemas.rejects.REASONS."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Decoded:
    stored: bytes
    model_image: np.ndarray
    format: str
    width: int
    height: int
    orig_width: int
    orig_height: int
    passthrough: bool


def scaled_size(width: int, height: int, scale: float) -> tuple:
    return max(1, round(width * scale)), max(1, round(height * scale))


def open_image(data: bytes, config: DecodeConfig) -> Image.Image:
    """Identify the bytes and check the header's size; nothing is decoded yet."""
    if not data:
        raise Reject("empty_file", "zero bytes")
    try:
        with warnings.catch_warnings():
            # Sizes between PIL's limit and ours are ours to judge, below; don't warn per image.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise Reject("not_an_image", "no image format recognises these bytes") from None
    except Image.DecompressionBombError as e:  # PIL's own, fixed limit; stricter than ours can be
        raise Reject("too_large", str(e)) from None
    width, height = image.size
    if width * height > config.max_pixels:
        raise Reject("too_large", f"{width}x{height} is more than {config.max_pixels} pixels")
    short, long = min(width, height), max(width, height)
    if short < config.min_side:
        raise Reject("too_small", f"{width}x{height}: a side is shorter than {config.min_side}")
    if long / short > config.max_aspect_ratio:
        raise Reject("bad_aspect", f"{width}x{height}: aspect ratio {long / short:.2f} is beyond "
                                   f"{config.max_aspect_ratio}")
    return image


def resized(image: Image.Image, size: tuple, resample: Image.Resampling) -> Image.Image:
    # reducing_gap first shrinks by whole factors, cheaply, where a PNG is many times too large.
    return image if image.size == size else image.resize(size, resample, reducing_gap=3.0)


def decode_image(data: bytes, config: DecodeConfig) -> Decoded:
    """Decode one image; raises Reject for inputs that cannot be used."""
    image = open_image(data, config)
    image_format = (image.format or "").lower()
    width, height = image.size  # as stored in the file, before orientation
    store_scale = min(1.0, config.max_side / max(width, height))
    model_scale = min(1.0, config.model_side / min(width, height))
    try:
        # Inside the try: a PNG reads its pixels to find EXIF, which may follow them.
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        # MPO (a JPEG with more pictures appended) is re-encoded so only the first is stored.
        passthrough = (image_format == "jpeg" and image.mode == "RGB" and store_scale == 1.0
                       and orientation not in TURNED_ORIENTATIONS and not needs_conversion(image))
        decode_scale = model_scale if passthrough else max(store_scale, model_scale)
        if decode_scale < 1.0:
            # draft works in the file's own (unrotated) frame and never returns less than asked.
            image.draft("RGB", (math.ceil(width * decode_scale), math.ceil(height * decode_scale)))
        image.load()  # the first frame only, for animations
    except Image.DecompressionBombError as e:
        raise Reject("too_large", str(e)) from None
    except Exception as e:  # truncated or corrupt data, in whatever way the codec says it
        raise Reject("decode_error", f"{type(e).__name__}: {e}") from None
    loaded_size = image.size
    ImageOps.exif_transpose(image, in_place=True)
    # Judged from what the transpose did, so the recorded sizes always match the pixels.
    turned_sideways = image.size != loaded_size
    orig_width, orig_height = (height, width) if turned_sideways else (width, height)
    upright = to_srgb(image)

    # np.array, not asarray: PIL's buffer is read-only, and torch.from_numpy downstream warns on it.
    model_image = np.array(resized(upright, scaled_size(orig_width, orig_height, model_scale),
                                    MODEL_RESAMPLE))
    if passthrough:
        stored, stored_size = data, (orig_width, orig_height)
    else:
        stored_image = resized(upright, scaled_size(orig_width, orig_height, store_scale),
                               STORED_RESAMPLE)
        buffer = io.BytesIO()
        stored_image.save(buffer, "JPEG", quality=config.jpeg_quality)
        stored, stored_size = buffer.getvalue(), stored_image.size
    return Decoded(stored, model_image, image_format, stored_size[0], stored_size[1],
                   orig_width, orig_height, passthrough)


def one_line(message: str) -> str:
    return " ".join(message.split())[:MAX_ERROR_CHARS]


class DecodeStage:
    """Adds STORED, MODEL_IMAGE and the image's record columns; consumes DATA."""

    def __init__(self, config: DecodeConfig):
        self.config = config

    def __call__(self, batch: dict) -> dict:
        # Padding a truncated JPEG with grey would store a broken image; some libraries flip
        # this process-wide switch on import, so it is set back before every batch.
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        out = {column: values for column, values in batch.items() if column != B.DATA}
        rows = len(batch[B.KEY])
        columns = {name: [] for name in (B.STORED, B.MODEL_IMAGE, *NEUTRAL)}
        stages, reasons, errors = (list(batch[c]) for c in
                                   (B.REJECT_STAGE, B.REJECT_REASON, B.REJECT_ERROR))
        for i in range(rows):
            decoded = None
            if not reasons[i]:
                try:
                    decoded = decode_image(batch[B.DATA][i], self.config)
                except Reject as e:
                    stages[i], reasons[i], errors[i] = STAGE, e.reason, one_line(str(e))
                except Exception as e:  # a codec bug must cost one row, not the batch
                    stages[i], reasons[i] = STAGE, "decode_error"
                    errors[i] = one_line(f"{type(e).__name__}: {e}")
            self._append(columns, decoded, batch[B.DATA][i])
        out.update(columns)
        out[B.REJECT_STAGE], out[B.REJECT_REASON], out[B.REJECT_ERROR] = stages, reasons, errors
        return out

    @staticmethod
    def _append(columns: dict, decoded, data: bytes) -> None:
        if decoded is None:
            columns[B.STORED].append(b"")
            columns[B.MODEL_IMAGE].append(np.zeros(B.MODEL_IMAGE_EMPTY_SHAPE, np.uint8))
            for name, neutral in NEUTRAL.items():
                columns[name].append(neutral)
            return
        columns[B.STORED].append(decoded.stored)
        columns[B.MODEL_IMAGE].append(decoded.model_image)
        columns["sha256"].append(hashlib.sha256(data).hexdigest())
        for name in ("format", "width", "height", "orig_width", "orig_height", "passthrough"):
            columns[name].append(getattr(decoded, name))
