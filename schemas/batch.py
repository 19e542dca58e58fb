"""Columns of the in-flight batches that stages pass along (dict of column -> list or array).

A stage adds its columns and leaves the others alone; the ones marked "consumed" are dropped by
the stage that uses them up, so image bytes and pixels do not travel further than needed.
A row whose REJECT_REASON is not "" has failed; later stages pass it through untouched.
The record's own columns (KEY, SHARD, SOURCE, SHA256, CAPTION, ...) are defined in records.py
and re-exported here, so a stage needs one import for every column it touches.
"""
from .records import (  # noqa: F401  (re-exported)
    CAPTION, CAPTION_MODEL, CLIP_MODEL, CLIP_SCORE, FORMAT, GROUNDED_NOUNS, HEIGHT, KEY, N_GROUNDED, N_NOUNS,
    NOUNS, ORIG_HEIGHT, ORIG_WIDTH, PASSTHROUGH, SHA256, SHARD, SOURCE, WIDTH,
)

# read
INDEX = "index"  # position of the input within its shard, from 0
SHARD_COUNT = "shard_count"  # inputs in the shard, set on the shard's last row; -1 elsewhere
DATA = "data"  # the original bytes; consumed by decode
SIDECAR_CAPTION = "sidecar_caption"  # an existing caption (KEY.txt or captions/KEY.txt), or ""
REJECT_STAGE = "reject_stage"
REJECT_REASON = "reject_reason"
REJECT_ERROR = "reject_error"
PART_END = "part_end"  # True on the last row read from an input part (rows also carry PART_ID)

# decode (also SHA256, FORMAT, WIDTH, HEIGHT, ORIG_WIDTH, ORIG_HEIGHT, PASSTHROUGH)
STORED = "stored"  # bytes of the image to store in the shard (JPEG); consumed by the blob writer
# The pipeline writes STORED to the output where it was decoded and carries only where it is:
# a path under OUT/_work/blobs ("" for a rejected row), read by the shard commit.
STORED_AT = "stored_at"
# The members a row has blobs of besides its image (control maps: ["canny.png"]), written beside it by the
# blob writer from the stages' columns (schemas/stages.py: blob_members) and put in the tar by the commit.
BLOB_MEMBERS = "blob_members"
MODEL_IMAGE = "model_image"  # HxWx3 uint8, short side decode.model_side; consumed by model_inputs
MODEL_IMAGE_EMPTY_SHAPE = (0, 0, 3)  # what a rejected row carries instead (also for the pixels below)

# model_inputs: each model's eval view of MODEL_IMAGE, made on the CPU (N x N x 3 uint8 crops)
CAPTION_PIXELS = "caption_pixels"  # LLaVA's crop; consumed by caption (absent for the sidecar backend)


def caption_pixels(name: str) -> str:
    """A named captioner's crop (caption_pixels_long; absent for a native or sidecar one); CAPTION_PIXELS for
    a `caption:` job's."""
    return f"{CAPTION_PIXELS}_{name}" if name else CAPTION_PIXELS


CLIP_PIXELS = "clip_pixels"  # open_clip's crop; consumed by clip

# clip
CLIP_EMBEDDING = "clip_embedding"  # the unit image embedding, float16 bytes ("" when rejected)

# write: the fragment a row was written to (a parquet under OUT/_work/fragments)
FRAGMENT = "fragment"

# The read stage's input: one row per input part (a tar, or a chunk of a folder's files).
PART_ID = "part_id"  # unique name of the part; its done-marker is named after it
PART_KIND = "part_kind"  # "tar" or "files"
PART_URI = "part_uri"  # the tar's URL, or the folder's URL for "files"
PART_ROOT = "part_root"  # the input folder a tar was found in ("" when named itself): links may not leave it
PART_SHARD_PREFIX = "part_shard_prefix"  # shards are named by schemas.shards.shard_name(prefix, n)
PART_FIRST_SHARD = "part_first_shard"  # n of the part's first shard
PART_KEY_PREFIX = "part_key_prefix"  # keys are f"{key_prefix}/{sanitised member path}"
PART_MEMBERS = "part_members"  # "files": the files' URLs, in order
PART_KEYS = "part_keys"  # "files": their keys, made unique when the folder was listed
PART_MEMBER_ERRORS = "part_member_errors"  # "files": why a member could not be listed, or ""
PART_BYTES = "part_bytes"  # the bytes the part reads (a tar's size, or its files'); for progress
PART_CAPTIONS = "part_captions"  # URL of a captions/ folder beside the input, or ""
PART_SKIP = "part_skip"  # positions (0-based, in the part) of inputs already done

# What the driver's ledger receives of each finished row: no image, no caption.
LEDGER_COLUMNS = [SHARD, INDEX, SHARD_COUNT, PART_END, PART_ID]
