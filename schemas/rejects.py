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

# Stable reason words, as the stages import them. Analysts group by these; add, never rename.
READ_ERROR = "read_error"
UNSAFE_MEMBER = "unsafe_member"
DUPLICATE = "duplicate"
NO_IMAGE = "no_image"
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
DECODE_ERROR = "decode_error"
TOO_LARGE = "too_large"
TOO_SMALL = "too_small"
BAD_ASPECT = "bad_aspect"
PREPROCESS_ERROR = "preprocess_error"
NO_CAPTION = "no_caption"
CAPTION_ERROR = "caption_error"
NOUNS_ERROR = "nouns_error"
CLIP_ERROR = "clip_error"
WRITE_ERROR = "write_error"
AESTHETIC_ERROR = "aesthetic_error"
CONTROL_ERROR = "control_error"
CLASSIFY_ERROR = "classify_error"
CLIP_NSFW_ERROR = "clip_nsfw_error"

# What each reason means (the README's policy table says when each is given).
REASONS = {
    READ_ERROR: "the input or the tar member could not be read",
    UNSAFE_MEMBER: "a link, device or pipe, or a path that leads outside the input",
    DUPLICATE: "a second input with the same key inside one input; the first one wins",
    NO_IMAGE: "a file or tar member that is no image and belongs to none (an orphan sidecar)",
    EMPTY_FILE: "a zero-byte file",
    NOT_AN_IMAGE: "the bytes are no image format that can be decoded",
    DECODE_ERROR: "the image is truncated or corrupt",
    TOO_LARGE: "more pixels than decode.max_pixels, or more bytes than decode.max_file_bytes; refused unread",
    TOO_SMALL: "a side shorter than decode.min_side",
    BAD_ASPECT: "an aspect ratio beyond decode.max_aspect_ratio",
    PREPROCESS_ERROR: "the image could not be cropped to the models' inputs",
    NO_CAPTION: "the sidecar backend found no caption for the image",
    CAPTION_ERROR: "the captioner failed on this image",
    NOUNS_ERROR: "noun extraction failed on this caption",
    CLIP_ERROR: "CLIP scoring failed on this image",
    WRITE_ERROR: "the sample could not be encoded for the shard",
    AESTHETIC_ERROR: "the aesthetic predictor failed on this image",
    CONTROL_ERROR: "a control map (Canny edges) could not be made from the stored image",
    CLASSIFY_ERROR: "an image classifier (classifiers:) failed on this image",
    CLIP_NSFW_ERROR: "LAION's CLIP-based NSFW head (clip_nsfw:) failed on this image's CLIP embedding",
}
