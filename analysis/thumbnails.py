"""The gallery's samples read back from their shards: a small JPEG thumbnail, the caption and the record.

Only the members asked for are read: tarfile walks the headers and seeks past every other
member's bytes, so a gallery costs a few headers' reads per shard, not the shard.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import tarfile
from collections import defaultdict
from typing import Dict, List, Optional

import fsspec
from PIL import Image

from pixcap.output import layout
from pixcap.schemas.records import CAPTION_EXT, IMAGE_EXT, RECORD_EXT

from .gallery import Pick

THUMBNAIL_SIDE = 160  # px, the long side: enough to see what a score means, ~5 KB each
THUMBNAIL_QUALITY = 70


@dataclasses.dataclass
class Example:
    pick: Pick
    caption: str = ""
    record: dict = dataclasses.field(default_factory=dict)
    thumbnail: Optional[str] = None  # base64 JPEG
    problem: str = ""  # why the shard could not show it, when it could not


def thumbnail_base64(image_bytes: bytes) -> str:
    with Image.open(io.BytesIO(image_bytes)) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _read_member(tar: tarfile.TarFile, name: str) -> Optional[bytes]:
    try:
        member = tar.getmember(name)
    except KeyError:
        return None
    handle = tar.extractfile(member)
    return handle.read() if handle else None


def _fill(example: Example, tar: tarfile.TarFile) -> None:
    key = example.pick.key
    image = _read_member(tar, f"{key}.{IMAGE_EXT}")
    caption = _read_member(tar, f"{key}.{CAPTION_EXT}")
    record = _read_member(tar, f"{key}.{RECORD_EXT}")
    if image is None:
        example.problem = f"{key}.{IMAGE_EXT} is not in its shard"
        return
    try:
        example.thumbnail = thumbnail_base64(image)
    except Exception as e:  # a gallery shows what it can; a broken image is itself worth seeing
        example.problem = f"unreadable image: {type(e).__name__}"
    example.caption = caption.decode("utf-8", "replace") if caption is not None else ""
    example.record = json.loads(record) if record is not None else {}


def read_examples(out_dir: str, picks: List[Pick]) -> List[Example]:
    """An Example for each pick, in the picks' order; each shard is opened once."""
    examples = [Example(pick) for pick in picks]
    by_shard: Dict[str, List[Example]] = defaultdict(list)
    for example in examples:
        by_shard[example.pick.shard].append(example)
    for shard, wanted in by_shard.items():
        path = layout.under(out_dir, layout.shard_file("tar", shard))
        try:
            # fileobj mode reads the headers and seeks past the other members, locally or on an object store.
            with fsspec.open(path, "rb") as f, tarfile.open(fileobj=f) as tar:
                for example in wanted:
                    _fill(example, tar)
        except FileNotFoundError:
            for example in wanted:
                example.problem = f"shard {shard}.tar not found"
    return examples
