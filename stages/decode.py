"""decode: original bytes -> upright RGB for the models, plus the bytes to store in the shard.

Each image is opened once. Its header alone decides the cheap rejects (too large, too small,
bad aspect), so a decompression bomb is never decoded. A JPEG is then decoded at a reduced
size (libjpeg-turbo's DCT scaling) large enough for both outputs, which is most of the speed on
SA-1B photos. A JPEG that is already RGB, sRGB, upright and small enough is stored as its
original bytes; everything else is re-encoded as an upright sRGB JPEG (see colour.py).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image, ImageFile, UnidentifiedImageError

from pixcap.schemas import rejects as R
from pixcap.schemas import batch as B
from pixcap.schemas.stages import DecodeConfig

from .colour import needs_conversion, to_srgb
from .outcomes import MAX_ERROR_CHARS, RowOutcomes, error_text
from .pixels import resize

STAGE = "decode"
EXIF_ORIENTATION = 0x0112
TURNED_ORIENTATIONS = (2, 3, 4, 5, 6, 7, 8)  # 1 is upright; other values are invalid and ignored
# The stored image is the training target and is kept, so it gets the sharper filter. The model
# image is antialiased bicubic (pixels.py), the filter the models' own transforms use.
STORED_RESAMPLE = Image.Resampling.LANCZOS
REDUCING_GAP = 3.0  # a whole-factor shrink leaves at least 3x the outputs' size (as PIL's reducing_gap)
STRIP_ROWS = 512  # rows of a decoded image shrunk at a time
# Modes Image.reduce does not take, and the mode each is reduced in.
UNREDUCIBLE_MODES = {"1": "L", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}
# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose does).
ORIENTATION_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                         4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                         6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}

# Columns decode adds (besides STORED and MODEL_IMAGE), with what a rejected row carries.
NEUTRAL = {B.SHA256: "", B.FORMAT: "", B.WIDTH: 0, B.HEIGHT: 0, B.ORIG_WIDTH: 0,
           B.ORIG_HEIGHT: 0, B.PASSTHROUGH: False}


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

    def record_columns(self) -> dict:
        """The record's columns decode fills, except SHA256 (a function of the input bytes)."""
        return {B.FORMAT: self.format, B.WIDTH: self.width, B.HEIGHT: self.height,
                B.ORIG_WIDTH: self.orig_width, B.ORIG_HEIGHT: self.orig_height, B.PASSTHROUGH: self.passthrough}


def scaled_size(width: int, height: int, scale: float) -> tuple:
    return max(1, round(width * scale)), max(1, round(height * scale))


def open_image(data: bytes, config: DecodeConfig) -> Image.Image:
    """Identify the bytes and check the header's size; nothing is decoded yet."""
    if not data:
        raise Reject(R.EMPTY_FILE, "zero bytes")
    try:
        with warnings.catch_warnings():
            # Sizes between PIL's limit and ours are ours to judge, below; don't warn per image.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise Reject(R.NOT_AN_IMAGE, "no image format recognises these bytes") from None
    except Image.DecompressionBombError as e:  # PIL's own, fixed limit; stricter than ours can be
        raise Reject(R.TOO_LARGE, str(e)) from None
    width, height = image.size
    if width * height > config.max_pixels:
        raise Reject(R.TOO_LARGE, f"{width}x{height} is more than {config.max_pixels} pixels")
    short, long = min(width, height), max(width, height)
    if short < config.min_side:
        raise Reject(R.TOO_SMALL, f"{width}x{height}: a side is shorter than {config.min_side}")
    if long / short > config.max_aspect_ratio:
        raise Reject(R.BAD_ASPECT, f"{width}x{height}: aspect ratio {long / short:.2f} is beyond "
                                   f"{config.max_aspect_ratio}")
    return image


def reduced_jpeg_pixels(data: bytes, width: int, height: int):
    """The JPEG's RGB pixels at the smallest DCT scale at least width x height, or None where
    libjpeg-turbo reports any problem; PIL then decodes the file and judges it (a truncated
    file is a reject, a harmless warning such as extraneous bytes is not)."""
    try:
        # simplejpeg: libjpeg-turbo with SIMD and DCT scaling, ~8% faster than PIL's draft on the
        # same files (bench/bench_decode.py). strict: a warning raises instead of padding grey.
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=width, min_height=height, strict=True)
    except ValueError:
        return None


def passthrough_model_image(data: bytes, width: int, height: int, model_scale: float):
    """The model image of an original that passes through (upright RGB sRGB JPEG), or None."""
    pixels = reduced_jpeg_pixels(data, math.ceil(width * model_scale), math.ceil(height * model_scale))
    return None if pixels is None else resize(pixels, *scaled_size(width, height, model_scale))


@contextlib.contextmanager
def codec_errors():
    """PIL's errors while reading pixels, as rejects."""
    try:
        yield
    except Image.DecompressionBombError as e:
        raise Reject(R.TOO_LARGE, str(e)) from None
    except Exception as e:  # truncated or corrupt data, in whatever way the codec says it
        raise Reject(R.DECODE_ERROR, f"{type(e).__name__}: {e}") from None


def load_pixels(image: Image.Image, decode_scale: float) -> None:
    """Decode the first frame (of an animation), a JPEG at the smallest DCT scale not below
    decode_scale."""
    width, height = image.size
    with codec_errors():
        if decode_scale < 1.0:
            # draft works in the file's own (unrotated) frame and never returns less than asked.
            image.draft("RGB", (math.ceil(width * decode_scale), math.ceil(height * decode_scale)))
        image.load()


def reduced(image: Image.Image, scale: float) -> Image.Image:
    """The decoded image shrunk by a whole factor (a box average) while it is still at least
    REDUCING_GAP times what the outputs need; `scale` is the largest output's size over its size.

    A JPEG is decoded reduced (DCT scaling); PNG, WebP, TIFF and the rest are decoded whole, and
    every later step (mode and colour conversion, turning upright, the arrays the resizes take)
    copied the whole image: a 100-megapixel PNG held about 950 MiB, an RGBA one more. Shrunk here,
    a strip of rows at a time (so a mode conversion, or the premultiplied copy Image.reduce makes
    of RGBA, is never of the whole image), the peak is about the decoded image itself. This is what
    resize(reducing_gap=3) does inside PIL, done before the copies rather than after."""
    factor = int(1 / (scale * REDUCING_GAP))
    if factor < 2:
        return image
    width, height = image.size
    rows = max(1, STRIP_ROWS // factor) * factor  # whole blocks: strips give what one reduce would
    small = None
    with codec_errors():
        for top in range(0, height, rows):
            strip = _reducible(image.crop((0, top, width, min(height, top + rows)))).reduce(factor)
            if small is None:
                small = Image.new(strip.mode, (math.ceil(width / factor), math.ceil(height / factor)))
                small.info = dict(strip.info)  # the ICC profile is applied after
            small.paste(strip, (0, top // factor))
    return small


def _reducible(strip: Image.Image) -> Image.Image:
    """A strip in a mode Image.reduce takes; a colour key (transparency) becomes alpha first, or
    averaging would blur it away."""
    if strip.mode == "P" or "transparency" in strip.info:
        converted = strip.convert("RGBA" if "transparency" in strip.info else "RGB")
        converted.info.pop("transparency", None)
        return converted
    return strip.convert(UNREDUCIBLE_MODES[strip.mode]) if strip.mode in UNREDUCIBLE_MODES else strip


def upright_image(image: Image.Image, orientation: int) -> Image.Image:
    """The image turned as its EXIF orientation says (read before any reduce, which drops EXIF)."""
    method = ORIENTATION_TRANSPOSE.get(orientation)
    return image if method is None else image.transpose(method)


def decode_image(data: bytes, config: DecodeConfig) -> Decoded:
    """Decode one image; raises Reject for inputs that cannot be used."""
    image = open_image(data, config)
    image_format = (image.format or "").lower()
    width, height = image.size  # as stored in the file, before orientation
    store_scale = min(1.0, config.max_side / max(width, height))
    model_scale = min(1.0, config.model_side / min(width, height))
    with codec_errors():  # a PNG reads its pixels to find EXIF, which may follow them
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        # MPO (a JPEG with more pictures appended) is re-encoded so only the first is stored.
        passthrough = (image_format == "jpeg" and image.mode == "RGB" and store_scale == 1.0
                       and orientation not in TURNED_ORIENTATIONS and not needs_conversion(image))

    if passthrough:  # the common SA-1B case: only the model image is made from the pixels
        model_image = passthrough_model_image(data, width, height, model_scale)
        if model_image is not None:
            return Decoded(data, model_image, image_format, width, height, width, height, True)

    load_pixels(image, model_scale if passthrough else max(store_scale, model_scale))
    if not passthrough:
        image = reduced(image, max(store_scale, model_scale))
    loaded_size = image.size
    image = upright_image(image, orientation)
    # Judged from what the transpose did, so the recorded sizes always match the pixels.
    turned_sideways = image.size != loaded_size
    orig_width, orig_height = (height, width) if turned_sideways else (width, height)
    upright = to_srgb(image)

    model_image = resize(np.asarray(upright), *scaled_size(orig_width, orig_height, model_scale))
    if passthrough:
        stored, stored_size = data, (orig_width, orig_height)
    else:
        stored_image = upright.resize(scaled_size(orig_width, orig_height, store_scale), STORED_RESAMPLE,
                                      reducing_gap=3.0)  # whole-factor shrinking first, cheaply
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
        outcomes = RowOutcomes(batch, STAGE)
        live = set(outcomes.live_rows())
        for i in range(rows):
            decoded = None
            if i in live:
                try:
                    decoded = decode_image(batch[B.DATA][i], self.config)
                except Reject as e:
                    outcomes.reject(i, e.reason, one_line(str(e)))
                except Exception as e:  # a codec bug must cost one row, not the batch
                    outcomes.reject(i, R.DECODE_ERROR, error_text(e))
            self._append(columns, decoded, batch[B.DATA][i])
        out.update(columns)
        out.update(outcomes.columns())
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
        columns[B.SHA256].append(hashlib.sha256(data).hexdigest())
        for name, value in decoded.record_columns().items():
            columns[name].append(value)
