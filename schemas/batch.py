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

READ_COLUMNS = (KEY, SHARD, INDEX, SHARD_COUNT, SOURCE, DATA, SIDECAR_CAPTION,
                REJECT_STAGE, REJECT_REASON, REJECT_ERROR)
