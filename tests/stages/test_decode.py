"""DecodeStage on images built here with PIL and numpy; no Ray."""
import hashlib
import io
import struct
import tarfile
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

from pixcap.demo.sa1b import write_demo_collection
from pixcap.schemas import batch as B
from pixcap.schemas.stages import DecodeConfig
from pixcap.schemas.rejects import REASONS
from pixcap.stages.decode import DecodeStage

from ..pipeline.hostile import swapped_primaries_profile

CONFIG = DecodeConfig(max_side=1024, model_side=336, min_side=32, max_aspect_ratio=8.0)
RED = (255, 0, 0)


def photo(width, height, seed=0):
    """A smooth colour image with some noise: compresses like a photo, not like a flat fill."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    noisy = base + rng.normal(0, 8, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def encoded(image, fmt, **params):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def jpeg(image, orientation=None, quality=90):
    params = {"quality": quality}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        params["exif"] = exif.tobytes()
    return encoded(image, "JPEG", **params)


def decode(*datas, config=CONFIG, reasons=None):
    """Run the stage over one batch of byte strings; returns the output batch."""
    rows = len(datas)
    batch = {
        B.KEY: [f"k{i}" for i in range(rows)],
        B.SOURCE: [f"in.tar::{i}" for i in range(rows)],
        B.DATA: list(datas),
        B.REJECT_STAGE: ["read" if reasons and reasons[i] else "" for i in range(rows)],
        B.REJECT_REASON: list(reasons or [""] * rows),
        B.REJECT_ERROR: ["earlier" if reasons and reasons[i] else "" for i in range(rows)],
    }
    return DecodeStage(config)(batch)


def row(out, i=0):
    return {column: values[i] for column, values in out.items()}


def accepted(data, config=CONFIG):
    r = row(decode(data, config=config))
    assert r[B.REJECT_REASON] == "", r[B.REJECT_ERROR]
    return r


def rejected(data, config=CONFIG):
    r = row(decode(data, config=config))
    assert r[B.REJECT_STAGE] == "decode"
    assert r[B.REJECT_REASON] in REASONS
    assert r[B.REJECT_ERROR] and "\n" not in r[B.REJECT_ERROR]
    assert r[B.MODEL_IMAGE].shape == B.MODEL_IMAGE_EMPTY_SHAPE and r[B.STORED] == b""
    assert (r[B.SHA256], r[B.FORMAT], r[B.WIDTH], r[B.PASSTHROUGH]) == ("", "", 0, False)
    return r[B.REJECT_REASON]


def stored_image(r):
    image = Image.open(io.BytesIO(r[B.STORED]))
    assert image.format == "JPEG" and image.mode == "RGB"
    return image


def png_chunks(data):
    """[(kind, body)] of a PNG."""
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        chunks.append((data[at + 4:at + 8], data[at + 8:at + 8 + length]))
        at += 12 + length
    return chunks


def png_from_chunks(chunks):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunk(kind, body) for kind, body in chunks)


def png_header_only(width, height, bit_depth=1, color_type=0, idat=b""):
    """A PNG that declares a size but carries (almost) no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return png_from_chunks([(b"IHDR", ihdr), (b"IDAT", idat), (b"IEND", b"")])


def test_format_comes_from_the_bytes():
    assert accepted(encoded(photo(64, 48), "PNG"))[B.FORMAT] == "png"
    assert accepted(jpeg(photo(64, 48)))[B.FORMAT] == "jpeg"
    assert accepted(encoded(photo(64, 48), "WEBP"))[B.FORMAT] == "webp"


def test_upright_small_rgb_jpeg_is_passed_through_byte_identical():
    data = jpeg(photo(640, 480))
    r = accepted(data)
    assert r[B.PASSTHROUGH] is True and r[B.STORED] == data
    assert (r[B.WIDTH], r[B.HEIGHT], r[B.ORIG_WIDTH], r[B.ORIG_HEIGHT]) == (640, 480, 640, 480)
    assert r[B.SHA256] == hashlib.sha256(data).hexdigest()


def test_exif_rotated_jpeg_comes_out_upright_and_is_reencoded():
    image = photo(300, 200)
    image.paste(RED, (0, 0, 60, 40))  # the file's top-left corner
    r = accepted(jpeg(image, orientation=6))  # 6: shown turned 90 degrees clockwise
    assert r[B.PASSTHROUGH] is False
    assert (r[B.ORIG_WIDTH], r[B.ORIG_HEIGHT]) == (200, 300)
    stored = stored_image(r)
    assert stored.size == (200, 300) and stored.getexif().get(0x0112, 1) == 1
    # Turned clockwise, the file's top-left corner is shown at the top right.
    assert np.allclose(stored.getpixel((190, 10)), RED, atol=40)
    model = r[B.MODEL_IMAGE]
    assert model.shape == (300, 200, 3)  # short side 200 < model_side: kept as it is
    assert np.allclose(model[10, 190], RED, atol=40)


def test_png_with_its_exif_orientation_after_the_pixels_comes_out_upright():
    exif = Image.Exif()
    exif[0x0112] = 6
    chunks = png_chunks(encoded(photo(300, 200), "PNG", exif=exif.tobytes()))
    exif_chunk = next(c for c in chunks if c[0] == b"eXIf")
    others = [c for c in chunks if c[0] != b"eXIf"]
    r = accepted(png_from_chunks(others[:-1] + [exif_chunk, others[-1]]))  # just before IEND
    assert (r[B.ORIG_WIDTH], r[B.ORIG_HEIGHT], r[B.WIDTH], r[B.HEIGHT]) == (200, 300, 200, 300)
    assert r[B.MODEL_IMAGE].shape == (300, 200, 3)


def test_large_image_is_downscaled_to_max_side():
    data = jpeg(photo(2000, 1200))
    sha = hashlib.sha256(data).hexdigest()
    r = accepted(data)
    assert r[B.PASSTHROUGH] is False and r[B.SHA256] == sha
    assert stored_image(r).size == (1024, 614) == (r[B.WIDTH], r[B.HEIGHT])
    assert (r[B.ORIG_WIDTH], r[B.ORIG_HEIGHT]) == (2000, 1200)
    assert r[B.MODEL_IMAGE].shape == (336, 560, 3)


@pytest.mark.parametrize("size, model_shape", [((1200, 1800), (504, 336, 3)), ((800, 500), (336, 538, 3)),
                                               ((200, 120), (120, 200, 3))])
def test_model_image_short_side_is_model_side_or_the_original(size, model_shape):
    model = accepted(encoded(photo(*size), "PNG"))[B.MODEL_IMAGE]
    assert model.shape == model_shape and model.dtype == np.uint8 and model.flags.writeable


def test_draft_decoded_model_image_matches_a_full_decode():
    image = photo(1600, 1200, seed=3)
    data = jpeg(image, quality=95)
    model = accepted(data)[B.MODEL_IMAGE].astype(np.float32)
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((448, 336), Image.LANCZOS))
    assert model.shape == (336, 448, 3)
    assert np.abs(model - reference).mean() < 3


def test_cmyk_and_grayscale_jpegs_give_rgb():
    for mode in ("CMYK", "L"):
        r = accepted(jpeg(photo(120, 90).convert(mode)))
        assert r[B.MODEL_IMAGE].shape == (90, 120, 3) and r[B.PASSTHROUGH] is False
        assert stored_image(r).size == (120, 90)


def test_embedded_icc_profile_is_converted_to_srgb():
    red = Image.new("RGB", (80, 60), RED)
    r = accepted(jpeg_with_profile(red, swapped_primaries_profile()))
    assert r[B.PASSTHROUGH] is False
    for pixels in (np.asarray(stored_image(r)), r[B.MODEL_IMAGE]):
        mean = pixels.reshape(-1, 3).mean(axis=0)
        assert mean[2] > 200 and mean[0] < 60, mean  # the file's red is the profile's blue
    assert "icc_profile" not in stored_image(r).info  # the stored pixels are plain sRGB now


def test_srgb_tagged_and_broken_profiles_keep_the_original_bytes():
    image = photo(80, 60)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for profile in (srgb, b"not an icc profile at all" * 8):
        data = jpeg_with_profile(image, profile)
        r = accepted(data)
        assert r[B.PASSTHROUGH] is True and r[B.STORED] == data


def jpeg_with_profile(image, profile: bytes) -> bytes:
    return encoded(image, "JPEG", quality=95, icc_profile=profile)


def test_sixteen_bit_png_is_scaled_to_eight_bits():
    levels = np.full((40, 60), 65535, np.uint16)
    levels[:, :30] = 32896  # 128 * 257
    r = accepted(encoded(Image.fromarray(levels), "PNG"))
    model = r[B.MODEL_IMAGE]
    assert model.shape == (40, 60, 3)
    assert (model[:, 40:] == 255).all() and (model[:, :20] == 128).all()


def test_transparency_is_composited_on_white():
    rgba = np.zeros((50, 80, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 40:, 3] = 255  # left half fully transparent
    model = accepted(encoded(Image.fromarray(rgba, "RGBA"), "PNG"))[B.MODEL_IMAGE]
    assert (model[:, :30] == 255).all() and (model[:, 50:] == (200, 0, 0)).all()

    palette = Image.new("P", (80, 50), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(0, (0, 0, 40, 50))
    model = accepted(encoded(palette, "PNG", transparency=0))[B.MODEL_IMAGE]
    assert (model[:, :30] == 255).all() and (model[:, 50:] == (0, 0, 255)).all()

    gray_alpha = Image.fromarray(rgba[..., [0, 3]], "LA")
    model = accepted(encoded(gray_alpha, "PNG"))[B.MODEL_IMAGE]
    assert (model[:, :30] == 255).all() and (model[:, 50:] == 200).all()


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (64, 48), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    r = accepted(data)
    assert r[B.FORMAT] == "gif" and r[B.MODEL_IMAGE].shape == (48, 64, 3)
    assert (r[B.MODEL_IMAGE] == (255, 0, 0)).all()


@pytest.mark.parametrize("size", [(400, 300), (2000, 1500)])  # full decode, and draft decode
def test_truncated_jpeg_is_a_decode_error(size):
    data = jpeg(photo(*size))
    assert rejected(data[: len(data) * 2 // 3]) == "decode_error"


def test_truncated_jpeg_is_rejected_even_when_pil_was_told_to_pad(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as some libraries do on import
    data = jpeg(photo(400, 300))
    assert rejected(data[: len(data) // 2]) == "decode_error"


def test_empty_and_non_image_bytes():
    assert rejected(b"") == "empty_file"
    assert rejected(b"hello, I am a caption, not a picture\n") == "not_an_image"


def test_decompression_bomb_is_refused_from_its_header():
    # 30000x30000 declared: PIL's own bomb check fires in Image.open and must become a reject.
    assert rejected(png_header_only(30000, 30000, idat=zlib.compress(b"\0" * 1000))) == "too_large"
    # Under PIL's limit but over ours: the pixel data is missing, so a decode attempt would
    # have been a decode_error; too_large shows the header alone decided.
    small_limit = DecodeConfig(max_pixels=1_000_000)
    assert rejected(png_header_only(2000, 1000), config=small_limit) == "too_large"
    assert rejected(png_header_only(1000, 900)) == "decode_error"


def test_too_small_and_bad_aspect():
    assert rejected(jpeg(photo(20, 100))) == "too_small"
    assert rejected(encoded(photo(900, 100), "PNG")) == "bad_aspect"


def test_rejected_rows_pass_through_and_data_is_dropped():
    good = jpeg(photo(100, 80))
    out = decode(b"junk", good, reasons=["read_error", ""])
    assert B.DATA not in out and out[B.SOURCE] == ["in.tar::0", "in.tar::1"]
    assert out[B.REJECT_STAGE] == ["read", ""] and out[B.REJECT_REASON] == ["read_error", ""]
    assert out[B.REJECT_ERROR][0] == "earlier"
    assert out[B.MODEL_IMAGE][0].shape == B.MODEL_IMAGE_EMPTY_SHAPE and out[B.SHA256][0] == ""
    assert out[B.STORED][1] == good


def test_a_batch_of_mixed_inputs_never_raises():
    datas = [b"", b"text", jpeg(photo(64, 64)), png_header_only(30000, 30000), jpeg(photo(300, 200))[:500]]
    out = decode(*datas)
    assert out[B.REJECT_REASON] == ["empty_file", "not_an_image", "", "too_large", "decode_error"]
    assert all(len(values) == len(datas) for values in out.values())


def test_the_bundled_sample_decodes(tmp_path):
    datas = []
    for path in write_demo_collection(tmp_path):
        with tarfile.open(path) as tar:
            datas += [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg")]
    out = decode(*datas)
    assert len(datas) >= 16 and set(out[B.REJECT_REASON]) == {""}
    assert set(out[B.FORMAT]) == {"jpeg"} and any(out[B.PASSTHROUGH])


# SA-1B photos under the SAM job's decode settings: originals pass through at full resolution.
SAM = DecodeConfig(max_side=16384, model_side=336, min_side=32, max_aspect_ratio=8.0)


def full_decode_model_image(data, size):
    """The reference: every pixel decoded, then PIL's bicubic down to the model size."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize(size, Image.BICUBIC)).astype(np.float32)


@pytest.mark.parametrize("progressive", [False, True])
def test_sa1b_photo_passes_through_at_full_resolution(progressive):
    data = encoded(photo(2250, 1500, seed=5), "JPEG", quality=90, progressive=progressive)
    r = accepted(data, config=SAM)
    assert r[B.PASSTHROUGH] is True and r[B.STORED] == data
    assert (r[B.WIDTH], r[B.HEIGHT], r[B.ORIG_WIDTH], r[B.ORIG_HEIGHT]) == (2250, 1500, 2250, 1500)
    model = r[B.MODEL_IMAGE]
    assert model.shape == (336, 504, 3) and model.flags.writeable
    assert np.abs(model - full_decode_model_image(data, (504, 336))).mean() < 2


def test_jpeg_with_a_harmless_codec_warning_is_accepted_as_pil_accepts_it():
    # libjpeg warns about bytes between the scan and the end marker; PIL decodes such files,
    # so the fast decoder's strictness must not turn them into rejects.
    clean = jpeg(photo(2250, 1500, seed=6))
    warned = clean[:-2] + b"\0\0\0" + clean[-2:]
    r = accepted(warned, config=SAM)
    assert r[B.PASSTHROUGH] is True and r[B.STORED] == warned
    # Decoded by PIL instead, at the same DCT scale and through the same resize: the same pixels.
    assert np.array_equal(r[B.MODEL_IMAGE], accepted(clean, config=SAM)[B.MODEL_IMAGE])


def test_truncated_sa1b_photo_is_a_decode_error_not_grey():
    data = jpeg(photo(2250, 1500))
    assert rejected(data[: len(data) * 2 // 3], config=SAM) == "decode_error"


def test_model_image_of_a_small_passthrough_jpeg_decoded_at_five_eighths():
    # 800x600 needs 448x336: libjpeg-turbo's 5/8 scale (500x375) is the smallest that covers it.
    data = jpeg(photo(800, 600, seed=7), quality=95)
    r = accepted(data, config=SAM)
    assert r[B.PASSTHROUGH] is True and r[B.MODEL_IMAGE].shape == (336, 448, 3)
    assert np.abs(r[B.MODEL_IMAGE] - full_decode_model_image(data, (448, 336))).mean() < 2


def handmade_png(path, width: int, height: int, colour_type: int = 2) -> None:
    """A large PNG written by hand in a second (every row a gradient, zlib level 1): PIL's own
    encoder takes tens of seconds at these sizes. colour_type 2 is RGB, 6 RGBA."""
    channels = {2: 3, 6: 4}[colour_type]

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row_bytes = b"\0" + (np.arange(width * channels) * 7 % 256).astype(np.uint8).tobytes()
    packer = zlib.compressobj(1)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)))
        f.write(chunk(b"IDAT", b"".join(packer.compress(row_bytes) for _ in range(height)) + packer.flush()))
        f.write(chunk(b"IEND", b""))


MEASURE = """
import sys
from pixcap.schemas.stages import DecodeConfig
from pixcap.stages.decode import decode_image

def status(key):
    return next(int(l.split()[1]) << 10 for l in open("/proc/self/status") if l.startswith(key + ":"))

data = open(sys.argv[1], "rb").read()
config = DecodeConfig(max_pixels=int(sys.argv[2]), max_side=int(sys.argv[3]), model_side=int(sys.argv[4]))
decode_image(open(sys.argv[5], "rb").read(), config)  # the lazy imports and first allocations, not measured
before = status("VmRSS")
decode_image(data, config)
print(status("VmHWM") - before)
"""
# The test's decode.max_pixels, a quarter of the default 100 M, with max_side and model_side halved
# (1024 -> 512, 336 -> 168): the geometry of the default job's largest image, in a quarter of the time.
LIMIT_PIXELS, MAX_SIDE, MODEL_SIDE = 25_000_000, 512, 168
PIL_BYTES_PER_PIXEL = 4  # PIL holds RGB and RGBA as 4 bytes a pixel


def test_the_largest_png_the_limits_admit_is_decoded_in_about_its_own_pixels(tmp_path):
    """A read task's memory for one image is bounded by the decoded image (4 bytes a pixel, which
    PIL needs whatever is done after), plus a little: every later copy is of a reduced image.
    Measured as the child process's peak (VmHWM) over what it held before decoding. An RGBA PNG,
    the costliest (Image.reduce and the composite on white copy it): at 100 MP with the default
    job it peaked at 477 MiB, where it took more than 800 MiB before (an RGB one 950 MiB)."""
    import subprocess
    import sys

    width, height = 6000, LIMIT_PIXELS // 6000  # just under the limit
    handmade_png(tmp_path / "big.png", width, height, colour_type=6)
    (tmp_path / "small.png").write_bytes(encoded(photo(64, 48), "PNG"))
    result = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path / "big.png"), str(LIMIT_PIXELS),
                             str(MAX_SIDE), str(MODEL_SIDE), str(tmp_path / "small.png")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    peak = int(result.stdout.strip().splitlines()[-1])
    decoded = PIL_BYTES_PER_PIXEL * width * height
    assert peak < 1.25 * decoded + (32 << 20), f"decoding took {peak >> 20} MiB for {decoded >> 20} MiB of pixels"


@pytest.mark.parametrize("mode", ["RGBA", "P", "I;16"])
def test_a_large_image_decoded_reduced_looks_as_the_whole_one_resized(mode):
    """Reduced by a whole factor first, then resized: the stored image is what PIL's resize of the
    whole image gives (within a level or two), upright, with transparency on white."""
    big = photo(1200, 900, seed=3)
    if mode == "RGBA":
        source = big.convert("RGBA")
        source.putalpha(Image.linear_gradient("L").resize(big.size))
    elif mode == "P":
        source = big.quantize(64)
        source.info["transparency"] = 0
    else:
        source = Image.fromarray(np.asarray(big.convert("L")).astype(np.uint16) * 257)
        assert source.mode == "I;16"
    exif = Image.Exif()
    exif[0x0112] = 6  # turned a quarter: stored 1200x900, shown 900x1200
    data = encoded(source, "PNG", exif=exif.tobytes())
    config = DecodeConfig(max_side=128, model_side=32, min_side=32, max_aspect_ratio=8.0)  # reduced by 3
    r = accepted(data, config)
    assert (r[B.WIDTH], r[B.HEIGHT], r[B.ORIG_WIDTH], r[B.ORIG_HEIGHT]) == (96, 128, 900, 1200)
    # The reference, made by PIL from the whole image: composite on white, turn, resize.
    whole = Image.open(io.BytesIO(data))
    whole.load()
    if mode == "I;16":
        whole = Image.fromarray(np.rint(np.asarray(whole).astype(np.float32) / 257).astype(np.uint8), "L")
    rgba = whole.convert("RGBA")
    white = Image.new("RGB", rgba.size, (255, 255, 255))
    white.paste(rgba, mask=rgba.getchannel("A"))
    expected = white.transpose(Image.Transpose.ROTATE_270).resize((96, 128), Image.Resampling.LANCZOS, reducing_gap=3.0)
    stored = np.asarray(Image.open(io.BytesIO(r[B.STORED])).convert("RGB")).astype(np.int16)
    difference = np.abs(stored - np.asarray(expected).astype(np.int16))
    assert difference.mean() < 2.0 and np.percentile(difference, 99) < 12, (difference.mean(), np.percentile(difference, 99))
