"""Colour: any PIL mode and embedded ICC profile -> plain 8-bit sRGB.

Models and trainers read stored JPEGs as sRGB. A photo tagged with another profile (Display P3,
Adobe RGB, a printer's CMYK) has pixel values that mean other colours, so they are converted
through the profile; a file without a profile, or with a broken one, is taken as sRGB already.
"""
from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageCms

TRANSPARENT_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
WHITE = (255, 255, 255)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# The profile's colour space -> the image mode its transform takes.
PROFILE_INPUT_MODES = {"RGB": "RGB", "CMYK": "CMYK", "GRAY": "L"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> RGB: 16-bit scaled to 8, transparency composited on white."""
    if image.mode in SIXTEEN_BIT_MODES:
        # PIL's own I -> L conversion clips at 255 instead of scaling the 16-bit range down.
        levels = np.asarray(image).astype(np.float32)
        eight_bit = np.clip(np.rint(levels / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(eight_bit, "L").convert("RGB")
    if image.mode == "P" or "transparency" in image.info:
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    if image.mode in TRANSPARENT_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


@lru_cache(maxsize=32)
def _transform(icc: bytes, input_mode: str):
    """The ICC -> sRGB transform for a profile, or None when it is sRGB, unusable, or does not
    fit the mode. Cached: a collection's photos mostly share a handful of profiles."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ImageCms.PyCMSError):
        return None
    description = profile.profile.profile_description or ""
    space = profile.profile.xcolor_space.strip()
    if "sRGB" in description or PROFILE_INPUT_MODES.get(space) != input_mode:
        return None
    try:
        return ImageCms.buildTransform(profile, SRGB, input_mode, "RGB")
    except ImageCms.PyCMSError:
        return None


def _profile_input_mode(image: Image.Image) -> str:
    """The mode an image is handed to its profile's transform in."""
    return image.mode if image.mode in ("CMYK", "L") else "RGB"


def _image_transform(image: Image.Image):
    """The transform of the image's own profile to sRGB, or None (no profile, or sRGB already)."""
    icc = image.info.get("icc_profile")
    return _transform(icc, _profile_input_mode(image)) if icc else None


def needs_conversion(image: Image.Image) -> bool:
    """Whether the image carries a profile other than sRGB (so its bytes cannot be kept as they are)."""
    return _image_transform(image) is not None


def to_srgb(image: Image.Image) -> Image.Image:
    """Any mode and profile -> sRGB RGB; the profile is dropped, since the pixels are sRGB now."""
    transform = _image_transform(image)
    if transform is None:
        return to_rgb(image)
    source = image if _profile_input_mode(image) != "RGB" else to_rgb(image)
    return ImageCms.applyTransform(source, transform)
