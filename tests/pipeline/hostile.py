"""A corpus of hostile and awkward inputs, built at test time, with what pixcap must do with each.

`build_corpus(root)` writes two tars and a folder under root/in and returns
{source: expected reason}, where "" means written. Sources are what pixcap records: the
folder file's path, or `TAR::MEMBER` for a tar member, or the tar itself for a broken archive.
"""
import io
import os
import struct
import tarfile

from PIL import Image, ImageCms

from .collection import png_bytes
from .tarfiles import add_bytes, jpeg_bytes


def encoded(image, fmt, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def gradient(size) -> Image.Image:
    """A cheap smooth RGB picture of any size (no per-pixel noise, so 24 MP stays fast)."""
    red = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", (red, red.transpose(Image.Transpose.FLIP_TOP_BOTTOM), Image.new("L", size, 90)))


def swapped_primaries_profile() -> bytes:
    """An RGB ICC profile whose red and blue primaries trade places, so a file's pure red means
    sRGB blue. Built from PIL's sRGB profile by swapping two tag-table entries and renaming it."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", data[128:132])
    entries = {bytes(data[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    data[red + 4:red + 12], data[blue + 4:blue + 12] = data[blue + 4:blue + 12], data[red + 4:red + 12]
    return bytes(data).replace("sRGB".encode("utf-16-be"), "swap".encode("utf-16-be"))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares a huge size: a decompression bomb, caught from its header."""
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 200x150, shown turned a quarter: 150x200
    return encoded(gradient((200, 150)), "JPEG", exif=exif.tobytes())


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (64, 48), colour) for colour in ((200, 30, 30), (30, 200, 30))]
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


def sixteen_bit_png() -> bytes:
    import numpy as np

    levels = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    return encoded(Image.fromarray(levels), "PNG")


# (member name, bytes, expected reason) of the main tar, in order.
def image_members() -> list:
    photo = jpeg_bytes(1)
    return [
        ("truncated.jpg", jpeg_bytes(2)[:400], "decode_error"),
        ("empty.jpg", b"", "empty_file"),
        ("text.jpg", b"a caption is not a picture\n" * 4, "not_an_image"),
        ("lies.png", jpeg_bytes(3), ""),  # a JPEG named .png: detected from the bytes
        ("cmyk.jpg", encoded(gradient((96, 64)).convert("CMYK"), "JPEG"), ""),
        ("gray.jpg", encoded(gradient((96, 64)).convert("L"), "JPEG"), ""),
        ("sixteen.png", sixteen_bit_png(), ""),
        ("palette.png", encoded(gradient((96, 64)).convert("P"), "PNG"), ""),
        ("alpha.png", png_bytes(4, mode="RGBA"), ""),
        ("animated.gif", animated("GIF"), ""),
        ("animated.webp", animated("WEBP"), ""),
        ("UPPER.JPG", jpeg_bytes(5), ""),
        ("rotated.jpg", rotated_jpeg(), ""),
        ("profile.jpg", encoded(Image.new("RGB", (80, 60), (255, 0, 0)), "JPEG", icc_profile=swapped_primaries_profile()), ""),
        ("bomb.png", png_header_only(40000, 40000), "too_large"),
        ("24mp.jpg", encoded(gradient((6000, 4000)), "JPEG", quality=85), ""),
        ("tiny.jpg", encoded(gradient((8, 8)), "JPEG"), "too_small"),
        ("strip.jpg", encoded(gradient((3000, 100)), "JPEG"), "bad_aspect"),
        ("../evil.jpg", photo, "unsafe_member"),
        ("/abs.jpg", photo, "unsafe_member"),
        ("dup.jpg", jpeg_bytes(6), ""),
        ("dup.jpg", jpeg_bytes(7), "duplicate"),  # the first of two wins
        ("broken_json.jpg", jpeg_bytes(8), ""),
        ("broken_json.json", b'{"image": {"id": 8', None),  # a sidecar: no input of its own
        ("name.with.dots.jpg", jpeg_bytes(9), ""),
        ("name with spaces.jpg", jpeg_bytes(10), ""),
        ("naïve 写真.jpg", jpeg_bytes(11), ""),
    ]


class _Padded(io.RawIOBase):
    """A stream of `size` bytes: head, then zeros; so a test writes a big member without holding it."""

    def __init__(self, head: bytes, size: int):
        self.head, self.left = head, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = self.head[:n].ljust(n, b"\0")
        self.head = self.head[n:]
        self.left -= n
        return n


def write_padded_tar(path, members) -> None:
    """A tar (gzip-compressed if path ends in .gz) of members (name, size, head): `size` bytes
    starting with head, zeros after."""
    with tarfile.open(path, "w:gz" if str(path).endswith(".gz") else "w") as tar:
        for name, size, head in members:
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BufferedReader(_Padded(head, size), 1 << 20))


def write_gzip_bomb(path, members: int = 16, member_bytes: int = 64 << 20):
    """The trial's bomb: a ~1 MB .tar.gz of 16 members of 64 MiB of zeros named .jpg."""
    write_padded_tar(path, [(f"zeros_{k}.jpg", member_bytes, b"") for k in range(members)])
    return path


def special_member(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def build_corpus(root) -> dict:
    inputs = root / "in"
    inputs.mkdir(parents=True)
    expected = {}

    main_tar = inputs / "hostile.tar"
    with tarfile.open(main_tar, "w") as tar:
        for name, data, reason in image_members():
            add_bytes(tar, name, data)
            if reason is not None:
                expected.setdefault(f"{main_tar}::{name}", []).append(reason)
        for info in (special_member("symlink.jpg", tarfile.SYMTYPE, "/etc/passwd"),
                     special_member("hardlink.jpg", tarfile.LNKTYPE, "UPPER.JPG"),
                     special_member("device.jpg", tarfile.CHRTYPE)):
            tar.addfile(info)
            expected[f"{main_tar}::{info.name}"] = ["unsafe_member"]
        add_bytes(tar, "orphan.json", b'{"image": {"id": 99}}')  # a sidecar with no image
        expected[f"{main_tar}::orphan.json"] = ["no_image"]

    # A tar cut in the middle of its last member's bytes.
    cut_tar = inputs / "cut.tar"
    with tarfile.open(cut_tar, "w") as tar:
        for k in range(3):
            add_bytes(tar, f"part_{k}.jpg", jpeg_bytes(20 + k))
    with tarfile.open(cut_tar) as tar:
        last = tar.getmember("part_2.jpg")
    cut_tar.write_bytes(cut_tar.read_bytes()[: last.offset_data + last.size // 2])
    expected.update({f"{cut_tar}::part_0.jpg": [""], f"{cut_tar}::part_1.jpg": [""],
                     f"{cut_tar}::part_2.jpg": ["read_error"]})

    # A folder with awkward names, a link out of the input, and an orphan sidecar.
    folder = inputs / "folder"
    (folder / "sub dir").mkdir(parents=True)
    secret = root / "secret.jpg"  # outside the input
    secret.write_bytes(jpeg_bytes(30))
    files = {"photo with spaces.jpg": jpeg_bytes(31), "sub dir/été.v2.png": png_bytes(32, mode="RGB"),
             "sub dir/.hidden.jpg": jpeg_bytes(33)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        expected[str(folder / name)] = [""]
    (folder / "escape.jpg").symlink_to(secret)
    expected[str(folder / "escape.jpg")] = ["unsafe_member"]
    (folder / "lonely.json").write_text("{}")
    expected[str(folder / "lonely.json")] = ["no_image"]

    # Tars found in the input folder get an image's checks: a pipe would hang the read forever,
    # a link out of the folder would read what is not an input. One row each, never opened.
    os.mkfifo(inputs / "pipe.tar")
    expected[str(inputs / "pipe.tar")] = ["unsafe_member"]
    elsewhere = root / "elsewhere.tar"
    with tarfile.open(elsewhere, "w") as tar:
        add_bytes(tar, "secret.jpg", jpeg_bytes(40))
    (inputs / "outside.tar").symlink_to(elsewhere)
    expected[str(inputs / "outside.tar")] = ["unsafe_member"]

    # Crafted names: the first takes the key that x.png's collision with x.jpg renames to.
    crafted = inputs / "crafted.tar"
    with tarfile.open(crafted, "w") as tar:
        for k, name in enumerate(crafted_names()):
            add_bytes(tar, name, jpeg_bytes(50 + k))
            expected[f"{crafted}::{name}"] = [""]

    # Compressed members far bigger than any image of their header could be: rejected unread.
    bomb = inputs / "bomb.tar.gz"
    write_padded_tar(bomb, [("zeros.jpg", 8 << 20, b""), ("padded.jpg", 24 << 20, jpeg_bytes(60)),
                            ("fine.jpg", len(jpeg_bytes(61)), jpeg_bytes(61))])
    expected.update({f"{bomb}::zeros.jpg": ["not_an_image"], f"{bomb}::padded.jpg": ["too_large"],
                     f"{bomb}::fine.jpg": [""]})
    return expected


def crafted_names() -> list:
    """`x-<8 hex of sha1("x.png")>.jpg`, `x.jpg`, `x.png`: three inputs, three keys."""
    import hashlib

    return [f"x-{hashlib.sha1(b'x.png').hexdigest()[:8]}.jpg", "x.jpg", "x.png"]
