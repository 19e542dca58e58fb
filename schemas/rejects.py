"""The rejects table: one row per input that did not become a sample, and why."""
import pyarrow as pa

from .records import KEY, SHARD, SOURCE

STAGE = "stage"
REASON = "reason"
ERROR = "error"

REJECT_SCHEMA = pa.schema(
    [
        pa.field(SOURCE, pa.string(), nullable=False),
        pa.field(KEY, pa.string()),  # null when the input failed before it had a key
        pa.field(SHARD, pa.string()),
        pa.field(STAGE, pa.string(), nullable=False),
        pa.field(REASON, pa.string(), nullable=False),
        pa.field(ERROR, pa.string()),
    ]
)
REJECT_COLUMNS = REJECT_SCHEMA.names

# Stable reason words. Analysts group by these; add, never rename.
REASONS = {
    "read_error": "the input or the tar member could not be read",
    "unsafe_member": "a link, device or pipe, or a path that leads outside the input",
    "duplicate": "a second input with the same key inside one input; the first one wins",
    "no_image": "a file or tar member that is no image and belongs to none (an orphan sidecar)",
    "empty_file": "a zero-byte file",
    "not_an_image": "the bytes are no image format that can be decoded",
    "decode_error": "the image is truncated or corrupt",
    "too_large": "more pixels than decode.max_pixels, or more bytes than decode.max_file_bytes; refused unread",
    "too_small": "a side shorter than decode.min_side",
    "bad_aspect": "an aspect ratio beyond decode.max_aspect_ratio",
    "preprocess_error": "the image could not be cropped to the models' inputs",
    "no_caption": "the sidecar backend found no caption for the image",
    "caption_error": "the captioner failed on this image",
    "nouns_error": "noun extraction failed on this caption",
    "clip_error": "CLIP scoring failed on this image",
    "write_error": "the sample could not be encoded for the shard",
}
