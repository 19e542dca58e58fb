"""The sample record: one row of stats/*.parquet and the body of each shard's KEY.json.

Every column name of the record is defined here, once; the stages, the writer, `pixcap stats`
and the trainer import these names.
"""
import pyarrow as pa

KEY = "key"
SHARD = "shard"
SOURCE = "source"  # input URI + "::" + member path
SHA256 = "sha256"  # of the original bytes
FORMAT = "format"  # detected from bytes: jpeg, png, webp, ...
WIDTH = "width"  # of the stored image
HEIGHT = "height"
ORIG_WIDTH = "orig_width"  # of the original, upright
ORIG_HEIGHT = "orig_height"
PASSTHROUGH = "passthrough"  # stored bytes are the original bytes
CAPTION = "caption"
CAPTION_MODEL = "caption_model"
NOUNS = "nouns"
N_NOUNS = "n_nouns"
CLIP_SCORE = "clip_score"
GROUNDED_NOUNS = "grounded_nouns"
N_GROUNDED = "n_grounded"
CLIP_MODEL = "clip_model"
AESTHETIC_SCORE = "aesthetic_score"  # LAION's improved aesthetic predictor on the CLIP image embedding; null when not run

# Columns every written sample carries, in the order they are stored.
SAMPLE_SCHEMA = pa.schema(
    [
        pa.field(KEY, pa.string(), nullable=False),
        pa.field(SHARD, pa.string(), nullable=False),
        pa.field(SOURCE, pa.string(), nullable=False),
        pa.field(SHA256, pa.string(), nullable=False),
        pa.field(FORMAT, pa.string()),
        pa.field(WIDTH, pa.int32()),
        pa.field(HEIGHT, pa.int32()),
        pa.field(ORIG_WIDTH, pa.int32()),
        pa.field(ORIG_HEIGHT, pa.int32()),
        pa.field(PASSTHROUGH, pa.bool_()),
        pa.field(CAPTION, pa.string()),
        pa.field(CAPTION_MODEL, pa.string()),
        pa.field(NOUNS, pa.list_(pa.string())),
        pa.field(N_NOUNS, pa.int32()),
        pa.field(CLIP_SCORE, pa.float32()),
        pa.field(GROUNDED_NOUNS, pa.list_(pa.string())),
        pa.field(N_GROUNDED, pa.int32()),
        pa.field(CLIP_MODEL, pa.string()),
        pa.field(AESTHETIC_SCORE, pa.float32()),
    ]
)
SAMPLE_COLUMNS = SAMPLE_SCHEMA.names

# Shard members: KEY.jpg (the stored image), KEY.txt (the caption), KEY.json (the record).
IMAGE_EXT = "jpg"
CAPTION_EXT = "txt"
RECORD_EXT = "json"

# Members `pixcap encode` adds beside a sample; declared here so both sides agree.
LATENT_EXT = "latent.npy"  # the VAE posterior, float32 [8, h, w]: mean, then log-variance
T5_EMBEDDING_EXT = "t5.npy"
T5_MASK_EXT = "t5mask.npy"

# Control maps the pipeline's control stage adds beside a sample, one member per kind: KEY.canny.png
# (Canny edges), and others by name (KEY.hed.png, KEY.depth.png). Greyscale PNGs of the stored image's size.
CANNY = "canny"


def control_ext(kind: str) -> str:
    """The member suffix of a control map of this kind: canny -> canny.png (KEY.canny.png)."""
    return f"{kind}.png"


CONTROL_EXT = control_ext(CANNY)


def control_column(kind: str) -> str:
    """The in-flight batch column holding a control map's PNG bytes, until the shard's member is written."""
    return f"control_{kind}"
