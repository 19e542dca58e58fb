"""read, for parquet inputs: one row per parquet row, as HF Hub datasets and LAION-style exports store images.

The image column is the first of IMAGE_COLUMNS the file has: bytes, or HF datasets' Image feature, a
struct {bytes, path} (its bytes are used; a row with only a path is no image here). The text column,
the first of TEXT_COLUMNS, becomes the sample's own caption (sidecar: alt-text), read only when a
stage takes captions. Every row is accounted for: a null image is `no_image`, zero bytes `empty_file`,
too many bytes `too_large`; bytes that are no image are decode's rejects; a file that cannot be read
is one `read_error` row, and rows left unread when a row group breaks are `read_error` rows each.
Keys are the key prefix and the row's number (KEY_PREFIX/000000042), stable across runs.
"""
from __future__ import annotations

from typing import Iterator, Optional

import fsspec
import pyarrow.parquet as pq

from pixcap.schemas import batch as B
from pixcap.schemas import rejects as R

from .caption_text import caption_text

IMAGE_COLUMNS = ("image", "jpg", "png", "webp", "img", "image_bytes")
TEXT_COLUMNS = ("text", "caption", "TEXT", "alt_text", "txt")
ROWS_PER_READ = 64  # rows decoded from the file at a time: a read holds at most these images
PARQUET_SUFFIX = ".parquet"


def is_parquet(path: str) -> bool:
    return path.lower().endswith(PARQUET_SUFFIX)


def row_key(prefix: str, row: int) -> str:
    return f"{prefix}/{row:09d}"


def _image_bytes(value) -> Optional[bytes]:
    """A cell of the image column as bytes: bytes themselves, or an HF Image struct's `bytes` (None if null)."""
    if isinstance(value, dict):
        value = value.get("bytes")
    return None if value is None else bytes(value)


def parquet_members(part: dict, skip: set, options: dict, read_captions: bool, max_file_bytes: int,
                    member_class) -> Iterator:
    """The part's rows as read's Members (None for a row already done), in row order."""
    uri = part[B.PART_URI]
    prefix = part[B.PART_KEY_PREFIX]
    total, position = None, 0
    try:
        fs, path = fsspec.core.url_to_fs(uri, **options)
        with fs.open(path, "rb") as f, pq.ParquetFile(f) as parquet:
            names = parquet.schema_arrow.names
            image = next((name for name in IMAGE_COLUMNS if name in names), None)
            if image is None:  # no row of it is an image: one row for the file, as for a tar that cannot be read
                raise ValueError(f"no image column (one of {', '.join(IMAGE_COLUMNS)}) among {', '.join(names[:20])}")
            total = parquet.metadata.num_rows
            text = next((name for name in TEXT_COLUMNS if name in names), None) if read_captions else None
            columns = [image] + ([text] if text else [])
            for batch in parquet.iter_batches(batch_size=ROWS_PER_READ, columns=columns):
                images = batch.column(image)
                texts = batch.column(text) if text else None
                for i in range(batch.num_rows):
                    row, position = position, position + 1
                    if row in skip:
                        yield None
                        continue
                    member = member_class(name=f"row {row}", source=f"{uri}::row {row}", key=row_key(prefix, row))
                    data = _image_bytes(images[i].as_py())
                    if data is None:
                        member.reason, member.error = R.NO_IMAGE, f"row {row}: the {image} column is null"
                    elif not data:
                        member.reason = R.EMPTY_FILE
                    elif len(data) > max_file_bytes:
                        member.reason, member.error = R.TOO_LARGE, f"row {row}: {len(data)} bytes > {max_file_bytes}"
                    else:
                        member.data = data
                        caption = texts[i].as_py() if texts is not None else None
                        member.caption = caption_text(caption.encode("utf-8", "replace")) if isinstance(caption, str) else ""
                    yield member
    except Exception as e:  # noqa: BLE001 (an unreadable file or row group: its rows become rejects)
        error = f"{uri}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
        if total is None:  # the file itself: one row for it
            yield member_class(name=uri, source=uri, key=None, reason=R.READ_ERROR, error=error)
            return
        for row in range(position, total):  # each row not read is accounted for
            yield None if row in skip else member_class(name=f"row {row}", source=f"{uri}::row {row}",
                                                        key=row_key(prefix, row), reason=R.READ_ERROR, error=error)
