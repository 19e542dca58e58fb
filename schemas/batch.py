"""Columns of the in-flight batches that stages pass along (dict of column -> list or array).

A stage adds its columns and leaves the others alone; the ones marked "consumed" are dropped by
the stage that uses them up, so image bytes and pixels do not travel further than needed.
A row whose REJECT_REASON is not "" has failed; later stages pass it through untouched.
"""

# read
KEY = "key"
SHARD = "shard"
INDEX = "index"  # position of the input within its shard, from 0
SHARD_COUNT = "shard_count"  # inputs in the shard, set on the shard's last row; -1 elsewhere
SOURCE = "source"
DATA = "data"  # the original bytes; consumed by decode
SIDECAR_CAPTION = "sidecar_caption"  # an existing caption (KEY.txt or captions/KEY.txt), or ""
REJECT_STAGE = "reject_stage"
REJECT_REASON = "reject_reason"
REJECT_ERROR = "reject_error"

# decode (also SHA256, FORMAT, WIDTH, HEIGHT, ORIG_WIDTH, ORIG_HEIGHT, PASSTHROUGH from records)
STORED = "stored"  # bytes of the image to store in the shard (JPEG); consumed by write
MODEL_IMAGE = "model_image"  # HxWx3 uint8, short side decode.model_side; consumed by clip
MODEL_IMAGE_EMPTY_SHAPE = (0, 0, 3)  # what a rejected row carries instead


PART_END = "part_end"  # True on the last row read from an input part (rows also carry PART_ID)

# The read stage's input: one row per input part (a tar, or a chunk of a folder's files).
PART_ID = "part_id"  # unique name of the part; its done-marker is named after it
PART_KIND = "part_kind"  # "tar" or "files"
PART_URI = "part_uri"  # the tar's URL, or the folder's URL for "files"
PART_SHARD_PREFIX = "part_shard_prefix"  # shards are named f"{prefix}-{n:05d}"
PART_FIRST_SHARD = "part_first_shard"  # n of the part's first shard
PART_KEY_PREFIX = "part_key_prefix"  # keys are f"{key_prefix}/{sanitised member path}"
PART_MEMBERS = "part_members"  # "files": the files' URLs, in order
PART_KEYS = "part_keys"  # "files": their keys, made unique when the folder was listed
PART_CAPTIONS = "part_captions"  # URL of a captions/ folder beside the input, or ""
PART_SKIP = "part_skip"  # "shard/index" strings of inputs already done; whole shard names too

